//! One connection's rendezvous socket after the handshake: its liveness signal, and waiting on
//! a queue (busy-poll, then sleep) while watching it.
//!
//! After the handshake only the server writes to the socket, and only credit: one byte each
//! time its connection has taken [`CREDIT_FRAMES`] more frames of the client (see
//! [`CREDIT_WINDOW`]). So the socket becomes readable with credit, or when the peer is gone
//! (end of stream or an error), however the peer ended. Whoever waits on a queue also waits on
//! the socket, counting the credit it finds; there is no watcher thread.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::MsgFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::queue::Queue;
use crate::deadline::Deadline;
use crate::error::TransportError;

/// Frames a client may have sent beyond those its server connection has taken. The server's
/// routing task never waits for a connection to take its frames (a client that stops reading
/// its replies would otherwise hold up every client of the server): it only ever holds this
/// many of a well-behaved client, and fails a client that sends more.
pub(crate) const CREDIT_WINDOW: u64 = 1024;
/// Frames taken per byte of credit the server writes on the socket.
pub(crate) const CREDIT_FRAMES: u64 = 64;

/// One side's rendezvous socket, kept open for the connection's life.
#[derive(Debug)]
pub(crate) struct Link {
    socket: UnixStream,
    /// A duplicate of `socket` registered with the runtime, for async waits.
    watch: Option<AsyncFd<UnixStream>>,
    dead: AtomicBool,
    /// On a client: frames the server has taken so far (credit read from the socket).
    taken: AtomicU64,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

impl Link {
    /// Wraps a connected, nonblocking socket; `asynchronous` registers it with the current
    /// tokio runtime.
    pub(crate) fn new(socket: UnixStream, asynchronous: bool) -> io::Result<Arc<Link>> {
        let watch = if asynchronous {
            Some(super::fd::register(
                socket.try_clone()?,
                Interest::READABLE,
            )?)
        } else {
            None
        };
        Ok(Arc::new(Link {
            socket,
            watch,
            dead: AtomicBool::new(false),
            taken: AtomicU64::new(0),
        }))
    }

    /// The socket, to finish the handshake on.
    pub(crate) fn socket(&self) -> &UnixStream {
        &self.socket
    }

