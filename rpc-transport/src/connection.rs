//! [`Connection`]: a framed, ordered, duplex message connection, and its two halves.
//!
//! The set of transports is closed, so the halves dispatch with an enum rather than `dyn`.

use std::net::SocketAddr;

use tokio::net::{tcp, unix};

use crate::error::TransportError;
use crate::frame::Frame;
use crate::mem::{MemAcceptor, MemReceiver, MemSender};
use crate::mq::{MqReceiver, MqSender};
use crate::pipe::{PipeRead, PipeWrite};
use crate::shm::{ShmReceiver, ShmSender};
use crate::stream::{StreamReceiver, StreamSender};

/// Who is on the other end of a connection, as far as the transport knows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerInfo {
    /// A TCP peer's socket address.
    Tcp(SocketAddr),
    /// A Unix-socket peer's credentials (`SO_PEERCRED`): also a shared-memory or message-queue
    /// peer, known by its rendezvous socket.
    Unix {
        /// The peer's process id, where the kernel reports it.
        pid: Option<i32>,
        /// The peer's user id.
        uid: u32,
        /// The peer's group id.
        gid: u32,
    },
    /// A peer in this same process.
    Mem,
    /// A process on this host reached over a pipe or a FIFO: the spawned child, the parent of
    /// a `stdio` server, or a FIFO client. A FIFO client's uid is
    /// the owner of the FIFOs it made (checked by the kernel); a pid that only the peer claims
    /// is not reported.
    Local {
        /// The peer's process id, where known.
        pid: Option<i32>,
        /// The peer's user id, where known.
        uid: Option<u32>,
    },
}

#[derive(Debug)]
pub(crate) enum SenderFlavor {
    Tcp(StreamSender<tcp::OwnedWriteHalf>),
    Unix(StreamSender<unix::OwnedWriteHalf>),
    Mem(MemSender),
    Shm(ShmSender),
    Pipe(StreamSender<PipeWrite>),
    Mq(MqSender),
}

#[derive(Debug)]
pub(crate) enum ReceiverFlavor {
    Tcp(StreamReceiver<tcp::OwnedReadHalf>),
    Unix(StreamReceiver<unix::OwnedReadHalf>),
    Mem(MemReceiver),
    Shm(ShmReceiver),
    Pipe(StreamReceiver<PipeRead>),
    Mq(MqReceiver),
}

/// The sending half of a [`Connection`].
#[derive(Debug)]
pub struct FrameSender(pub(crate) SenderFlavor);

/// The receiving half of a [`Connection`].
#[derive(Debug)]
pub struct FrameReceiver(pub(crate) ReceiverFlavor);

impl From<StreamSender<tcp::OwnedWriteHalf>> for FrameSender {
    fn from(s: StreamSender<tcp::OwnedWriteHalf>) -> Self {
        FrameSender(SenderFlavor::Tcp(s))
    }
}
impl From<StreamSender<unix::OwnedWriteHalf>> for FrameSender {
    fn from(s: StreamSender<unix::OwnedWriteHalf>) -> Self {
        FrameSender(SenderFlavor::Unix(s))
    }
}
impl From<MemSender> for FrameSender {
    fn from(s: MemSender) -> Self {
        FrameSender(SenderFlavor::Mem(s))
    }
}
impl From<ShmSender> for FrameSender {
    fn from(s: ShmSender) -> Self {
        FrameSender(SenderFlavor::Shm(s))
    }
}
impl From<StreamSender<PipeWrite>> for FrameSender {
    fn from(s: StreamSender<PipeWrite>) -> Self {
        FrameSender(SenderFlavor::Pipe(s))
    }
}
impl From<StreamReceiver<PipeRead>> for FrameReceiver {
    fn from(r: StreamReceiver<PipeRead>) -> Self {
        FrameReceiver(ReceiverFlavor::Pipe(r))
    }
}
impl From<MqSender> for FrameSender {
    fn from(s: MqSender) -> Self {
        FrameSender(SenderFlavor::Mq(s))
    }
}
impl From<MqReceiver> for FrameReceiver {
    fn from(r: MqReceiver) -> Self {
        FrameReceiver(ReceiverFlavor::Mq(r))
    }
}
impl From<ShmReceiver> for FrameReceiver {
    fn from(r: ShmReceiver) -> Self {
        FrameReceiver(ReceiverFlavor::Shm(r))
    }
}
impl From<StreamReceiver<tcp::OwnedReadHalf>> for FrameReceiver {
    fn from(r: StreamReceiver<tcp::OwnedReadHalf>) -> Self {
        FrameReceiver(ReceiverFlavor::Tcp(r))
    }
}
impl From<StreamReceiver<unix::OwnedReadHalf>> for FrameReceiver {
    fn from(r: StreamReceiver<unix::OwnedReadHalf>) -> Self {
        FrameReceiver(ReceiverFlavor::Unix(r))
    }
}
impl From<MemReceiver> for FrameReceiver {
    fn from(r: MemReceiver) -> Self {
        FrameReceiver(ReceiverFlavor::Mem(r))
    }
}

