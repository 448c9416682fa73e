//! [`Connection`]: a framed, ordered, duplex message connection, and its two halves, each a
//! boxed half of whichever transport made it ([`SendFrames`], [`ReceiveFrames`]).

use std::fmt;
use std::net::SocketAddr;

use crate::blocking::{BlockingReceiver, BlockingSender};
use crate::error::TransportError;
use crate::frame::Frame;
use crate::transport::{ReceiveFrames, SendFrames};

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
    /// A TLS peer: its socket address and, where it presented one (a server always does; a
    /// client under mutual TLS), the identity in its certificate.
    Tls {
        /// The peer's socket address.
        addr: SocketAddr,
        /// The peer's verified certificate, if it presented one.
        certificate: Option<PeerCertificate>,
    },
    /// A peer of a transport registered outside this crate, described by it.
    Other(String),
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

/// The identity a verified peer certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The certificate's subject, as an RFC 4514 string (`CN=client,O=Example`).
    pub subject: String,
    /// Its subject alternative names: DNS names as written, IP addresses as text,
    /// e-mail addresses and URIs as written.
    pub subject_alt_names: Vec<String>,
    /// The certificate itself, DER-encoded.
    pub der: Vec<u8>,
}

/// The sending half of a [`Connection`].
pub struct FrameSender(Box<dyn SendFrames>);

/// The receiving half of a [`Connection`].
pub struct FrameReceiver(Box<dyn ReceiveFrames>);

impl fmt::Debug for FrameSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameSender({})", self.0.mechanism())
    }
}

impl fmt::Debug for FrameReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FrameReceiver")
    }
}

impl FrameSender {
    /// Wraps a transport's sending half.
    pub fn new(half: impl SendFrames) -> Self {
        FrameSender(Box::new(half))
    }

    /// Wraps a transport's boxed sending half.
    pub fn from_box(half: Box<dyn SendFrames>) -> Self {
        FrameSender(half)
    }

    /// Sends one frame. A frame over the maximum size is refused with
    /// [`TransportError::FrameTooLarge`] and nothing is sent; the connection stays usable.
    ///
    /// Cancellation safe: if the future is dropped, the frame is either not sent at all or
    /// sent whole with the next call.
    pub async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        self.0.send(frame).await
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
        self.0.send_all(frames).await
    }

    /// Queues a message of `len` bytes written in place by `fill`, to go out with the next
    /// [`send_all`](Self::send_all) (an empty one too): `Ok(false)`, with `fill` not called,
    /// where the transport does not queue bytes (then send a frame). A message over the
    /// maximum size is refused by the byte-stream transports; check it first with another
    /// transport. See [`SendFrames::feed_with`].
    pub fn feed_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<bool, TransportError> {
        let mut fill = Some(fill);
        self.0.feed_with(len, &mut |out| {
            if let Some(fill) = fill.take() {
                fill(out)
            }
        })
    }

    /// Whether [`send_with`](Self::send_with) writes straight into the transport's memory (shared
    /// memory) rather than into a frame first.
    pub fn writes_in_place(&self) -> bool {
        self.0.writes_in_place()
    }

    /// Sends a message of `len` bytes that `fill` writes. On shared memory it is written
    /// straight into the ring (or the bulk region), with no buffer in between; elsewhere into
    /// a new frame. `fill` is not called if the message cannot be sent (too large, closed).
    pub async fn send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TransportError> {
        let limit = self.max_frame_size();
        if len > limit {
            return Err(TransportError::FrameTooLarge { size: len, limit });
        }
        if !self.0.writes_in_place() {
            return self.send(Frame::filled(len, fill)).await;
        }
        // No room yet: yield a while, then sleep in growing steps, as a full ring empties.
        let mut fill = Some(fill);
        let mut backoff = std::time::Duration::from_micros(20);
        for attempt in 0u32.. {
            let mut once = |buf: &mut [u8]| {
                if let Some(fill) = fill.take() {
                    fill(buf)
                }
            };
            if self.0.try_send_with(len, &mut once)? {
                return Ok(());
            }
            if attempt < 64 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_millis(1));
            }
        }
        unreachable!("the loop returns")
    }

    /// The mechanism carrying this connection, for logs and traces: `"tcp"`, `"tls"`,
    /// `"unix"`, `"mem"`, `"shm"` (also `mmap://` and `sysv-shm://`), `"pipe"` (`stdio`,
    /// `spawn:`, `fifo://`), `"mq"`, or what a registered transport calls itself.
    pub fn mechanism(&self) -> &'static str {
        self.0.mechanism()
    }

    /// The largest payload this half will send.
    pub fn max_frame_size(&self) -> usize {
        self.0.max_frame_size()
    }

    /// Flushes and closes the sending direction; the peer's receiver then returns `None`.
    pub async fn close(&mut self) -> Result<(), TransportError> {
        self.0.close().await
    }

    /// The transport's own half, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }

    /// This half as a [`BlockingSender`], for transports that serve best from a dedicated
    /// thread (shared memory); the half itself, unchanged, for the others.
    #[allow(clippy::result_large_err)] // hands the half back unchanged, by design
    pub fn into_blocking(self) -> Result<BlockingSender, FrameSender> {
        self.0
            .into_blocking()
            .map(BlockingSender::from_box)
            .map_err(FrameSender)
    }
}

