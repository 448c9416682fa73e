//! Length-prefixed framing over any byte stream (TCP, Unix sockets, pipes, TLS), and
//! [`framed`], which makes a connection's halves of any `AsyncRead` and `AsyncWrite`.
//!
//! Each frame is a little-endian `u32` payload length followed by the payload. Both halves
//! keep their state in the struct, so `send` and `recv` are cancellation safe: a caller
//! dropped mid-way never leaves half a frame on the wire (the rest goes out with the next send)
//! and never loses bytes already read.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::TransportConfig;
use crate::connection::{FrameReceiver, FrameSender};
use crate::error::TransportError;
use crate::frame::{FRAME_PREFIX, Frame};
use crate::poll::{PollFrames, Wakeup};
use crate::transport::{BoxFuture, ReceiveFrames, SendFrames};

/// Bytes asked of the kernel per read when no large frame is pending.
const READ_CHUNK: usize = 64 * 1024;
/// An output buffer bigger than this is given back after it has been flushed.
const KEEP_OUTPUT_CAPACITY: usize = 1024 * 1024;

/// Frames up to this size (with their prefix) are copied into the kept output buffer rather
/// than written from their own.
const COPY_FRAMES_UP_TO: usize = 4096;

/// Reads `len` from a frame's 4-byte prefix.
fn prefix_len(prefix: &[u8]) -> usize {
    u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize
}

/// What the start of a receive buffer holds: see [`take_frame`].
pub(crate) enum Buffered {
    /// A whole frame, now split off the buffer.
    Frame(Frame),
    /// The first part of a frame whose prefix says it is `whole` bytes, prefix included.
    Partial { whole: usize },
    /// Not even a whole prefix.
    NoPrefix,
}

/// Splits the first frame off `buf` if it is all there; a prefix announcing more than `limit`
/// payload bytes is refused. The inverse of [`length_prefixed`].
pub(crate) fn take_frame(buf: &mut BytesMut, limit: usize) -> Result<Buffered, TransportError> {
    if buf.len() < FRAME_PREFIX {
        return Ok(Buffered::NoPrefix);
    }
    let size = prefix_len(buf);
    if size > limit {
        return Err(TransportError::FrameTooLarge { size, limit });
    }
    let whole = FRAME_PREFIX + size;
    if buf.len() < whole {
        return Ok(Buffered::Partial { whole });
    }
    Ok(Buffered::Frame(Frame::from_prefixed(buf.split_to(whole))))
}

/// `frame`'s buffer with its payload length written in the prefix, ready for a byte stream;
/// a frame over `limit` is refused.
pub(crate) fn length_prefixed(frame: Frame, limit: usize) -> Result<BytesMut, TransportError> {
    let size = frame.len();
    if size > limit || size > u32::MAX as usize {
        return Err(TransportError::FrameTooLarge { size, limit });
    }
    let mut buf = frame.into_prefixed();
    buf[..FRAME_PREFIX].copy_from_slice(&(size as u32).to_le_bytes());
    Ok(buf)
}

/// The sending half of a framed byte stream.
#[derive(Debug)]
pub(crate) struct StreamSender<W> {
    io: W,
    limit: usize,
    mechanism: &'static str,
    /// Bytes accepted by `send` but not yet written, and how many of them are written.
    out: BytesMut,
    written: usize,
}

impl<W: AsyncWrite + Unpin> StreamSender<W> {
    pub(crate) fn new(io: W, limit: usize, mechanism: &'static str) -> Self {
        StreamSender {
            io,
            limit,
            mechanism,
            out: BytesMut::new(),
            written: 0,
        }
    }

    /// Queues `frame` without writing it (see [`flush`](Self::flush)).
    pub(crate) fn feed(&mut self, frame: Frame) -> Result<(), TransportError> {
        let buf = length_prefixed(frame, self.limit)?;
        // A big frame alone goes out from its own buffer, uncopied; small ones are copied into
        // the buffer kept from the last write, which so stops being reallocated per batch.
        if self.out.is_empty() && (buf.len() > COPY_FRAMES_UP_TO || buf.len() > self.out.capacity())
        {
            self.out = buf;
            self.written = 0;
        } else {
            self.out.extend_from_slice(&buf);
        }
        Ok(())
    }

