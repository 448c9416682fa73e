//! The transport layer's error type.

use std::io;

/// Everything that can go wrong below the RPC layer: addresses, connecting, binding, framing, I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The address has a known scheme but its rest is malformed.
    #[error("invalid address '{address}': {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No transport is registered for the address's scheme.
    #[error("unsupported address '{address}'; supported forms: {supported}")]
    UnsupportedScheme {
        /// The address as given.
        address: String,
        /// The forms that are supported, comma-separated.
        supported: String,
    },
    /// The scheme's transport cannot do what was asked (connect without a runtime, say).
    #[error("the '{scheme}' transport cannot serve {address}")]
    Unavailable {
        /// The scheme, such as `mem`.
        scheme: String,
        /// The address as given, and why.
        address: String,
    },
    /// A transport whose blocking connection drives a runtime of its own (`mem://`, `tls://`,
    /// most registered ones) was asked for one, or to send or receive on one, from inside an
    /// async runtime.
    #[error(
        "a blocking connection to {address} runs a runtime of its own and cannot be made or used inside an async runtime"
    )]
    InsideRuntime {
        /// The address.
        address: String,
    },
    /// A transport was registered under a scheme that is already taken.
    #[error("the scheme '{scheme}' already has a transport")]
    SchemeTaken {
        /// The scheme.
        scheme: String,
    },
    /// A TLS handshake failed, or a certificate was refused; `reason` says which and why
    /// (the peer's certificate chain, its host name, its expiry, a missing client
    /// certificate...).
    #[error("TLS with {peer} failed: {reason}")]
    Tls {
        /// The peer: the server's socket address for a client (or the address connected to,
        /// before one is known), the client's socket address for a server.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A transport's own settings are missing or unusable: no `TlsServerSettings` for a
    /// `tls://` listener, a certificate file that cannot be read, a key that does not match
    /// its certificate. `reason` names the setting or the file.
    #[error("cannot set up {scheme}://: {reason}")]
    Settings {
        /// The scheme whose settings are wrong, such as `tls`.
        scheme: String,
        /// What is missing or wrong, naming the file where there is one.
        reason: String,
    },
    /// Connecting to a listener failed.
    #[error("cannot connect to {address}: {source}")]
    Connect {
        /// The address connected to.
        address: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address bound to.
        address: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// Another live listener already owns the address.
    #[error("address in use: {address} (another server is listening there)")]
    AddressInUse {
        /// The address bound to.
        address: String,
    },
    /// A frame exceeded the maximum frame size. Nothing was sent; on receive the connection is unusable.
    #[error("frame of {size} bytes exceeds the maximum frame size of {limit} bytes")]
    FrameTooLarge {
        /// The frame's payload size in bytes.
        size: usize,
        /// The configured maximum in bytes.
        limit: usize,
    },
    /// The peer broke the framing protocol (for example, the stream ended inside a frame).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A limit of the operating system was reached; `limit` names it (such as
    /// `RLIMIT_MSGQUEUE` or `fs.mqueue.queues_max`) so an operator knows what to raise.
    #[error("system limit {limit} reached: {detail}")]
    LimitReached {
        /// The limit's name: an rlimit or a sysctl.
        limit: &'static str,
        /// What was being done, and the limit's value where known.
        detail: String,
    },
    /// A blocking operation's deadline passed.
    #[error("timed out")]
    TimedOut,
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// Any other I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
