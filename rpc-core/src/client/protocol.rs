//! The client's side of the protocol as pure functions of frames, shared by every client flavour.

use std::time::Duration;

use rpc_transport::{Frame, PeerInfo, TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{CallOptions, ClientOptions};
use crate::error::RpcError;
use crate::schema::{Compatibility, ServiceSchema};
use crate::wire::{
    self, Extension, Header, Hello, Kind, Message, PROTOCOL_VERSION, Rejection, Welcome, WireError,
};

/// The `Hello` frame announcing `schema`.
pub(crate) fn hello_frame(
    schema: &ServiceSchema,
    max_frame_size: usize,
) -> Result<Frame, RpcError> {
    let hello = Hello::new(schema, max_frame_size);
    let header = Header {
        kind: Kind::Hello,
        method: 0,
        call_id: 0,
    };
    wire::message_frame(header, None, &hello)
}

/// A transport failure while the handshake's frames travel. A TLS refusal is a failure to
/// connect that names its cause: under TLS 1.3 a client learns that the server wanted a client
/// certificate, or refused the one presented, only on its first read, which is the handshake's.
/// Anything else ends the connection.
pub(crate) fn handshake_transport_error(peer: &PeerInfo, error: TransportError) -> RpcError {
    match (peer, error) {
        (PeerInfo::Tls { addr, .. }, source @ TransportError::Tls { .. }) => RpcError::Connect {
            address: format!("tls://{addr}"),
            source,
        },
        (_, other) => RpcError::disconnected(other),
    }
}

/// `result`, with a connect failure that [`handshake_transport_error`] named by the peer's
/// socket address renamed by `address`, the address the caller gave.
pub(crate) fn named_by<T>(result: Result<T, RpcError>, address: &str) -> Result<T, RpcError> {
    result.map_err(|error| match error {
        RpcError::Connect { source, .. } => RpcError::Connect {
            address: address.to_owned(),
            source,
        },
        other => other,
    })
}

/// What the handshake settled for a client.
pub(crate) struct Agreement {
    /// The smaller of our and the server's maximum frame size.
    pub(crate) send_limit: usize,
    /// Which of our methods the server can serve.
    pub(crate) compatibility: Compatibility,
    /// Calls the server runs at once on this connection; more wait on our side.
    pub(crate) max_in_flight: usize,
}

/// Reads the server's answer to `Hello`: what was agreed, or why the connection is refused
/// (with [`ClientOptions::strict_schema`], any difference between the schemas refuses it).
pub(crate) fn handshake_reply(
    frame: &Frame,
    schema: &ServiceSchema,
    options: &ClientOptions,
) -> Result<Agreement, RpcError> {
    let welcome = welcome(frame, schema)?;
    let theirs = welcome
        .schema()
        .map_err(|e| RpcError::decode("the server's schema", e))?;
    let compatibility = Compatibility::between(schema, &theirs);
    if options.strict_schema {
        let differences = compatibility.differences(schema);
        if !differences.is_empty() {
            return Err(RpcError::HandshakeMismatch {
                service: schema.name.clone(),
                differences,
            });
        }
    }
    Ok(Agreement {
        send_limit: options
            .transport
            .max_frame_size
            .min(welcome.max_frame_size as usize),
        compatibility,
        max_in_flight: (welcome.max_in_flight as usize).max(1),
    })
}

/// What a call of `method` needs before it is sent: `Ok(its timeout)` when the server can
/// serve it, else the error naming why not.
pub(crate) fn admit_call(
    schema: &ServiceSchema,
    compatibility: &Compatibility,
    options: &CallOptions,
    method: u32,
) -> Result<Option<Duration>, RpcError> {
    let position = compatibility
        .check(method)
        .map_err(|reason| RpcError::IncompatibleMethod {
            method: schema.method_name(method),
            reason: reason.to_owned(),
        })?;
    if options.explicit_timeout {
        return Ok(options.timeout);
    }
    Ok(schema.methods[position]
        .own_timeout()
        .unwrap_or(options.timeout))
}

/// The timeout of a call of `method` made with `options`, before any connection is asked
/// whether it can serve it.
pub(crate) fn call_timeout(
    schema: &ServiceSchema,
    options: &CallOptions,
    method: u32,
) -> Option<Duration> {
    if options.explicit_timeout {
        return options.timeout;
    }
    schema
        .method(method)
        .and_then(|m| m.own_timeout())
        .unwrap_or(options.timeout)
}

/// Reads the server's `Welcome`, or turns its `Reject` into the error.
fn welcome(frame: &Frame, schema: &ServiceSchema) -> Result<Welcome, RpcError> {
    let parsed = Header::parse(frame.payload())?;
    match parsed.header.kind {
        Kind::Welcome => wire::decode(parsed.body, "handshake welcome"),
        Kind::Reject => Err(
            match wire::decode::<Rejection>(parsed.body, "handshake rejection")? {
                Rejection::ProtocolVersion { server } => RpcError::ProtocolVersion {
                    client: PROTOCOL_VERSION,
                    server,
                },
                Rejection::Schema {
                    server_service,
                    mut differences,
                } => {
                    if server_service != schema.name {
                        differences.insert(
                            0,
                            format!(
                                "the server exports '{server_service}', not '{}'",
                                schema.name
                            ),
                        );
                    }
                    RpcError::HandshakeMismatch {
                        service: schema.name.clone(),
                        differences,
                    }
                }
                Rejection::TooManyConnections(limit) => RpcError::TooManyConnections { limit },
                Rejection::ShuttingDown => RpcError::ShuttingDown,
                Rejection::AccessDenied { reason } => RpcError::AccessDenied { reason },
                Rejection::TooManyFromPeer(limit) => RpcError::TooManyConnectionsFromPeer { limit },
                Rejection::UnknownService { wanted, available } => RpcError::UnknownService {
                    service: wanted,
                    available,
                },
            },
        ),
        other => Err(RpcError::Protocol(format!(
            "expected the handshake reply, got a {other:?} frame"
        ))),
    }
}

/// The extension a call with `options` and `timeout` carries, if any.
pub(crate) fn extension(options: &CallOptions, timeout: Option<Duration>) -> Option<Extension> {
    if timeout.is_none() && options.metadata.is_empty() {
        return None;
    }
    Some(Extension {
        timeout_micros: timeout.map(|t| t.as_micros().min(u64::MAX as u128) as u64),
        metadata: options.metadata.clone(),
    })
}

/// The request for call `call_id` of `method`, sized and checked against the peer's limit.
pub(crate) fn request<'a, A: Serialize + ?Sized>(
    method: u32,
    call_id: u64,
    options: &CallOptions,
    timeout: Option<Duration>,
    args: &'a A,
    peer_limit: usize,
) -> Result<Message<'a, A>, RpcError> {
    let header = Header {
        kind: Kind::Request,
        method,
        call_id,
    };
    let message = Message::new(header, extension(options, timeout).as_ref(), args)?;
    if message.len() > peer_limit {
        return Err(RpcError::FrameTooLarge {
            size: message.len(),
            limit: peer_limit,
        });
    }
    Ok(message)
}