    /// Shuts the socket, as this process's death would.
    #[cfg(test)]
    pub(crate) fn shutdown_for_tests(&self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    /// Whether the peer is known to be gone.
    /// Whether the peer closed its end of the socket (asked without reading).
    pub(crate) fn hung_up(&self) -> bool {
        crate::hangup::hung_up(&self.socket)
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Looks at the socket now (without waiting): whether the peer is gone.
    pub(crate) fn peer_gone_now(&self) -> bool {
        let _ = self.check();
        self.is_dead()
    }

    fn mark_dead(&self) {
        self.dead.store(true, Ordering::SeqCst);
    }

    /// On a server: writes `bytes` bytes of credit to the client without waiting; returns how
    /// many the socket took (fewer only if its buffer is full, or the client is gone).
    pub(crate) fn grant(&self, bytes: usize) -> usize {
        let credit = [0u8; 64];
        let mut sent = 0;
        while sent < bytes {
            let n = (bytes - sent).min(credit.len());
            match nix::sys::socket::send(
                self.socket.as_raw_fd(),
                &credit[..n],
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => sent += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        sent
    }

    /// Frames the peer has taken so far, as far as its credit has told us.
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load(Ordering::SeqCst)
    }

    /// Reads the socket without waiting: each byte is credit for [`CREDIT_FRAMES`] frames; end
    /// of stream or an error marks the peer gone. `WouldBlock` once nothing more is there.
    fn check(&self) -> io::Result<()> {
        let mut scrap = [0u8; 64];
        loop {
            match nix::sys::socket::recv(
                self.socket.as_raw_fd(),
                &mut scrap,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => break,
                Ok(n) => {
                    self.taken
                        .fetch_add(n as u64 * CREDIT_FRAMES, Ordering::SeqCst);
                    continue;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Err(_) => break,
            }
        }
        self.mark_dead();
        Ok(())
    }

    /// Resolves once the peer is gone (never, for a link made without a runtime).
    pub(crate) async fn gone(&self) {
        let Some(watch) = &self.watch else {
            return std::future::pending().await;
        };
        while !self.is_dead() {
            match watch.readable().await {
                Ok(mut guard) => {
                    let _ = guard.try_io(|_| self.check());
                }
                Err(_) => self.mark_dead(),
            }
        }
    }
}

impl Link {
    /// Waits until the peer has taken more than `taken` frames, or is gone (never returns for
    /// a link made without a runtime: use [`Link::more_taken_blocking`]).
    pub(crate) async fn more_taken(&self, taken: u64) {
        let Some(watch) = &self.watch else {
            return std::future::pending().await;
        };
        while !self.is_dead() && self.taken() <= taken {
            match watch.readable().await {
                Ok(mut guard) => {
                    let _ = guard.try_io(|_| self.check());
                }
                Err(_) => self.mark_dead(),
            }
        }
    }

    /// The blocking form of [`Link::more_taken`], until `deadline`: `TimedOut` then, `Closed`
    /// if the peer is gone.
    pub(crate) fn more_taken_blocking(
        &self,
        taken: u64,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let give_up = deadline.resolve();
        loop {
            let _ = self.check();
            if self.is_dead() {
                return Err(TransportError::Closed);
            }
            if self.taken() > taken {
                return Ok(());
            }
            let timeout = match poll_timeout(give_up) {
                Some(timeout) => timeout,
                None => return Err(TransportError::TimedOut),
            };
            let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(TransportError::Io(e.into())),
            }
        }
    }
}

/// The `poll(2)` timeout left until `give_up`; `None` once it passed.
fn poll_timeout(give_up: Option<Instant>) -> Option<PollTimeout> {
    match give_up {
        None => Some(PollTimeout::NONE),
        Some(at) => {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            // Round up, so we never wake just before the deadline and spin.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128);
            Some(PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX))
        }
    }
}

/// How a wait on a queue ended without the operation succeeding.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// The peer is gone (and the operation still would block).
    Gone,
    /// An error of the queue.
    Failed(io::Error),
}

/// Runs `op` on `queue` until it stops returning `WouldBlock`: first busy-polling for `spin`
/// (yielding to other tasks in between), then sleeping until the queue is ready for
/// `interest` or the peer is gone. Cancellation safe if `op` is.
pub(crate) async fn retry_async<T>(
    queue: &AsyncFd<Arc<Queue>>,
    interest: Interest,
    link: &Link,
    spin: Duration,
    mut op: impl FnMut(&Queue) -> io::Result<T>,
) -> Result<T, Stopped> {
    let mut spin_until = None;
    loop {
        match op(queue.get_ref()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Stopped::Failed(e)),
            Ok(value) => return Ok(value),
        }
        if link.is_dead() {
            return Err(Stopped::Gone);
        }
        if !spin.is_zero() {
            let until = *spin_until.get_or_insert_with(|| Instant::now() + spin);
            if Instant::now() < until {
                tokio::task::yield_now().await;
                continue;
            }
        }
        tokio::select! {
            ready = queue.ready(interest) => {
                let mut guard = ready.map_err(Stopped::Failed)?;
                match op(queue.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => guard.clear_ready(),
                    Err(e) => return Err(Stopped::Failed(e)),
                    Ok(value) => return Ok(value),
                }
            }
            () = link.gone() => {}
        }
    }
}

/// The blocking form of [`retry_async`]: busy-polls for `spin`, then `poll(2)`s the queue (for
/// `events`) and the socket until `deadline`.
pub(crate) fn retry_blocking<T>(
    queue: &Queue,
    events: PollFlags,
    link: &Link,
    spin: Duration,
    deadline: Deadline,
    mut op: impl FnMut(&Queue) -> io::Result<T>,
) -> Result<T, TransportError> {
    let mut spin_until = None;
    let mut give_up = None;
    loop {
        match op(queue) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(TransportError::Io(e)),
            Ok(value) => return Ok(value),
        }
        if link.is_dead() {
            return Err(TransportError::Closed);
        }
        if !spin.is_zero() {
            let until = *spin_until.get_or_insert_with(|| Instant::now() + spin);
            if Instant::now() < until {
                std::hint::spin_loop();
                continue;
            }
        }
        let give_up = *give_up.get_or_insert_with(|| deadline.resolve());
        let Some(timeout) = poll_timeout(give_up) else {
            return Err(TransportError::TimedOut);
        };
        let mut fds = [
            PollFd::new(queue.as_fd(), events),
            PollFd::new(link.socket.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(TransportError::Io(e.into())),
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            let _ = link.check();
        }
    }
}