impl FrameSender {
    /// Sends one frame. A frame over the maximum size is refused with
    /// [`TransportError::FrameTooLarge`] and nothing is sent; the connection stays usable.
    ///
    /// Cancellation safe: if the future is dropped, the frame is either not sent at all or
    /// sent whole with the next call.
    pub async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        match &mut self.0 {
            SenderFlavor::Tcp(s) => s.send(frame).await,
            SenderFlavor::Unix(s) => s.send(frame).await,
            SenderFlavor::Mem(s) => s.send(frame).await,
            SenderFlavor::Shm(s) => s.send(frame).await,
            SenderFlavor::Pipe(s) => s.send(frame).await,
            SenderFlavor::Mq(s) => s.send(frame).await,
        }
    }

    /// Sends several frames, in order, with as few system calls as the transport allows (one
    /// write for a socket). A frame over the maximum size fails the whole call before anything
    /// is sent.
    pub async fn send_all(&mut self, frames: Vec<Frame>) -> Result<(), TransportError> {
        let limit = self.max_frame_size();
        if let Some(big) = frames.iter().find(|f| f.len() > limit) {
            return Err(TransportError::FrameTooLarge {
                size: big.len(),
                limit,
            });
        }
        match &mut self.0 {
            SenderFlavor::Tcp(s) => {
                for frame in frames {
                    s.feed(frame)?;
                }
                s.flush().await
            }
            SenderFlavor::Unix(s) => {
                for frame in frames {
                    s.feed(frame)?;
                }
                s.flush().await
            }
            SenderFlavor::Pipe(s) => {
                for frame in frames {
                    s.feed(frame)?;
                }
                s.flush().await
            }
            _ => {
                for frame in frames {
                    self.send(frame).await?;
                }
                Ok(())
            }
        }
    }

    /// Whether [`send_with`](Self::send_with) writes straight into the transport's memory (shared
    /// memory) rather than into a frame first.
    pub fn writes_in_place(&self) -> bool {
        matches!(self.0, SenderFlavor::Shm(_))
    }

    /// Sends a message of `len` bytes that `fill` writes. On shared memory it is written
    /// straight into the ring (or the bulk region), with no buffer in between; elsewhere into
    /// a new frame. `fill` is not called if the message cannot be sent (too large, closed).
    pub async fn send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TransportError> {
        match &mut self.0 {
            SenderFlavor::Shm(s) => s.send_with(len, fill).await,
            _ => {
                if len > self.max_frame_size() {
                    return Err(TransportError::FrameTooLarge {
                        size: len,
                        limit: self.max_frame_size(),
                    });
                }
                self.send(Frame::filled(len, fill)).await
            }
        }
    }

    /// The mechanism carrying this connection, for logs and traces: `"tcp"`, `"unix"`,
    /// `"mem"`, `"shm"` (also `mmap://`), `"pipe"` (`stdio`, `spawn:`, `fifo://`) or `"mq"`.
    pub fn mechanism(&self) -> &'static str {
        match &self.0 {
            SenderFlavor::Tcp(_) => "tcp",
            SenderFlavor::Unix(_) => "unix",
            SenderFlavor::Mem(_) => "mem",
            SenderFlavor::Shm(_) => "shm",
            SenderFlavor::Pipe(_) => "pipe",
            SenderFlavor::Mq(_) => "mq",
        }
    }

    /// The largest payload this half will send.
    pub fn max_frame_size(&self) -> usize {
        match &self.0 {
            SenderFlavor::Tcp(s) => s.max_frame_size(),
            SenderFlavor::Unix(s) => s.max_frame_size(),
            SenderFlavor::Mem(s) => s.max_frame_size(),
            SenderFlavor::Shm(s) => s.max_frame_size(),
            SenderFlavor::Pipe(s) => s.max_frame_size(),
            SenderFlavor::Mq(s) => s.max_frame_size(),
        }
    }

    /// Flushes and closes the sending direction; the peer's receiver then returns `None`.
    pub async fn close(&mut self) -> Result<(), TransportError> {
        match &mut self.0 {
            SenderFlavor::Tcp(s) => s.close().await,
            SenderFlavor::Unix(s) => s.close().await,
            SenderFlavor::Mem(_) => {
                self.0 = SenderFlavor::Mem(MemSender::closed());
                Ok(())
            }
            SenderFlavor::Shm(s) => {
                s.close();
                Ok(())
            }
            SenderFlavor::Pipe(s) => s.close().await,
            SenderFlavor::Mq(s) => {
                s.close();
                Ok(())
            }
        }
    }
}

