//! The server's side of the handshake: read `Hello`, answer `Welcome` or `Reject`.

use rpc_transport::{FrameReceiver, FrameSender};

use super::ServerConfig;
use super::Service;
use crate::wire::{self, Header, Hello, Kind, PROTOCOL_VERSION, Rejection, Welcome};

/// Why the client may not stay, or `None` to welcome it.
fn judge(
    hello: &Hello,
    service: &dyn Service,
    config: &ServerConfig,
    stopping: bool,
    admitted: bool,
) -> Option<Rejection> {
    let schema = service.schema();
    if hello.protocol_version != PROTOCOL_VERSION {
        return Some(Rejection::ProtocolVersion {
            server: PROTOCOL_VERSION,
        });
    }
    if hello.service != schema.name || hello.fingerprint != schema.fingerprint {
        let mut differences = Vec::new();
        if hello.service == schema.name {
            differences = schema.differences(&hello.methods);
            if differences.is_empty() {
                differences.push("the schema fingerprints differ".to_owned());
            }
        }
        return Some(Rejection::Schema {
            server_service: schema.name.to_owned(),
            differences,
        });
    }
    if stopping {
        return Some(Rejection::ShuttingDown);
    }
    if !admitted {
        return Some(Rejection::TooManyConnections(config.max_connections as u32));
    }
    None
}

/// Reads `Hello` and answers it; returns the largest frame the client accepts (capped at our
/// own limit), or why the connection ends.
pub(crate) async fn handshake(
    sender: &mut FrameSender,
    receiver: &mut FrameReceiver,
    service: &dyn Service,
    config: &ServerConfig,
    stopping: bool,
    admitted: bool,
) -> Result<usize, String> {
    let frame = receiver
        .recv()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the client left before the handshake")?;
    let parsed = Header::parse(frame.payload()).map_err(|e| e.to_string())?;
    if parsed.header.kind != Kind::Hello {
        return Err(format!("expected Hello, got {:?}", parsed.header.kind));
    }
    let hello: Hello = wire::decode(parsed.body, "Hello").map_err(|e| e.to_string())?;
    let header = |kind| Header {
        kind,
        method: 0,
        call_id: 0,
    };
    if let Some(rejection) = judge(&hello, service, config, stopping, admitted) {
        let frame = wire::message_frame(header(Kind::Reject), None, &rejection)
            .map_err(|e| e.to_string())?;
        let _ = sender.send(frame).await;
        let _ = sender.close().await;
        return Err(format!("rejected: {rejection:?}"));
    }
    let welcome = Welcome {
        max_frame_size: config.transport.max_frame_size as u64,
        max_in_flight: config.max_in_flight as u32,
    };
    let frame =
        wire::message_frame(header(Kind::Welcome), None, &welcome).map_err(|e| e.to_string())?;
    sender.send(frame).await.map_err(|e| e.to_string())?;
    // Responses must fit both the client's limit and our own sender's.
    Ok((hello.max_frame_size as usize).min(config.transport.max_frame_size))
}
