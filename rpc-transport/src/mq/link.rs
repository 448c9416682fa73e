//! One connection's rendezvous socket after the handshake: its liveness signal, its credit,
//! and waiting on a queue (busy-poll, then sleep) while watching it.
//!
//! After the handshake only the server writes to the socket, and only credit, one byte per
//! unit: [`FRAMES_TAKEN`] each time its connection has taken [`CREDIT_FRAMES`] more frames of
//! the client, [`BYTES_TAKEN`] each time it has taken [`CREDIT_BYTES`] more bytes of frames
//! (see [`CREDIT_WINDOW`] and [`BYTE_WINDOW`]). Every byte is a whole unit, so a read of any
//! length leaves nothing half understood. So the socket becomes readable with credit, or when
//! the peer is gone (end of stream or an error), however the peer ended. Whoever waits on a
//! queue also waits on the socket, counting the credit it finds; there is no watcher thread.

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
use tokio::sync::Notify;

use super::queue::Queue;
use crate::deadline::Deadline;
use crate::error::TransportError;

/// Frames a client may have sent beyond those its server connection has taken. The server's
/// routing task never waits for a connection to take its frames (a client that stops reading
/// its replies would otherwise hold up every client of the server): it only ever holds this
/// many of a well-behaved client, and fails a client that sends more.
pub(crate) const CREDIT_WINDOW: u64 = 1024;
/// Frames taken per [`FRAMES_TAKEN`] byte the server writes on the socket.
pub(crate) const CREDIT_FRAMES: u64 = 64;
/// Bytes (of frame payloads) a client may have sent beyond those its server connection has
/// taken before it starts another frame: a client starts a frame only while less than this
/// is outstanding, so the routing task holds less than `BYTE_WINDOW` plus one frame (at most
/// the connection's frame limit) of a well-behaved client, and fails a client that sends more.
/// A frame of any allowed size still goes once the server has taken what came before.
pub(crate) const BYTE_WINDOW: u64 = 1 << 20;
/// Bytes taken per [`BYTES_TAKEN`] byte the server writes on the socket.
pub(crate) const CREDIT_BYTES: u64 = 64 << 10;
/// The credit byte for [`CREDIT_FRAMES`] frames taken.
pub(crate) const FRAMES_TAKEN: u8 = b'f';
/// The credit byte for [`CREDIT_BYTES`] bytes taken.
pub(crate) const BYTES_TAKEN: u8 = b'b';

/// How often a blocking sender waiting for credit looks whether another thread read it.
const CREDIT_POLL: Duration = Duration::from_millis(5);

/// How much of a client's sending its server connection has taken (as far as its credit has
/// told the client), or how much the client has sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Taken {
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
}

impl Taken {
    /// Whether a client that has sent `self` must wait for more credit than `taken` before it
    /// starts another frame.
    pub(crate) fn beyond_credit(self, taken: Taken) -> bool {
        self.frames >= taken.frames + CREDIT_WINDOW || self.bytes >= taken.bytes + BYTE_WINDOW
    }
}

