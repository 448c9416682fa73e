//! Anonymous pipes: `spawn:PROGRAM ARGS` (`spawn.rs`) starts the server as a child with
//! pipes on its stdin and stdout; `stdio` (`stdio.rs`) is that child's side, one connection on
//! its own stdin/stdout.
//!
//! Both directions are length-prefixed byte streams (`stream.rs`), as on a socket. The halves
//! here ([`PipeRead`], [`PipeWrite`], [`SyncPipe`]) also carry FIFOs (`fifo.rs`).
//!
//! Writing to a pipe whose reader is gone raises SIGPIPE; Rust programs ignore it from the
//! start (and get `EPIPE`), which this module relies on. A host that restores the default
//! disposition would be killed by a peer's death instead.

mod spawn;
mod stdio;

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

use crate::TransportConfig;
use crate::blocking::{BlockingConnection, TimedStream, blocking_stream_connection};
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;
use crate::stream::{StreamReceiver, StreamSender, TryRead};

pub use spawn::{REAP_GRACE, spawn, spawn_blocking};

/// Something owned jointly by both halves of a pipe connection, dropped with the last one.
pub(crate) type Shared = Arc<dyn std::any::Any + Send + Sync>;

/// Whatever must live as long as either half of a pipe connection: a spawned child's reaper,
/// a FIFO client's file names.
pub(crate) type Keepalive = Option<Shared>;
use spawn::ChildReaper;
pub(crate) use spawn::Spawn;
pub(crate) use stdio::Stdio;

/// The reading end of a pipe or FIFO, for the async stream framing.
pub(crate) struct PipeRead {
    io: pipe::Receiver,
    keep: Keepalive,
}

/// The writing end of a pipe or FIFO, for the async stream framing. Shutting it down closes the
/// descriptor, which is how a pipe says end-of-file.
pub(crate) struct PipeWrite {
    io: Option<pipe::Sender>,
    _keep: Keepalive,
}

impl AsFd for PipeRead {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl std::fmt::Debug for PipeRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PipeRead({})", self.io.as_raw_fd())
    }
}

impl std::fmt::Debug for PipeWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.io {
            Some(io) => write!(f, "PipeWrite({})", io.as_raw_fd()),
            None => f.write_str("PipeWrite(closed)"),
        }
    }
}

impl PipeRead {
    /// Wraps a pipe's or FIFO's reading end (made non-blocking). Needs a runtime.
    pub(crate) fn new(fd: OwnedFd, keep: Keepalive) -> io::Result<PipeRead> {
        Ok(PipeRead {
            io: pipe::Receiver::from_owned_fd(fd)?,
            keep,
        })
    }
}

impl PipeWrite {
    /// Wraps a pipe's or FIFO's writing end (made non-blocking). Needs a runtime.
    pub(crate) fn new(fd: OwnedFd, keep: Keepalive) -> io::Result<PipeWrite> {
        Ok(PipeWrite {
            io: Some(pipe::Sender::from_owned_fd(fd)?),
            _keep: keep,
        })
    }
}

/// End-of-file from the peer's side of a pipe: a spawned child is reaped from now on.
fn peer_closed(keep: &Keepalive) {
    if let Some(reaper) = keep.as_ref().and_then(|k| k.downcast_ref::<ChildReaper>()) {
        reaper.start();
    }
}

impl AsyncRead for PipeRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if wanted && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            peer_closed(&self.keep);
        }
        polled
    }
}

impl TryRead for PipeRead {
    /// Asks the kernel, not tokio's cached readiness (see `recv_now.rs`).
    fn try_read_now(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let read = crate::recv_now::read_now(self.io.as_fd(), buf);
        if matches!(read, Ok(0)) {
            peer_closed(&self.keep);
        }
        read
    }

    fn hung_up(&self) -> bool {
        crate::hangup::hung_up(self)
    }

    /// The read end: a caller may read its reply from the pipe itself.
    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.io.as_fd())
    }
}

fn closed_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the pipe was closed")
}

impl AsyncWrite for PipeWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(closed_pipe())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io = None;
        Poll::Ready(Ok(()))
    }
}

