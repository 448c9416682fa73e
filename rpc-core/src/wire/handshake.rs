//! The handshake: `Hello` from the client, then `Welcome` or `Reject` from the server.

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The client's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the client.
    pub protocol_version: u16,
    /// The service the client expects.
    pub service: String,
    /// The schema fingerprint the client was built with.
    pub fingerprint: u64,
    /// The client's methods (name, signature), sent so a mismatch can be explained.
    pub methods: Vec<(String, String)>,
    /// Largest frame the client accepts.
    pub max_frame_size: u64,
}

/// The server's acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Largest frame the server accepts.
    pub max_frame_size: u64,
    /// Calls the server runs at once on this connection.
    pub max_in_flight: u32,
}

/// Why the server refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Rejection {
    /// Different protocol versions.
    ProtocolVersion {
        /// The server's version.
        server: u16,
    },
    /// Another service, or the same one with different methods.
    Schema {
        /// The server's service name.
        server_service: String,
        /// Each difference, in words.
        differences: Vec<String>,
    },
    /// The server has its maximum number of connections.
    TooManyConnections(u32),
    /// The server is shutting down.
    ShuttingDown,
}
