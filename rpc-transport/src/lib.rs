//! Framed, ordered, duplex message connections over the operating system's IPC mechanisms.
//!
//! This crate knows nothing about RPC: it moves whole messages ([`Frame`]s) between two
//! endpoints, reliably and in order, each at most [`TransportConfig::max_frame_size`] bytes.
//!
//! - [`Address`] (`address.rs`): the address forms, parsed from and printed to strings.
//! - [`connect`] and [`Listener`] (`listener.rs`): from an address to a [`Connection`].
//! - [`Connection`], [`FrameSender`], [`FrameReceiver`] (`connection.rs`): the framed duplex,
//!   whole or split into halves; [`PeerInfo`] says who is on the other end.
//! - One private module per mechanism: `tcp`, `unix`, `mem`, with `stream` framing the byte
//!   streams.
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

mod address;
mod config;
mod connection;
mod error;
mod frame;
mod listener;
mod mem;
mod stream;
mod tcp;
mod unix;

pub use address::{Address, SUPPORTED_FORMS};
pub use config::{DEFAULT_MAX_FRAME_SIZE, TransportConfig};
pub use connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
pub use error::TransportError;
pub use frame::{FRAME_PREFIX, Frame};
pub use listener::{Listener, connect};