    /// Queues a message of `len` bytes that `fill` writes straight into the output buffer.
    pub(crate) fn feed_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<(), TransportError> {
        if len > self.limit || len > u32::MAX as usize {
            return Err(TransportError::FrameTooLarge {
                size: len,
                limit: self.limit,
            });
        }
        let start = self.out.len();
        self.out.reserve(FRAME_PREFIX + len);
        self.out.extend_from_slice(&(len as u32).to_le_bytes());
        self.out.resize(start + FRAME_PREFIX + len, 0);
        // A `fill` that panics (a `Serialize` of the caller's) leaves no half-written message
        // to go out with the next write: the buffer is cut back to where it was.
        let out = &mut self.out[start + FRAME_PREFIX..];
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fill(out))) {
            self.out.truncate(start);
            std::panic::resume_unwind(panic);
        }
        Ok(())
    }

    /// Queues `frame` and writes everything queued.
    pub(crate) async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        self.feed(frame)?;
        self.flush().await
    }

    /// Writes everything queued.
    pub(crate) async fn flush(&mut self) -> Result<(), TransportError> {
        while self.written < self.out.len() {
            let n = self.io.write(&self.out[self.written..]).await?;
            if n == 0 {
                return Err(TransportError::Closed);
            }
            self.written += n;
        }
        // A stream that buffers (TLS) sends its records now; a socket's flush does nothing.
        self.io.flush().await?;
        if self.out.capacity() > KEEP_OUTPUT_CAPACITY {
            self.out = BytesMut::new();
        } else {
            self.out.clear();
        }
        self.written = 0;
        Ok(())
    }

    /// Flushes and shuts the write side, so the peer reads end-of-stream.
    pub(crate) async fn close(&mut self) -> Result<(), TransportError> {
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }
}

/// A socket that can be read without waiting, for the busy-poll before a receive sleeps.
pub(crate) trait TryRead {
    /// Reads what is there now; `WouldBlock` if nothing is.
    fn try_read_now(&mut self, buf: &mut BytesMut) -> std::io::Result<usize>;

    /// Whether the peer has hung up, asked without reading (`false` where it cannot be told).
    fn hung_up(&self) -> bool {
        false
    }

    /// The descriptor whose readability means [`try_read_now`](Self::try_read_now) finds
    /// bytes, for a task that waits for them without holding this half ([`PollFrames`]);
    /// `None` where readability does not mean that (TLS: decrypted bytes may wait in a buffer
    /// with nothing left to read on the socket) or is not known.
    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}

impl TryRead for tokio::net::tcp::OwnedReadHalf {
    /// Asks the kernel, not tokio's cached readiness (see `recv_now.rs`).
    fn try_read_now(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        crate::recv_now::recv_now(self.as_ref().as_fd(), buf)
    }

    fn hung_up(&self) -> bool {
        crate::hangup::hung_up(self.as_ref())
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_ref().as_fd())
    }
}

impl TryRead for tokio::net::unix::OwnedReadHalf {
    /// Asks the kernel, not tokio's cached readiness (see `recv_now.rs`).
    fn try_read_now(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        crate::recv_now::recv_now(self.as_ref().as_fd(), buf)
    }

    fn hung_up(&self) -> bool {
        crate::hangup::hung_up(self.as_ref())
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_ref().as_fd())
    }
}