impl FrameReceiver {
    /// Receives the next frame; `None` once the peer has closed its sending direction.
    ///
    /// Cancellation safe: dropping the future loses no data.
    pub async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match &mut self.0 {
            ReceiverFlavor::Tcp(r) => r.recv().await,
            ReceiverFlavor::Unix(r) => r.recv().await,
            ReceiverFlavor::Mem(r) => r.recv().await,
            ReceiverFlavor::Shm(r) => r.recv().await,
            ReceiverFlavor::Pipe(r) => r.recv().await,
            ReceiverFlavor::Mq(r) => r.recv().await,
        }
    }

    /// Sets the largest frame accepted from now on: a server accepts only small frames until
    /// the handshake is done. A bigger frame fails the connection as it starts to arrive.
    pub fn set_max_frame_size(&mut self, limit: usize) {
        match &mut self.0 {
            ReceiverFlavor::Tcp(r) => r.set_max_frame_size(limit),
            ReceiverFlavor::Unix(r) => r.set_max_frame_size(limit),
            ReceiverFlavor::Mem(r) => r.set_max_frame_size(limit),
            ReceiverFlavor::Shm(r) => r.set_max_frame_size(limit),
            ReceiverFlavor::Pipe(r) => r.set_max_frame_size(limit),
            ReceiverFlavor::Mq(r) => r.set_max_frame_size(limit),
        }
    }

    /// Whether the peer has left (closed its end or died), asked without reading or waiting:
    /// frames it sent before may still be unread. A server that has stopped reading a
    /// connection uses it to let go of one whose peer is gone.
    pub fn peer_gone(&self) -> bool {
        match &self.0 {
            ReceiverFlavor::Tcp(r) => crate::hangup::hung_up(r.io().as_ref()),
            ReceiverFlavor::Unix(r) => crate::hangup::hung_up(r.io().as_ref()),
            ReceiverFlavor::Mem(r) => r.peer_gone(),
            ReceiverFlavor::Shm(r) => r.peer_gone(),
            ReceiverFlavor::Pipe(r) => crate::hangup::hung_up(r.io()),
            ReceiverFlavor::Mq(r) => r.peer_gone(),
        }
    }

    /// Whether an async receive may spin (yielding) for a new frame before it sleeps (shared
    /// memory only; on by default), as `spinning` says. A server turns it off while calls run,
    /// so a handler that computes without yielding cannot hold the connection's read loop on
    /// its worker. `spinning` is only asked on transports that spin.
    pub fn set_spinning(&mut self, spinning: impl FnOnce() -> bool) {
        if let ReceiverFlavor::Shm(r) = &mut self.0 {
            r.set_spinning(spinning());
        }
    }

    /// Whether a frame is already waiting, so the next [`recv`](Self::recv) returns at once.
    /// A server uses it to answer a batch of requests with one write.
    pub fn has_buffered(&self) -> bool {
        match &self.0 {
            ReceiverFlavor::Tcp(r) => r.has_buffered(),
            ReceiverFlavor::Unix(r) => r.has_buffered(),
            ReceiverFlavor::Mem(r) => r.has_buffered(),
            ReceiverFlavor::Shm(r) => r.has_buffered(),
            ReceiverFlavor::Pipe(r) => r.has_buffered(),
            ReceiverFlavor::Mq(r) => r.has_buffered(),
        }
    }

    /// Reads and discards everything until the peer closes. Closing a socket with unread data
    /// makes the kernel reset the connection, which can destroy the last frames we sent; a
    /// side that ends a connection on a protocol error drains (with a time limit) so its peer
    /// reads why.
    pub async fn drain(&mut self) {
        match &mut self.0 {
            ReceiverFlavor::Tcp(r) => r.drain().await,
            ReceiverFlavor::Unix(r) => r.drain().await,
            ReceiverFlavor::Mem(r) => r.drain().await,
            ReceiverFlavor::Shm(r) => r.drain().await,
            ReceiverFlavor::Pipe(r) => r.drain().await,
            ReceiverFlavor::Mq(r) => r.drain().await,
        }
    }
}

/// A framed, ordered, reliable, duplex message connection.
///
/// Use it whole with [`send`](Connection::send) and [`recv`](Connection::recv), or
/// [`split`](Connection::split) it to send and receive from different tasks.
#[derive(Debug)]
pub struct Connection {
    sender: FrameSender,
    receiver: FrameReceiver,
    peer: PeerInfo,
}

impl Connection {
    /// Joins two halves into a connection.
    pub fn new(sender: FrameSender, receiver: FrameReceiver, peer: PeerInfo) -> Self {
        Connection {
            sender,
            receiver,
            peer,
        }
    }

    /// Who is on the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Sends one frame; see [`FrameSender::send`].
    pub async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        self.sender.send(frame).await
    }

    /// Receives one frame; see [`FrameReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        self.receiver.recv().await
    }

    /// The two halves and the peer's description.
    pub fn split(self) -> (FrameSender, FrameReceiver, PeerInfo) {
        (self.sender, self.receiver, self.peer)
    }

    pub(crate) fn set_mem_limits(&mut self, limit: usize) {
        if let (SenderFlavor::Mem(s), ReceiverFlavor::Mem(r)) =
            (&mut self.sender.0, &mut self.receiver.0)
        {
            MemAcceptor::set_limits(s, r, limit);
        }
    }
}
