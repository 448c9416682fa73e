//! Framed, ordered, duplex message connections over the operating system's IPC mechanisms.
//!
//! This crate knows nothing about RPC: it moves whole messages ([`Frame`]s) between two
//! endpoints, reliably and in order, each at most [`TransportConfig::max_frame_size`] bytes.
//!
//! - [`Transport`] and its halves (`transport.rs`): the interface every mechanism implements,
//!   built-in or not; [`register`] (`registry.rs`) adds one under a URL scheme, after which
//!   every address of that scheme works here and in `rpc-core`'s clients and servers.
//! - [`Address`] (`address.rs`): `scheme:rest`, checked by the scheme's transport.
//! - [`connect`] and [`Listener`] (`listener.rs`): from an address to a [`Connection`].
//! - [`connect_blocking`] (`blocking/`): a [`BlockingConnection`] for code without a runtime.
//! - [`Connection`], [`FrameSender`], [`FrameReceiver`] (`connection.rs`): the framed duplex,
//!   whole or split into halves; [`PeerInfo`] says who is on the other end.
//! - [`framed`] (`stream.rs`): framed halves over any `AsyncRead`/`AsyncWrite`;
//!   [`blocking_stream_connection`] and [`BlockingConnection::over_runtime`] the blocking
//!   counterparts.
//! - [`copy_in_place`] and [`mark_written`] (`shm/progress.rs`): for code that writes a
//!   message in place (`send_with`), so shared memory's receiver copies a large message out
//!   while it is still being written.
//! - [`spawn`] and [`spawn_blocking`]: a connection to a child process started from a
//!   [`std::process::Command`], over pipes on its stdin and stdout.
//! - [`TlsServerSettings`] and [`TlsClientSettings`] (`tls/`): the certificates of `tls://`,
//!   given as transport settings ([`TransportConfig::with_setting`]).
//! - One module per mechanism, each registered by one line in `registry.rs`: `tcp`, `tls`,
//!   `unix`, `mem`, `shm` (shared memory, `mmap://` and System V `sysv-shm://`), `pipe`
//!   (`spawn:` and `stdio`), `fifo` (named pipes), `mq` (POSIX message queues, and System V
//!   ones in `mq/sysv`: `sysv-mq://`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rpc_transport::TransportError> {
//! use rpc_transport::{Address, Frame, Listener, TransportConfig, connect};
//! let config = TransportConfig::default();
//! let listener = Listener::bind(&"tcp://127.0.0.1:0".parse()?, &config).await?;
//! let mut client = connect(listener.local_address(), &config).await?;
//! let mut server = listener.accept().await?;
//! client.send(Frame::from_payload(b"ping")).await?;
//! assert_eq!(server.recv().await?.unwrap().payload(), b"ping");
//! # Ok(()) }
//! ```

// Under `--cfg loom` only the shared-memory ring is built, for the model checker
// (`RUSTFLAGS="--cfg loom" cargo test -p rpc-transport --lib --release`).
#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(not(loom))]
mod address;
#[cfg(not(loom))]
mod blocking;
#[cfg(not(loom))]
mod config;
#[cfg(not(loom))]
mod connection;
#[cfg(not(loom))]
mod deadline;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod fifo;
#[cfg(not(loom))]
mod frame;
/// Hooks for the fuzz targets in `tests/fuzz` and the property tests. Not a public API.
#[cfg(not(loom))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(not(loom))]
mod hangup;
#[cfg(not(loom))]
mod large_copy;
#[cfg(not(loom))]
mod listener;
#[cfg(not(loom))]
mod mem;
#[cfg(not(loom))]
mod mq;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod poll;
#[cfg(not(loom))]
mod recv_now;
#[cfg(not(loom))]
mod registry;
pub mod shm;
#[cfg(not(loom))]
pub mod spin;
#[cfg(not(loom))]
mod stream;
#[cfg(not(loom))]
mod tcp;
#[cfg(not(loom))]
mod tls;
#[cfg(not(loom))]
mod transport;
#[cfg(not(loom))]
mod unix;

#[cfg(not(loom))]
pub use address::Address;
#[cfg(not(loom))]
pub use blocking::{
    BlockingConnection, BlockingReceiver, BlockingSender, RecvInterrupter, TimedStream,
    blocking_stream_connection, connect_blocking,
};
#[cfg(not(loom))]
pub use config::{DEFAULT_MAX_FRAME_SIZE, DEFAULT_SHM_RING_CAPACITY, TransportConfig};
#[cfg(not(loom))]
pub use connection::{Connection, FrameReceiver, FrameSender, PeerCertificate, PeerInfo};
#[cfg(not(loom))]
pub use deadline::Deadline;
#[cfg(not(loom))]
pub use error::TransportError;
#[cfg(not(loom))]
pub use frame::{FRAME_PREFIX, Frame};
#[cfg(not(loom))]
pub use listener::{Listener, connect};
#[cfg(not(loom))]
pub use pipe::{REAP_GRACE, spawn, spawn_blocking};
#[cfg(not(loom))]
pub use poll::{PollFrames, Wakeup};
#[cfg(not(loom))]
pub use registry::{register, supported_forms};
#[cfg(not(loom))]
pub use shm::{copy_in_place, mark_written};
#[cfg(not(loom))]
pub use stream::framed;
#[cfg(not(loom))]
pub use tls::{
    DEFAULT_HANDSHAKE_TIMEOUT, TlsClientSettings, TlsClientSettingsBuilder, TlsServerSettings,
    TlsServerSettingsBuilder,
};
#[cfg(not(loom))]
pub use transport::{
    Acceptor, BlockingReceiveFrames, BlockingSendFrames, BoxFuture, ReceiveFrames, SendFrames,
    Transport,
};