/// Whether the calling task runs on a worker of a multi-threaded runtime in a process allowed
/// one CPU. Then the runtime's other threads share that CPU with a busy-poll: above all the
/// thread of a `#[tokio::main]` body, just woken by the reply this task handed on, which the
/// kernel does not always run before the poller, and which then waits out the whole spin in
/// the run queue. So a poll that has found nothing for [`OFFER_CPU_AFTER`] offers the CPU
/// once (`sched_yield`, which returns at once when no other thread is runnable there).
fn shares_one_cpu() -> bool {
    crate::spin::process_cpus() == 1
        && tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// How long a busy-poll that [`shares_one_cpu`] looks before it offers the CPU. Client pinned
/// to one CPU, server to the other, a sequential async `add` over TCP alternated four times:
/// p50 29-73 µs without the offer, 27-29 µs with it after 10 µs. Offered at the first miss it
/// was as fast, but 32 calls in flight lost about a tenth (a `sched_yield` at every poll that
/// waits at all); after 10 µs they measured alike (213-267k against 243-261k calls/s); after
/// 20 µs the sequential median rose again (29-48 µs).
const OFFER_CPU_AFTER: Duration = Duration::from_micros(10);

/// A byte stream read only by waiting on it: no busy-poll, no hang-up check.
#[derive(Debug)]
pub(crate) struct WaitOnly<R>(pub(crate) R);

impl<R> TryRead for WaitOnly<R> {
    fn try_read_now(&mut self, _: &mut BytesMut) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for WaitOnly<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// The receiving half of a framed byte stream.
#[derive(Debug)]
pub(crate) struct StreamReceiver<R> {
    io: R,
    limit: usize,
    buf: BytesMut,
    /// How long to poll the socket (yielding in between) before sleeping on it.
    spin: Duration,
    /// Whether [`PollFrames::try_recv`] read the end of the stream.
    ended: bool,
}

impl<R: AsyncRead + TryRead + Unpin> StreamReceiver<R> {
    pub(crate) fn new(io: R, limit: usize, spin: Duration) -> Self {
        StreamReceiver {
            io,
            limit,
            buf: BytesMut::with_capacity(READ_CHUNK),
            spin,
            ended: false,
        }
    }

    /// Polls the socket for up to the spin budget, yielding to other tasks in between (through
    /// the run queue, see [`crate::spin::yield_to_others`]): when the
    /// peer answers within it, no one pays for a kernel wake-up (tens of microseconds on a
    /// virtual machine). `None` when nothing came.
    async fn busy_poll(&mut self) -> std::io::Result<Option<usize>> {
        if self.spin.is_zero() {
            return Ok(None);
        }
        let until = crate::deadline::after(self.spin);
        let mut offer_cpu_at = shares_one_cpu().then(|| crate::deadline::after(OFFER_CPU_AFTER));
        loop {
            match self.io.try_read_now(&mut self.buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            if offer_cpu_at.is_some_and(|at| now >= at) {
                offer_cpu_at = None;
                std::thread::yield_now();
            }
            crate::spin::yield_to_others().await;
        }
    }

    /// Whether a whole frame is already buffered (the next `recv` returns at once).
    pub(crate) fn has_buffered(&self) -> bool {
        self.buf.len() >= FRAME_PREFIX
            && self.buf.len()
                >= FRAME_PREFIX + prefix_len(&self.buf).min(self.limit.saturating_add(1))
    }

    /// The next frame, or `None` when the peer closed the stream between frames.
    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            let n = match self.busy_poll().await? {
                Some(n) => {
                    // Read past tokio: counted against the task's cooperative budget as a
                    // tokio read is, so a peer that keeps bytes coming (the socket never runs
                    // dry) cannot hold this worker from its other tasks. What was read stays
                    // buffered if this receive is dropped here. A spent budget yields through
                    // the run queue too (`consume_budget` would defer the task, see
                    // `yield_to_others`): a connection under steady traffic is not held
                    // behind a handler its worker goes on to compute.
                    if tokio::task::coop::has_budget_remaining() {
                        tokio::task::consume_budget().await;
                    } else {
                        crate::spin::yield_to_others().await;
                    }
                    n
                }
                None => self.io.read_buf(&mut self.buf).await?,
            };
            if n == 0 {
                return self.end_of_stream().map(|()| None);
            }
        }
    }

    /// The first buffered frame if it is whole; otherwise makes room in the buffer for more of
    /// it. Growth toward the whole frame is by at most what has arrived (doubling), so a
    /// frame's announced size is never allocated before its bytes come.
    fn buffered_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        match take_frame(&mut self.buf, self.limit)? {
            Buffered::Frame(frame) => return Ok(Some(frame)),
            Buffered::Partial { whole } => {
                let missing = whole - self.buf.len();
                self.buf
                    .reserve(missing.min(self.buf.len().max(READ_CHUNK)))
            }
            Buffered::NoPrefix if self.buf.capacity() - self.buf.len() < FRAME_PREFIX => {
                self.buf.reserve(READ_CHUNK)
            }
            Buffered::NoPrefix => {}
        }
        if self.buf.capacity() == self.buf.len() {
            self.buf.reserve(READ_CHUNK);
        }
        Ok(None)
    }

    /// One non-blocking read from the kernel into the buffer: `true` if bytes came; `false`
    /// if none were there, or the stream ended (then `ended` is set, and a frame cut short is
    /// the error).
    fn read_now(&mut self) -> Result<bool, TransportError> {
        match self.io.try_read_now(&mut self.buf) {
            Ok(0) => {
                self.ended = true;
                self.end_of_stream()?;
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The stream ended: fine between frames, malformed inside one.
    fn end_of_stream(&mut self) -> Result<(), TransportError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let pending = self.buf.remaining();
        self.buf.clear();
        Err(TransportError::Malformed(format!(
            "stream ended inside a frame ({pending} bytes of it received)"
        )))
    }
}

/// Looking at a socket without waiting: one non-blocking read per look, for a caller that
/// reads its own reply ([`PollFrames`]); sleepers wait for the socket to become readable.
impl<R: AsyncRead + TryRead + Unpin + Send + Sync + 'static> PollFrames for StreamReceiver<R> {
    fn try_recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(Some(frame));
            }
            if self.ended || !self.read_now()? {
                return Ok(None);
            }
        }
    }

    /// Only once the end of the stream was read: the kernel may still hold bytes sent before it.
    fn peer_gone(&self) -> bool {
        self.ended
    }

    /// Nothing to ask of the peer: the kernel makes the socket readable when bytes come. But
    /// bytes already in the kernel may have spent their readiness on a wake-up someone else
    /// took, so one look at the kernel first: anything there, or the end, is not slept on.
    fn announce_sleep(&mut self) -> Result<bool, TransportError> {
        if self.has_buffered() || self.ended {
            return Ok(false);
        }
        let read = self.read_now()?;
        Ok(!read && !self.ended)
    }

    fn end_sleep(&mut self) {}

    fn wakeup(&mut self) -> Result<Wakeup, TransportError> {
        let fd = self.io.readiness_fd().ok_or_else(|| {
            TransportError::Io(std::io::Error::other(
                "this stream has no readiness to wait on",
            ))
        })?;
        Ok(Wakeup::readable(fd)?)
    }

    fn spin_limit(&self) -> Duration {
        self.spin
    }
}

