//! [`RpcError`]: every way a call can fail that is not the application's own error.

use std::time::Duration;

use rpc_transport::TransportError;

/// Why a connection or a call failed. Application errors never appear here: they travel
/// inside the method's own `Result<T, E>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The address could not be parsed, or names a transport this build lacks.
    #[error(transparent)]
    Address(TransportError),
    /// Opening the connection failed.
    #[error("{}", connect_message(.address, .source))]
    Connect {
        /// The address connected to.
        address: String,
        /// The transport's reason.
        #[source]
        source: TransportError,
    },
    /// Listening on an address failed.
    #[error("cannot serve on {address}: {source}")]
    Bind {
        /// The address bound to.
        address: String,
        /// The transport's reason.
        #[source]
        source: TransportError,
    },
    /// Two services of one name were added to a server (`Server::add`); the later one is
    /// refused, and the server does not listen.
    #[error(
        "two services named '{service}' were added to one server; a server serves each name once"
    )]
    DuplicateService {
        /// The name added twice.
        service: String,
    },
    /// A server was asked to listen with no service added (`Server::add`).
    #[error("the server has no service to serve: add one with `Server::add` before listening")]
    NoServices,
    /// The client and server speak different protocol versions.
    #[error("protocol version mismatch: client speaks {client}, server speaks {server}")]
    ProtocolVersion {
        /// The client's version.
        client: u16,
        /// The server's version.
        server: u16,
    },
    /// The server serves the service with a different schema, for a client with
    /// [`ClientOptions::strict_schema`](crate::ClientOptions::strict_schema) (or, from servers
    /// older than [`UnknownService`](Self::UnknownService), does not serve it).
    #[error("service '{service}' does not match the server's: {}", differences.join("; "))]
    HandshakeMismatch {
        /// The service the client expected.
        service: String,
        /// Each difference, such as "method 'put': argument 'order': Order.id: client u32, server i32".
        differences: Vec<String>,
    },
    /// The server does not serve the service the client wants; it names the ones it does.
    #[error("the server does not serve '{service}'; it serves: {}", available.join(", "))]
    UnknownService {
        /// The service the client wanted.
        service: String,
        /// The services the server serves, sorted by name.
        available: Vec<String>,
    },
    /// The server cannot serve this method as the client knows it: it lacks the method, or
    /// has it with other argument or return types. Nothing was sent; the connection goes on.
    #[error("method '{method}' cannot be called on this server: {reason}")]
    IncompatibleMethod {
        /// The method's wire name.
        method: String,
        /// Why, such as "argument 'order': Order.id: client u32, server i32".
        reason: String,
    },
    /// The server does not admit this client's user (see `Server::allow_uids`).
    #[error("the server refused the connection: {reason}")]
    AccessDenied {
        /// Why, naming the client's uid and the ones the server admits.
        reason: String,
    },
    /// The server refused the connection because this client's IP address (or uid) holds as
    /// many connections as one peer may.
    #[error(
        "server refused the connection: this peer already holds its maximum of {limit} connections"
    )]
    TooManyConnectionsFromPeer {
        /// The server's per-peer maximum.
        limit: u32,
    },
    /// The server refused the connection because it has as many as it accepts.
    #[error("server refused the connection: it has reached its maximum of {limit} connections")]
    TooManyConnections {
        /// The server's maximum number of connections.
        limit: u32,
    },
    /// The connection is gone; every call pending on it fails with this.
    #[error("disconnected: {reason}")]
    Disconnected {
        /// What ended the connection.
        reason: String,
    },
    /// A request or response is bigger than the maximum frame size. The connection stays usable.
    #[error("message of {size} bytes exceeds the maximum frame size of {limit} bytes")]
    FrameTooLarge {
        /// The encoded message size in bytes.
        size: usize,
        /// The limit in bytes (the smaller of the two peers' limits).
        limit: usize,
    },
    /// A value could not be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The codec's reason.
        reason: String,
    },
    /// A received message could not be decoded.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The codec's reason.
        reason: String,
    },
    /// The server does not know the method id the client sent.
    #[error("the server's service '{service}' has no method with id {method}")]
    UnknownMethod {
        /// The service called.
        service: String,
        /// The method id sent.
        method: u32,
    },
    /// The server could not decode the request's arguments.
    #[error("the server rejected the arguments of '{method}': {reason}")]
    BadRequest {
        /// The method called.
        method: String,
        /// The server's reason.
        reason: String,
    },
    /// The call did not complete within its timeout.
    #[error("call to '{method}' exceeded its deadline of {timeout:?}")]
    DeadlineExceeded {
        /// The method called.
        method: String,
        /// The call's timeout.
        timeout: Duration,
    },
    /// The connection already has as many calls in flight as the server allows.
    #[error("too many calls in flight on this connection (server limit {limit})")]
    TooManyCalls {
        /// The server's per-connection limit.
        limit: u32,
    },
    /// The method's handler panicked on the server.
    #[error("the server's handler of '{method}' panicked")]
    HandlerPanicked {
        /// The method called.
        method: String,
    },
    /// The server is shutting down and takes no new calls.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The peer broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The producer of a stream's items (the server's handler, or the client's stream of a
    /// call) ended it with an error.
    #[error("the stream of '{method}' failed: {reason}")]
    StreamFailed {
        /// The method called.
        method: String,
        /// What the producer said.
        reason: String,
    },
    /// A blocking client was used where blocking would deadlock: on the thread of a
    /// current-thread tokio runtime, or (for `mem://`) anywhere inside a runtime. Nothing was
    /// sent.
    #[error("a blocking client cannot be used here: {advice}")]
    BlockingInAsyncContext {
        /// Why, and what to use instead.
        advice: String,
    },
    /// The tokio runtime this async client was created in has shut down, and with it the
    /// task reading the connection's replies: the client cannot be used any more.
    #[error(
        "the tokio runtime this client was created in has shut down; create the client again in a runtime that is running"
    )]
    RuntimeShutDown,
    /// A `dns+tcp://` or `dns+tls://` name did not resolve, or resolved to no address.
    #[error("cannot resolve '{name}': {reason}")]
    Resolve {
        /// The name looked up.
        name: String,
        /// Why it gave no address.
        reason: String,
    },
    /// Client options that cannot work together (a reconnect policy's backoff bounds, say).
    #[error("invalid client options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },
}

impl RpcError {
    pub(crate) fn decode(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        RpcError::Decode {
            what: what.into(),
            reason: error.to_string(),
        }
    }

    pub(crate) fn encode(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        RpcError::Encode {
            what: what.into(),
            reason: error.to_string(),
        }
    }

    /// Whether an *idempotent* method that failed with this error may be called again
    /// elsewhere or later: the connection broke, could not be made, or its server was going
    /// away.
    ///
    /// It does not say the call never ran: a `Disconnected` call (the connection broke, or the
    /// keepalive gave it up, after the request went out) may have run to its end on the
    /// server, its reply lost. Never call a non-idempotent method again on this alone.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RpcError::Disconnected { .. }
                | RpcError::Connect { .. }
                | RpcError::Resolve { .. }
                | RpcError::ShuttingDown
                | RpcError::TooManyConnections { .. }
        )
    }

    pub(crate) fn disconnected(reason: impl std::fmt::Display) -> Self {
        RpcError::Disconnected {
            reason: reason.to_string(),
        }
    }
}

/// "cannot connect to ADDRESS: why", naming the address once (a transport's own connect error
/// names it already).
fn connect_message(address: &str, source: &TransportError) -> String {
    match source {
        TransportError::Connect { .. } => source.to_string(),
        _ => format!("cannot connect to {address}: {source}"),
    }
}
