//! The handshake: `Hello` from the client, then `Welcome` or `Reject` from the server.
//!
//! The client names the service it wants and lists its methods by id with each method's
//! digest; the server answers with its own full [`ServiceSchema`], so the client can tell,
//! method by method, what it may call and explain what it may not. The server keeps the ids
//! whose digests match its own and refuses calls to any other.

use serde::{Deserialize, Serialize};

use crate::schema::ServiceSchema;

/// The protocol version this crate speaks (2: method ids from wire names, schemas by shape;
/// 3: keepalive `Ping` and `Pong` frames).
pub const PROTOCOL_VERSION: u16 = 3;

/// The oldest client protocol version a server accepts. A version 2 client never pings, so it
/// is never pinged either.
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// The client's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the client.
    pub protocol_version: u16,
    /// The service the client wants.
    pub service: String,
    /// The client's methods: wire id and digest of what a call puts on the wire.
    pub methods: Vec<(u32, String)>,
    /// Largest frame the client accepts.
    pub max_frame_size: u64,
}

impl Hello {
    /// The `Hello` of a client of `schema` that accepts frames of `max_frame_size` bytes.
    pub fn new(schema: &ServiceSchema, max_frame_size: usize) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            service: schema.name.clone(),
            methods: schema
                .methods
                .iter()
                .map(|m| (m.id, m.digest.clone()))
                .collect(),
            max_frame_size: max_frame_size as u64,
        }
    }
}

/// The server's acceptance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Largest frame the server accepts.
    pub max_frame_size: u64,
    /// Calls the server runs at once on this connection.
    pub max_in_flight: u32,
    /// The server's schema of the service, as JSON ([`ServiceSchema::to_json`]). JSON rather
    /// than postcard because a schema nests (shapes inside shapes) and `serde_json` bounds the
    /// nesting it accepts, so a hostile server cannot exhaust the client's stack.
    pub schema_json: String,
}

impl Welcome {
    /// The server's schema.
    pub fn schema(&self) -> Result<ServiceSchema, serde_json::Error> {
        ServiceSchema::from_json(&self.schema_json)
    }
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
    /// The server does not serve the service the client named (what servers serving one
    /// service said; kept so their clients still understand them).
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
    /// The peer (its IP address or uid) has this many connections already.
    TooManyFromPeer(u32),
    /// The peer's user may not connect.
    AccessDenied {
        /// Why, with the uids the server admits.
        reason: String,
    },
    /// The server does not serve the service the client named (servers that serve several
    /// services say this instead of [`Schema`](Self::Schema)). Last, so the variants before it
    /// keep their wire indexes.
    UnknownService {
        /// The service the client named.
        wanted: String,
        /// The services the server serves, sorted by name.
        available: Vec<String>,
    },
}