impl<R: AsyncRead + TryRead + Unpin> StreamReceiver<R> {
    /// Reads and discards everything until the peer closes (or an error).
    pub(crate) async fn drain(&mut self) {
        self.buf.clear();
        let mut scratch = vec![0u8; READ_CHUNK];
        while let Ok(n) = self.io.read(&mut scratch).await {
            if n == 0 {
                return;
            }
        }
    }
}

impl<W: AsyncWrite + Unpin + Send + Sync + 'static> SendFrames for StreamSender<W> {
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(StreamSender::send(self, frame))
    }

    fn send_all(&mut self, frames: Vec<Frame>) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            for frame in frames {
                self.feed(frame)?;
            }
            self.flush().await
        })
    }

    fn feed_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        StreamSender::feed_with(self, len, fill).map(|()| true)
    }

    fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    fn max_frame_size(&self) -> usize {
        self.limit
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(StreamSender::close(self))
    }
}

impl<R: AsyncRead + TryRead + Unpin + Send + Sync + 'static> ReceiveFrames for StreamReceiver<R> {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(StreamReceiver::recv(self))
    }

    fn set_max_frame_size(&mut self, limit: usize) {
        self.limit = limit;
    }

    fn peer_gone(&self) -> bool {
        self.io.hung_up()
    }

    fn has_buffered(&self) -> bool {
        StreamReceiver::has_buffered(self)
    }

    fn drain(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(StreamReceiver::drain(self))
    }

    /// Where the socket's readability can be waited on (TCP, Unix), callers may read their
    /// replies themselves.
    fn as_poll(&mut self) -> Option<&mut dyn PollFrames> {
        if self.io.readiness_fd().is_some() {
            Some(self)
        } else {
            None
        }
    }
}

