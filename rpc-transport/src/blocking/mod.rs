//! Blocking connections, for code without an async runtime: [`connect_blocking`] and the
//! halves [`BlockingSender`] and [`BlockingReceiver`], each a boxed half of whichever
//! transport made it ([`BlockingSendFrames`], [`BlockingReceiveFrames`]).
//!
//! - `sync_stream.rs`: length-prefixed framing over a blocking socket or pipe.
//! - `over_runtime.rs`: an async connection driven from blocking code by a private runtime.
//!
//! A server can also move the halves of an accepted shared-memory connection onto a thread
//! of its own with [`FrameSender::into_blocking`](crate::FrameSender::into_blocking) and
//! [`FrameReceiver::into_blocking`](crate::FrameReceiver::into_blocking).

mod over_runtime;
mod sync_stream;

use std::fmt;
use std::time::Duration;

pub use sync_stream::{TimedStream, blocking_stream_connection};

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::PeerInfo;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::registry;
use crate::transport::{BlockingReceiveFrames, BlockingSendFrames};

pub(crate) use sync_stream::{SyncStreamReceiver, remaining};

/// The sending half of a blocking connection.
pub struct BlockingSender(Box<dyn BlockingSendFrames>);

/// The receiving half of a blocking connection.
pub struct BlockingReceiver(Box<dyn BlockingReceiveFrames>);

impl fmt::Debug for BlockingSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockingSender({})", self.0.mechanism())
    }
}

impl fmt::Debug for BlockingReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlockingReceiver")
    }
}

impl BlockingSender {
    /// Wraps a transport's blocking sending half.
    pub fn new(half: impl BlockingSendFrames) -> Self {
        BlockingSender(Box::new(half))
    }

    /// Wraps a transport's boxed blocking sending half.
    pub fn from_box(half: Box<dyn BlockingSendFrames>) -> Self {
        BlockingSender(half)
    }

    /// Sends one frame, waiting at most until `deadline` ([`TransportError::TimedOut`]). A frame
    /// over the maximum size is refused with nothing sent.
    pub fn send(
        &mut self,
        frame: Frame,
        deadline: impl Into<Deadline>,
    ) -> Result<(), TransportError> {
        self.0.send(frame, deadline.into())
    }

    /// Sends a message of `len` bytes that `fill` writes; see
    /// [`FrameSender::send_with`](crate::FrameSender::send_with).
    pub fn send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        deadline: impl Into<Deadline>,
    ) -> Result<(), TransportError> {
        let mut fill = Some(fill);
        let mut once = |buf: &mut [u8]| {
            if let Some(fill) = fill.take() {
                fill(buf)
            }
        };
        self.0.send_with(len, &mut once, deadline.into())
    }

    /// Sends like [`send_with`](Self::send_with) only if that needs no wait: `Ok(false)` when
    /// shared memory's ring is full, with nothing sent (so async code can wait for room
    /// without holding a thread). Other mechanisms send as `send_with` does, waiting as long
    /// as it takes.
    pub fn try_send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<bool, TransportError> {
        let mut fill = Some(fill);
        let mut once = |buf: &mut [u8]| {
            if let Some(fill) = fill.take() {
                fill(buf)
            }
        };
        self.0.try_send_with(len, &mut once)
    }

    /// The mechanism carrying this connection, as
    /// [`FrameSender::mechanism`](crate::FrameSender::mechanism) names it.
    pub fn mechanism(&self) -> &'static str {
        self.0.mechanism()
    }

    /// Whether the connection drives an async runtime of its own (`mem://`, `tls://`), so it
    /// must not be used inside one.
    pub fn runs_own_runtime(&self) -> bool {
        self.0.runs_own_runtime()
    }

    /// The largest payload this half will send.
    pub fn max_frame_size(&self) -> usize {
        self.0.max_frame_size()
    }

    /// Closes the sending direction; the peer's receiver then ends.
    pub fn close(&mut self) {
        self.0.close()
    }
}

impl BlockingReceiver {
    /// Wraps a transport's blocking receiving half.
    pub fn new(half: impl BlockingReceiveFrames) -> Self {
        BlockingReceiver(Box::new(half))
    }

    /// Wraps a transport's boxed blocking receiving half.
    pub fn from_box(half: Box<dyn BlockingReceiveFrames>) -> Self {
        BlockingReceiver(half)
    }

    /// Receives the next frame, waiting at most until `deadline` ([`TransportError::TimedOut`],
    /// after which the next call resumes where this one stopped). `None` once the peer closed.
    pub fn recv(&mut self, deadline: impl Into<Deadline>) -> Result<Option<Frame>, TransportError> {
        self.0.recv(deadline.into())
    }

    /// Whether the peer has left, asked without reading or waiting; see
    /// [`FrameReceiver::peer_gone`](crate::FrameReceiver::peer_gone).
    pub fn peer_gone(&self) -> bool {
        self.0.peer_gone()
    }

    /// A handle to interrupt this receiver's waits from another thread.
    pub fn interrupter(&self) -> RecvInterrupter {
        RecvInterrupter(self.0.interrupter())
    }
}

/// Makes a [`BlockingReceiver`] blocked in `recv` on another thread return
/// [`TransportError::TimedOut`] at once, so that thread can look at other signals (a server
/// shutting down) without waking up periodically.
pub struct RecvInterrupter(Option<Box<dyn Fn() + Send + Sync>>);

impl RecvInterrupter {
    /// Interrupts the receiver's current (or next) blocking wait once. Receivers that cannot be
    /// interrupted wait out their deadline instead.
    pub fn interrupt(&self) {
        if let Some(interrupt) = &self.0 {
            interrupt();
        }
    }
}

/// A connection for code without an async runtime.
#[derive(Debug)]
pub struct BlockingConnection {
    sender: BlockingSender,
    receiver: BlockingReceiver,
    peer: PeerInfo,
}

impl BlockingConnection {
    /// Joins two halves into a connection.
    pub fn new(sender: BlockingSender, receiver: BlockingReceiver, peer: PeerInfo) -> Self {
        BlockingConnection {
            sender,
            receiver,
            peer,
        }
    }

    /// Who is on the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Sends one frame; see [`BlockingSender::send`].
    pub fn send(
        &mut self,
        frame: Frame,
        deadline: impl Into<Deadline>,
    ) -> Result<(), TransportError> {
        self.sender.send(frame, deadline)
    }

    /// Receives one frame; see [`BlockingReceiver::recv`].
    pub fn recv(&mut self, deadline: impl Into<Deadline>) -> Result<Option<Frame>, TransportError> {
        self.receiver.recv(deadline)
    }

    /// The two halves and the peer's description.
    pub fn split(self) -> (BlockingSender, BlockingReceiver, PeerInfo) {
        (self.sender, self.receiver, self.peer)
    }
}

/// Opens a blocking connection to `address`, waiting at most `timeout` to connect.
pub fn connect_blocking(
    address: &Address,
    config: &TransportConfig,
    timeout: Duration,
) -> Result<BlockingConnection, TransportError> {
    registry::lookup(address)?.connect_blocking(address, config, timeout)
}