/// One side's rendezvous socket, kept open for the connection's life.
#[derive(Debug)]
pub(crate) struct Link {
    socket: UnixStream,
    /// A duplicate of `socket` registered with the runtime, for async waits.
    watch: Option<AsyncFd<UnixStream>>,
    dead: AtomicBool,
    /// Wakes every async waiter when credit arrives or the peer is found gone: whoever reads
    /// the socket takes its readiness, so another task waiting on it would not wake.
    changed: Notify,
    /// On a client: frames and bytes the server has taken so far (credit read from the
    /// socket).
    taken_frames: AtomicU64,
    taken_bytes: AtomicU64,
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
            changed: Notify::new(),
            taken_frames: AtomicU64::new(0),
            taken_bytes: AtomicU64::new(0),
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
        self.changed.notify_waiters();
    }

    /// On a server: writes `frames` units of frame credit and `bytes` units of byte credit
    /// to the client without waiting; returns how many of each the socket took (fewer only if
    /// its buffer is full, or the client is gone).
    pub(crate) fn grant(&self, frames: u64, bytes: u64) -> (u64, u64) {
        let mut sent = (0, 0);
        let mut credit = [0u8; 256];
        while sent != (frames, bytes) {
            let f = (frames - sent.0).min(credit.len() as u64) as usize;
            let b = (bytes - sent.1).min((credit.len() - f) as u64) as usize;
            credit[..f].fill(FRAMES_TAKEN);
            credit[f..f + b].fill(BYTES_TAKEN);
            match nix::sys::socket::send(
                self.socket.as_raw_fd(),
                &credit[..f + b],
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => {
                    // The frame units went first.
                    sent.0 += n.min(f) as u64;
                    sent.1 += n.saturating_sub(f) as u64;
                    if n < f + b {
                        break;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        sent
    }

    /// What the peer has taken so far, as far as its credit has told us.
    pub(crate) fn taken(&self) -> Taken {
        Taken {
            frames: self.taken_frames.load(Ordering::SeqCst),
            bytes: self.taken_bytes.load(Ordering::SeqCst),
        }
    }

    /// Reads the socket without waiting, counting the credit in it; end of stream, an error
    /// or a byte that is no credit marks the peer gone. `WouldBlock` once nothing more is
    /// there.
    fn check(&self) -> io::Result<()> {
        let mut credit = [0u8; 256];
        loop {
            match nix::sys::socket::recv(
                self.socket.as_raw_fd(),
                &mut credit,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => break,
                Ok(n) => {
                    let frames = credit[..n].iter().filter(|&&b| b == FRAMES_TAKEN).count();
                    let bytes = credit[..n].iter().filter(|&&b| b == BYTES_TAKEN).count();
                    self.taken_frames
                        .fetch_add(frames as u64 * CREDIT_FRAMES, Ordering::SeqCst);
                    self.taken_bytes
                        .fetch_add(bytes as u64 * CREDIT_BYTES, Ordering::SeqCst);
                    if frames + bytes > 0 {
                        self.changed.notify_waiters();
                    }
                    if frames + bytes < n {
                        tracing::debug!("the mq server wrote something other than credit");
                        break;
                    }
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
        self.wait_until(|_| false).await
    }

    /// Waits until the peer has taken more than `seen`, or is gone (never returns for a link
    /// made without a runtime: use [`Link::more_taken_blocking`]).
    pub(crate) async fn more_taken(&self, seen: Taken) {
        self.wait_until(|link| link.taken() != seen).await
    }

    /// Waits until `done` or the peer is gone, reading the socket as it becomes readable (or
    /// woken by another task that read it).
    async fn wait_until(&self, done: impl Fn(&Link) -> bool) {
        let Some(watch) = &self.watch else {
            return std::future::pending().await;
        };
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_dead() || done(self) {
                return;
            }
            tokio::select! {
                ready = watch.readable() => match ready {
                    Ok(mut guard) => {
                        let _ = guard.try_io(|_| self.check());
                    }
                    Err(_) => self.mark_dead(),
                },
                () = &mut changed => {}
            }
        }
    }
}

impl Link {
    /// The blocking form of [`Link::more_taken`], until `deadline`: `TimedOut` then, `Closed`
    /// if the peer is gone.
    pub(crate) fn more_taken_blocking(
        &self,
        seen: Taken,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let give_up = deadline.resolve();
        loop {
            let _ = self.check();
            if self.is_dead() {
                return Err(TransportError::Closed);
            }
            if self.taken() != seen {
                return Ok(());
            }
            // In slices: another thread (the receiver's) may read the credit meanwhile.
            let slice = Instant::now() + CREDIT_POLL;
            let timeout = match poll_timeout(Some(give_up.map_or(slice, |at| at.min(slice)))) {
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
            return last_look(|| op(queue.get_ref()))
                .map_err(Stopped::Failed)?
                .ok_or(Stopped::Gone);
        }
        if !spin.is_zero() {
            let until = *spin_until.get_or_insert_with(|| crate::deadline::after(spin));
            if Instant::now() < until {
                crate::spin::yield_to_others().await;
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

/// One more look once the peer is known gone: what it sent before it went (a last reply, its
/// end) is in the queue by then, though the look before may have come just before it. `None`
/// when the queue is empty.
fn last_look<T>(op: impl FnOnce() -> io::Result<T>) -> io::Result<Option<T>> {
    match op() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
        Ok(value) => Ok(Some(value)),
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
            return last_look(|| op(queue))?.ok_or(TransportError::Closed);
        }
        if !spin.is_zero() {
            let until = *spin_until.get_or_insert_with(|| crate::deadline::after(spin));
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