/// A connection's two halves over a byte stream's two directions (`tokio::io::split` makes
/// them of one stream): each frame a little-endian `u32` length and the payload, at most
/// `config.max_frame_size` bytes either way. `mechanism` names the connection in logs.
/// The ready-made framing for a transport over TLS, a serial line, a vsock, ...
pub fn framed<R, W>(
    read: R,
    write: W,
    config: &TransportConfig,
    mechanism: &'static str,
) -> (FrameSender, FrameReceiver)
where
    R: AsyncRead + Unpin + Send + Sync + 'static,
    W: AsyncWrite + Unpin + Send + Sync + 'static,
{
    (
        FrameSender::new(StreamSender::new(write, config.max_frame_size, mechanism)),
        FrameReceiver::new(StreamReceiver::new(
            WaitOnly(read),
            config.max_frame_size,
            Duration::ZERO,
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_cross_a_stream_whole_and_in_order() {
        let (a, b) = tokio::io::duplex(1024);
        let mut sender = StreamSender::new(a, 1 << 20, "test");
        let mut receiver = StreamReceiver::new(WaitOnly(b), 1 << 20, Duration::ZERO);
        let writer = tokio::spawn(async move {
            for size in [0usize, 1, 100, 5000, 300_000] {
                let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
                sender.send(Frame::from_payload(&payload)).await.unwrap();
            }
        });
        for size in [0usize, 1, 100, 5000, 300_000] {
            let frame = receiver.recv().await.unwrap().unwrap();
            assert_eq!(frame.len(), size);
            assert!(
                frame
                    .payload()
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == i as u8)
            );
        }
        writer.await.unwrap();
        assert!(receiver.recv().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn messages_fed_in_place_go_out_with_frames_in_order() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut sender = StreamSender::new(a, 100, "test");
        let mut receiver = StreamReceiver::new(WaitOnly(b), 100, Duration::ZERO);
        sender
            .feed_with(3, &mut |out| out.copy_from_slice(b"one"))
            .unwrap();
        sender.feed(Frame::from_payload(b"two")).unwrap();
        sender.feed_with(0, &mut |_| {}).unwrap();
        let refused = sender.feed_with(101, &mut |_| panic!("not called for a refused message"));
        assert!(matches!(
            refused,
            Err(TransportError::FrameTooLarge {
                size: 101,
                limit: 100
            })
        ));
        sender
            .feed_with(5, &mut |out| out.copy_from_slice(b"three"))
            .unwrap();
        // Nothing is written until the next send.
        assert!(!receiver.has_buffered());
        SendFrames::send_all(&mut sender, Vec::new()).await.unwrap();
        for expected in [&b"one"[..], b"two", b"", b"three"] {
            let frame = receiver.recv().await.unwrap().unwrap();
            assert_eq!(frame.payload(), expected);
        }
    }

    #[tokio::test]
    async fn a_fill_that_panics_leaves_nothing_to_send() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut sender = StreamSender::new(a, 100, "test");
        let mut receiver = StreamReceiver::new(WaitOnly(b), 100, Duration::ZERO);
        sender
            .feed_with(3, &mut |out| out.copy_from_slice(b"one"))
            .unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = sender.feed_with(5, &mut |out| {
                out[..2].copy_from_slice(b"ha");
                panic!("a serializer that fails midway")
            });
        }));
        assert!(panicked.is_err());
        sender
            .feed_with(3, &mut |out| out.copy_from_slice(b"two"))
            .unwrap();
        SendFrames::send_all(&mut sender, Vec::new()).await.unwrap();
        for expected in [&b"one"[..], b"two"] {
            let frame = receiver.recv().await.unwrap().unwrap();
            assert_eq!(frame.payload(), expected);
        }
        drop(sender);
        assert!(receiver.recv().await.unwrap().is_none(), "nothing else");
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_on_both_sides() {
        let (a, b) = tokio::io::duplex(1024);
        let mut small_sender = StreamSender::new(a, 10, "test");
        let err = small_sender
            .send(Frame::from_payload(&[0; 11]))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            TransportError::FrameTooLarge {
                size: 11,
                limit: 10
            }
        ));
        let mut big_sender = StreamSender::new(small_sender.io, 100, "test");
        big_sender
            .send(Frame::from_payload(&[0; 50]))
            .await
            .unwrap();
        let mut receiver = StreamReceiver::new(WaitOnly(b), 10, Duration::ZERO);
        let err = receiver.recv().await.unwrap_err();
        assert!(matches!(
            err,
            TransportError::FrameTooLarge {
                size: 50,
                limit: 10
            }
        ));
    }

    /// A limit of `usize::MAX` ("no limit of ours") is a limit, not an overflow.
    #[tokio::test]
    async fn the_largest_limit_does_not_overflow() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[10, 0, 0, 0, 1, 2]).await.unwrap();
        let mut receiver = StreamReceiver::new(WaitOnly(b), usize::MAX, Duration::ZERO);
        // Reads the start of the frame, then waits for the rest: given up.
        let waited = tokio::time::timeout(Duration::from_millis(50), receiver.recv()).await;
        assert!(waited.is_err());
        assert!(!receiver.has_buffered());
        a.write_all(&[3, 4, 5, 6, 7, 8, 9, 10]).await.unwrap();
        let frame = receiver.recv().await.unwrap().unwrap();
        assert_eq!(frame.payload(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }

    /// A look sees bytes the moment they land, without waiting for the runtime's I/O driver
    /// to notice them (tokio's own `try_read` would say `WouldBlock` until then), and a
    /// waiter on the [`Wakeup`] is woken for bytes that come while it sleeps.
    #[tokio::test(flavor = "current_thread")]
    async fn a_socket_look_asks_the_kernel_and_the_wakeup_sees_new_bytes() {
        use std::io::Write;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let (read, _write) = tokio::net::UnixStream::from_std(theirs)
            .unwrap()
            .into_split();
        let mut receiver = StreamReceiver::new(read, 1 << 20, Duration::ZERO);
        let wakeup = PollFrames::wakeup(&mut receiver).unwrap();
        let mut ours = ours;
        assert!(PollFrames::try_recv(&mut receiver).unwrap().is_none());
        // No await between the write and the look: the driver has not run.
        ours.write_all(&[3, 0, 0, 0, 7, 8, 9]).unwrap();
        let frame = PollFrames::try_recv(&mut receiver)
            .unwrap()
            .expect("seen at once");
        assert_eq!(frame.payload(), [7, 8, 9]);
        assert!(PollFrames::announce_sleep(&mut receiver).unwrap());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            ours.write_all(&[1, 0, 0, 0, 5]).unwrap();
            ours
        });
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                wakeup.wait().await.unwrap();
                if let Some(frame) = PollFrames::try_recv(&mut receiver).unwrap() {
                    return frame;
                }
            }
        })
        .await
        .map(|frame| assert_eq!(frame.payload(), [5]))
        .expect("the wake-up came for the new bytes");
        drop(writer.join().unwrap());
        // The end of the stream: seen by a look, and the peer is then gone.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !PollFrames::peer_gone(&receiver) {
                wakeup.wait().await.unwrap();
                assert!(PollFrames::try_recv(&mut receiver).unwrap().is_none());
            }
        })
        .await
        .expect("the end of the stream was seen");
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_frame_is_malformed() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[10, 0, 0, 0, 1, 2]).await.unwrap();
        drop(a);
        let mut receiver = StreamReceiver::new(WaitOnly(b), 100, Duration::ZERO);
        assert!(matches!(
            receiver.recv().await,
            Err(TransportError::Malformed(_))
        ));
    }
}
