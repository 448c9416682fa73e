//! Hooks for the fuzz targets (`tests/fuzz`): **not a public API**, it changes without notice.
//!
//! Exposes only the client's reading of the server's handshake reply, which is otherwise
//! reachable only through a real connection.

use rpc_transport::Frame;

use crate::client::{ClientOptions, protocol};
use crate::error::RpcError;
use crate::schema::{Compatibility, ServiceSchema};

/// What a client of `schema` settled from the server's handshake reply.
#[derive(Debug)]
pub struct ClientAgreement {
    /// The largest frame the client will send.
    pub send_limit: usize,
    /// Which of the client's methods the server can serve.
    pub compatibility: Compatibility,
}

/// The client's handling of `frame` as the server's answer to its `Hello`: what was agreed,
/// or the error the client's `connect` returns.
pub fn client_handshake_reply(
    frame: &Frame,
    schema: &ServiceSchema,
    options: &ClientOptions,
) -> Result<ClientAgreement, RpcError> {
    let agreement = protocol::handshake_reply(frame, schema, options)?;
    Ok(ClientAgreement {
        send_limit: agreement.send_limit,
        compatibility: agreement.compatibility,
    })
}
