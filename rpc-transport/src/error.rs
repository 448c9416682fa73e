//! The transport layer's error type.

use std::io;

use crate::address::SUPPORTED_FORMS;

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
    /// The address's scheme is not one this crate knows.
    #[error("unsupported address '{address}'; supported forms: {}", SUPPORTED_FORMS.join(", "))]
    UnsupportedScheme {
        /// The address as given.
        address: String,
    },
    /// The scheme is known but this build cannot connect or listen on it.
    #[error("the '{scheme}' transport is not available in this build ({address})")]
    Unavailable {
        /// The scheme, such as `tls`.
        scheme: &'static str,
        /// The address as given.
        address: String,
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