impl FrameReceiver {
    /// Wraps a transport's receiving half.
    pub fn new(half: impl ReceiveFrames) -> Self {
        FrameReceiver(Box::new(half))
    }

    /// Wraps a transport's boxed receiving half.
    pub fn from_box(half: Box<dyn ReceiveFrames>) -> Self {
        FrameReceiver(half)
    }

    /// Receives the next frame; `None` once the peer has closed its sending direction.
    ///
    /// Cancellation safe: dropping the future loses no data.
    pub async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        self.0.recv().await
    }

    /// Sets the largest frame accepted from now on: a server accepts only small frames until
    /// the handshake is done. A bigger frame fails the connection as it starts to arrive.
    pub fn set_max_frame_size(&mut self, limit: usize) {
        self.0.set_max_frame_size(limit)
    }

    /// Whether the peer has left (closed its end or died), asked without reading or waiting:
    /// frames it sent before may still be unread. A server that has stopped reading a
    /// connection uses it to let go of one whose peer is gone.
    pub fn peer_gone(&self) -> bool {
        self.0.peer_gone()
    }

    /// Whether an async receive may spin (yielding) for a new frame before it sleeps (shared
    /// memory only; on by default), as `spinning` says. A server turns it off while calls run,
    /// so a handler that computes without yielding cannot hold the connection's read loop on
    /// its worker. `spinning` is only asked on transports that spin.
    pub fn set_spinning(&mut self, mut spinning: impl FnMut() -> bool) {
        self.0.set_spinning(&mut spinning)
    }

    /// Whether a frame is already waiting, so the next [`recv`](Self::recv) returns at once.
    /// A server uses it to answer a batch of requests with one write.
    pub fn has_buffered(&self) -> bool {
        self.0.has_buffered()
    }

    /// Reads and discards everything until the peer closes. Closing a socket with unread data
    /// makes the kernel reset the connection, which can destroy the last frames we sent; a
    /// side that ends a connection on a protocol error drains (with a time limit) so its peer
    /// reads why.
    pub async fn drain(&mut self) {
        self.0.drain().await
    }

    /// The transport's own half, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }

    /// This half as one that can be looked at without waiting ([`PollFrames`](crate::PollFrames)),
    /// where its mechanism allows (see [`ReceiveFrames::as_poll`](crate::ReceiveFrames::as_poll));
    /// `None` on the others.
    pub fn as_poll(&mut self) -> Option<&mut dyn crate::PollFrames> {
        self.0.as_poll()
    }

    /// This half as a [`BlockingReceiver`], for transports that serve best from a dedicated
    /// thread (shared memory); the half itself, unchanged, for the others.
    #[allow(clippy::result_large_err)] // hands the half back unchanged, by design
    pub fn into_blocking(self) -> Result<BlockingReceiver, FrameReceiver> {
        self.0
            .into_blocking()
            .map(BlockingReceiver::from_box)
            .map_err(FrameReceiver)
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
}