/// A non-blocking pipe or FIFO end used by the blocking stream framing: each read or write
/// first waits for readiness with `poll(2)`, bounded by the timeout set for it.
pub(crate) struct SyncPipe {
    fd: Option<OwnedFd>,
    /// The (read, write) waits' bounds; `None` waits without one.
    pub(crate) timeouts: Cell<(Option<Duration>, Option<Duration>)>,
    keep: Keepalive,
}

impl SyncPipe {
    /// Wraps a pipe's or FIFO's end, making it non-blocking.
    pub(crate) fn new(fd: OwnedFd, keep: Keepalive) -> io::Result<SyncPipe> {
        set_nonblocking(&fd)?;
        Ok(SyncPipe {
            fd: Some(fd),
            timeouts: Cell::new((None, None)),
            keep,
        })
    }

    /// Closes the descriptor: the reader at the other end sees end-of-file.
    pub(crate) fn close(&mut self) {
        self.fd = None;
    }

    fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd).ok_or_else(closed_pipe)
    }

    /// Waits until the descriptor is ready for `flags`, at most `timeout`.
    fn wait(&self, flags: PollFlags, timeout: Option<Duration>) -> io::Result<()> {
        let fd = self.fd()?;
        let timeout = match timeout {
            None => PollTimeout::NONE,
            // Round up so a short wait does not become a busy zero-timeout poll.
            Some(t) => PollTimeout::try_from(t.as_millis().max(1).min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(fd, flags)];
        match poll(&mut fds, timeout) {
            Ok(0) => Err(io::ErrorKind::TimedOut.into()),
            Ok(_) => Ok(()),
            Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads what is there now; `WouldBlock` if nothing is.
    pub(crate) fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        let read = nix::unistd::read(self.fd()?, buf).map_err(io::Error::from);
        if matches!(read, Ok(0)) && !buf.is_empty() {
            peer_closed(&self.keep);
        }
        read
    }
}

impl Read for SyncPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.read_now(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // POLLHUP (the writer is gone) also ends the wait; the read then says 0.
                    self.wait(PollFlags::POLLIN, self.timeouts.get().0)?
                }
                other => return other,
            }
        }
    }
}

impl Write for SyncPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::write(self.fd()?, buf) {
                Err(nix::errno::Errno::EAGAIN) => {
                    self.wait(PollFlags::POLLOUT, self.timeouts.get().1)?
                }
                other => return other.map_err(io::Error::from),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for SyncPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd
            .as_ref()
            .expect("a closed SyncPipe is not polled")
            .as_fd()
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

impl TimedStream for SyncPipe {
    fn set_receive_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set((timeout, self.timeouts.get().1));
        Ok(())
    }

    fn set_send_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set((self.timeouts.get().0, timeout));
        Ok(())
    }

    fn shutdown_write(&mut self) {
        self.close();
    }

    fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        SyncPipe::read_now(self, buf)
    }
}

/// An async connection over two pipe ends (`write` to the peer, `read` from it) that keep
/// `keep` alive as long as either lives.
pub(crate) fn async_connection(
    write: OwnedFd,
    read: OwnedFd,
    keep: Keepalive,
    config: &TransportConfig,
    peer: PeerInfo,
) -> Result<Connection, TransportError> {
    Ok(Connection::new(
        FrameSender::new(StreamSender::new(
            PipeWrite::new(write, keep.clone())?,
            config.max_frame_size,
            "pipe",
        )),
        FrameReceiver::new(StreamReceiver::new(
            PipeRead::new(read, keep)?,
            config.max_frame_size,
            config.socket_spin,
        )),
        peer,
    ))
}

/// A blocking connection over two pipe ends; see [`async_connection`].
pub(crate) fn blocking_connection(
    write: OwnedFd,
    read: OwnedFd,
    keep: Keepalive,
    config: &TransportConfig,
    peer: PeerInfo,
) -> Result<BlockingConnection, TransportError> {
    Ok(blocking_stream_connection(
        SyncPipe::new(write, keep.clone())?,
        SyncPipe::new(read, keep)?,
        config,
        peer,
        "pipe",
    ))
}
