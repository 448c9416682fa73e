//! One connection's rendezvous socket after the handshake: its liveness signal, and waiting on
//! a queue (busy-poll, then sleep) while watching it.
//!
//! Neither side writes to the socket after the handshake, so it becomes readable only when
//! the peer is gone (end of stream or an error), however the peer ended. Whoever waits on a
//! queue also waits on the socket; there is no watcher thread.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::MsgFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::queue::Queue;
use crate::deadline::Deadline;
use crate::error::TransportError;

/// One side's rendezvous socket, kept open for the connection's life.
#[derive(Debug)]
pub(crate) struct Link {
    socket: UnixStream,
    /// A duplicate of `socket` registered with the runtime, for async waits.
    watch: Option<AsyncFd<UnixStream>>,
    dead: AtomicBool,
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

    /// Reads the socket without waiting: end of stream or an error marks the peer gone;
    /// anything the peer wrote is discarded. `WouldBlock` if nothing is there.
    fn check(&self) -> io::Result<()> {
        let mut scrap = [0u8; 64];
        loop {
            match nix::sys::socket::recv(
                self.socket.as_raw_fd(),
                &mut scrap,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => break,
                Ok(_) => continue,
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
        let timeout = match give_up {
            None => PollTimeout::NONE,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(TransportError::TimedOut);
                }
                // Round up, so we never wake just before the deadline and spin.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128);
                PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
            }
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
