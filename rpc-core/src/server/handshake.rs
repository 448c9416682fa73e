//! The server's side of the handshake: read `Hello`, answer `Welcome` or `Reject`.

use std::sync::Arc;

use rpc_transport::{FrameReceiver, FrameSender, PeerInfo};
use tokio::sync::OwnedSemaphorePermit;

use super::ConnectionEnv;
use super::ServerConfig;
use super::Service;
use super::admission::PeerSlot;
use super::services::Services;
use crate::schema::MethodSchema;
use crate::wire::{
    self, Header, Hello, Kind, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Rejection, Welcome,
};

/// The service the client may use, or why it may not stay.
fn judge<'a>(
    hello: &Hello,
    peer: &PeerInfo,
    services: &'a Services,
    config: &ServerConfig,
    stopping: bool,
    admitted: bool,
) -> Result<&'a Arc<dyn Service>, Rejection> {
    // First, so a refused peer learns nothing about the services.
    if let Err(reason) = config.access.admits(peer) {
        tracing::debug!(%reason, "refusing a peer");
        return Err(Rejection::AccessDenied { reason });
    }
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol_version) {
        return Err(Rejection::ProtocolVersion {
            server: PROTOCOL_VERSION,
        });
    }
    let service = services
        .get(&hello.service)
        .ok_or_else(|| Rejection::UnknownService {
            wanted: hello.service.clone(),
            available: services.names(),
        })?;
    if stopping {
        return Err(Rejection::ShuttingDown);
    }
    if !admitted {
        return Err(Rejection::TooManyConnections(config.max_connections as u32));
    }
    Ok(service)
}

/// The client's methods whose digests equal ours, sorted by id: the only ones it may call.
fn callable(hello: &Hello, service: &dyn Service) -> Vec<(u32, &'static MethodSchema)> {
    let schema = service.schema();
    let mut methods: Vec<(u32, &'static MethodSchema)> = hello
        .methods
        .iter()
        .filter_map(|(id, digest)| {
            schema
                .method(*id)
                .filter(|m| m.error.is_none() && &m.digest == digest)
                .map(|m| (*id, m))
        })
        .collect();
    methods.sort_unstable_by_key(|(id, _)| *id);
    methods.dedup_by_key(|(id, _)| *id);
    methods
}

/// What a successful handshake settled.
pub(crate) struct Agreed {
    /// The service the client named.
    pub(crate) service: Arc<dyn Service>,
    /// The connection's place among the established ones; held until it ends.
    pub(crate) admission: OwnedSemaphorePermit,
    /// Its place among its peer's connections, when those are limited; held until it ends.
    pub(crate) peer_slot: Option<PeerSlot>,
    /// The largest frame the client accepts, capped at our own limit.
    pub(crate) peer_limit: usize,
    /// The methods the client may call, sorted by id.
    pub(crate) callable: Vec<(u32, &'static MethodSchema)>,
}

/// Reads `Hello` and answers it; returns what was agreed, or why the connection ends.
pub(crate) async fn handshake(
    sender: &mut FrameSender,
    receiver: &mut FrameReceiver,
    peer: &PeerInfo,
    env: &ConnectionEnv,
) -> Result<Agreed, String> {
    let config = &*env.config;
    let stopping = env.stop.is_cancelled();
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
    // The connection counts against `max_connections` (and its peer's limit) from here on,
    // if there is room.
    let admission = env.admissions.clone().try_acquire_owned().ok();
    let peer_slot = env.peers.take(peer, config.max_connections_per_peer);
    let judged = judge(
        &hello,
        peer,
        &env.services,
        config,
        stopping,
        admission.is_some(),
    )
    .and_then(|service| match &peer_slot {
        Err(limit) => Err(Rejection::TooManyFromPeer(*limit as u32)),
        Ok(_) => Ok(service.clone()),
    });
    let service = match judged {
        Ok(service) => service,
        Err(rejection) => {
            let frame = wire::message_frame(header(Kind::Reject), None, &rejection)
                .map_err(|e| e.to_string())?;
            let _ = sender.send(frame).await;
            let _ = sender.close().await;
            return Err(format!("rejected: {rejection:?}"));
        }
    };
    let welcome = Welcome {
        max_frame_size: config.transport.max_frame_size as u64,
        max_in_flight: config.max_in_flight as u32,
        schema_json: service.schema().to_compact_json(),
    };
    let frame =
        wire::message_frame(header(Kind::Welcome), None, &welcome).map_err(|e| e.to_string())?;
    // The client may send frames of the full size as soon as it reads `Welcome`: the limit is
    // raised first. (A receiver whose frames are put together by another task, as `mq://`'s
    // routing task does, would otherwise judge a large first call by the handshake's limit.)
    receiver.set_max_frame_size(config.transport.max_frame_size);
    sender.send(frame).await.map_err(|e| e.to_string())?;
    Ok(Agreed {
        admission: admission.expect("judged admitted"),
        peer_slot: peer_slot.expect("judged within the peer's limit"),
        // Responses must fit both the client's limit and our own sender's.
        peer_limit: (hello.max_frame_size as usize).min(config.transport.max_frame_size),
        callable: callable(&hello, &*service),
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::services::tests::named;

    fn hello(service: &str) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            service: service.to_owned(),
            methods: Vec::new(),
            max_frame_size: 1024,
        }
    }

    fn alpha_and_beta() -> Services {
        let mut services = Services::default();
        services.add(named("Beta"));
        services.add(named("Alpha"));
        services
    }

    fn unix_peer(uid: u32) -> PeerInfo {
        PeerInfo::Unix {
            pid: None,
            uid,
            gid: uid,
        }
    }

    #[test]
    fn the_hello_picks_the_service() {
        let services = alpha_and_beta();
        let own = unix_peer(nix::unistd::geteuid().as_raw());
        let config = ServerConfig::default();
        for name in ["Alpha", "Beta"] {
            let chosen = judge(&hello(name), &own, &services, &config, false, true);
            assert_eq!(chosen.map(|s| &s.schema().name), Ok(&name.to_owned()));
        }
    }

    #[test]
    fn an_unknown_service_is_refused_with_the_served_names() {
        let services = alpha_and_beta();
        let own = unix_peer(nix::unistd::geteuid().as_raw());
        let refused = judge(
            &hello("Gamma"),
            &own,
            &services,
            &ServerConfig::default(),
            false,
            true,
        );
        assert_eq!(
            refused.err(),
            Some(Rejection::UnknownService {
                wanted: "Gamma".to_owned(),
                available: vec!["Alpha".to_owned(), "Beta".to_owned()],
            })
        );
    }

    #[test]
    fn a_refused_peer_learns_nothing_about_the_services() {
        let services = alpha_and_beta();
        let stranger = unix_peer(nix::unistd::geteuid().as_raw().wrapping_add(4242));
        let config = ServerConfig::default();
        for name in ["Alpha", "Gamma"] {
            let refused = judge(&hello(name), &stranger, &services, &config, false, true);
            assert!(
                matches!(&refused, Err(Rejection::AccessDenied { reason })
                    if !reason.contains("Alpha") && !reason.contains("Beta")),
                "{name}: {:?}",
                refused.map(|s| &s.schema().name)
            );
        }
    }
}