/// The `Cancel` frame for call `call_id`.
pub(crate) fn cancel_frame(method: u32, call_id: u64) -> Frame {
    let header = Header {
        kind: Kind::Cancel,
        method,
        call_id,
    };
    wire::message_frame(header, None, &()).expect("an empty body always encodes")
}

/// [`decode_reply`] of a frame the caller gives up: a large one is shared first, so a
/// [`Bytes`](crate::Bytes) return value is a slice of it rather than a copy.
pub(crate) fn decode_owned_reply<R: DeserializeOwned>(
    mut frame: Frame,
    schema: &ServiceSchema,
    method: u32,
    timeout: Option<Duration>,
) -> Result<R, RpcError> {
    crate::blob::share_large(&mut frame);
    decode_reply(&frame, schema, method, timeout)
}

/// Turns a reply frame into the method's return value or the RPC error it carries.
pub(crate) fn decode_reply<R: DeserializeOwned>(
    frame: &Frame,
    schema: &ServiceSchema,
    method: u32,
    timeout: Option<Duration>,
) -> Result<R, RpcError> {
    let parsed = Header::parse(frame.payload())?;
    match parsed.header.kind {
        Kind::Response => crate::blob::decoding_from(frame.shared_payload(), || {
            wire::decode(
                parsed.body,
                format_args!("the response of '{}'", schema.method_label(method)),
            )
        }),
        Kind::Error => Err(wire_error(
            wire::decode(parsed.body, "an error frame")?,
            schema,
            method,
            timeout,
        )),
        other => Err(RpcError::Protocol(format!(
            "expected a response, got a {other:?} frame"
        ))),
    }
}

/// The [`RpcError`] for a [`WireError`] about `method`.
pub(crate) fn wire_error(
    error: WireError,
    schema: &ServiceSchema,
    method: u32,
    timeout: Option<Duration>,
) -> RpcError {
    let name = || schema.method_name(method);
    match error {
        WireError::UnknownMethod => RpcError::UnknownMethod {
            service: schema.name.clone(),
            method,
        },
        WireError::BadRequest(reason) => RpcError::BadRequest {
            method: name(),
            reason,
        },
        WireError::ResponseTooLarge { size, limit } => RpcError::FrameTooLarge {
            size: size as usize,
            limit: limit as usize,
        },
        WireError::DeadlineExceeded => RpcError::DeadlineExceeded {
            method: name(),
            timeout: timeout.unwrap_or_default(),
        },
        WireError::TooManyCalls(limit) => RpcError::TooManyCalls { limit },
        WireError::HandlerPanicked => RpcError::HandlerPanicked { method: name() },
        WireError::EncodeFailed(reason) => RpcError::Encode {
            what: format!("the response of '{}' (on the server)", name()),
            reason,
        },
        WireError::ShuttingDown => RpcError::ShuttingDown,
        WireError::Protocol(reason) => RpcError::Protocol(reason),
        WireError::Incompatible => RpcError::IncompatibleMethod {
            method: name(),
            reason: "the server refused it: its schema differs from the client's".to_owned(),
        },
        WireError::StreamFailed(reason) => RpcError::StreamFailed {
            method: name(),
            reason,
        },
    }
}
