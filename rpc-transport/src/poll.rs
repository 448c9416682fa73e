//! Receiving without waiting: a task waiting for a reply reads it itself, with no wake-up
//! between the reply landing and its caller running. A look costs no system call on shared
//! memory and one non-blocking read on a socket (TCP, Unix), a pipe or a message queue. See
//! [`PollFrames`].

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::error::TransportError;
use crate::frame::Frame;

/// A receiving half that can be looked at without waiting, and whose sleeper can be woken by
/// whoever holds it. Reached through
/// [`FrameReceiver::as_poll`](crate::FrameReceiver::as_poll).
///
/// The protocol for several tasks sharing one receiver (one at a time, under a lock): a task
/// that wants to sleep calls [`announce_sleep`](Self::announce_sleep) (false: a frame is
/// already here, take it instead), lets go of the receiver and waits on its
/// [`Wakeup`]. A task that takes the receiver meanwhile calls
/// [`end_sleep`](Self::end_sleep), so the peer does not signal for frames it reads itself, and
/// before letting go announces the sleep again, or, if a frame came, wakes the sleeper by a
/// signal of its own process (not the peer's eventfd, which the peer shares and could make
/// block). No frame then waits unseen.
pub trait PollFrames: Send {
    /// The next frame if one is already here; `Ok(None)` when none is (a frame still arriving
    /// counts as none).
    fn try_recv(&mut self) -> Result<Option<Frame>, TransportError>;

    /// Whether the peer is gone: once [`try_recv`](Self::try_recv) then finds nothing, the
    /// connection has ended.
    fn peer_gone(&self) -> bool;

    /// Asks the peer to signal the [`Wakeup`] for its next frame; `Ok(false)` (nothing
    /// announced) when a frame is already here.
    fn announce_sleep(&mut self) -> Result<bool, TransportError>;

    /// Withdraws a sleep announcement: frames come without a signal.
    fn end_sleep(&mut self);

    /// What a sleeper waits on; usable without holding the receiver.
    fn wakeup(&mut self) -> Result<Wakeup, TransportError>;

    /// The most a task should look again and again before it sleeps on the [`Wakeup`]
    /// (`TransportConfig::shm_spin`, or `socket_spin` for a socket).
    fn spin_limit(&self) -> std::time::Duration;

    /// Whether a look costs no system call (shared memory), so a spinning task may take many
    /// between looks at the clock; `false` (the default) where each look is a read.
    fn cheap_look(&self) -> bool {
        false
    }
}

/// The signal a receiver's sleeper waits on: an eventfd the peer writes (shared memory), or a
/// descriptor becoming readable (a socket, a message queue). Clones share it.
#[derive(Clone)]
pub struct Wakeup {
    fd: Arc<AsyncFd<OwnedFd>>,
    /// An eventfd, whose counter a wake-up resets; else a socket, which is left to its reader.
    event: bool,
    /// A second descriptor whose readability wakes too, left to its reader as well: the
    /// socket that tells a message queue's peer is gone.
    watched: Option<Arc<AsyncFd<OwnedFd>>>,
}

impl std::fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Wakeup").finish_non_exhaustive()
    }
}

impl Wakeup {
    pub(crate) fn new(event: Arc<AsyncFd<OwnedFd>>) -> Wakeup {
        Wakeup {
            fd: event,
            event: true,
            watched: None,
        }
    }

    /// Waits for `socket` to become readable: through a descriptor of its own (a duplicate),
    /// registered with the runtime beside the one the receiver reads, so waiting needs no
    /// hold on the receiver.
    pub(crate) fn readable(socket: BorrowedFd<'_>) -> std::io::Result<Wakeup> {
        let fd = register_readable(socket.try_clone_to_owned()?)?;
        Ok(Wakeup {
            fd: Arc::new(fd),
            event: false,
            watched: None,
        })
    }

    /// Waits for `data` (a message queue) to become readable, or `watched` (the socket whose
    /// end or error says the peer is gone): through duplicates, as [`Wakeup::readable`].
    pub(crate) fn readable_or(
        data: BorrowedFd<'_>,
        watched: BorrowedFd<'_>,
    ) -> std::io::Result<Wakeup> {
        let watched = register_readable(watched.try_clone_to_owned()?)?;
        Ok(Wakeup {
            watched: Some(Arc::new(watched)),
            ..Wakeup::readable(data)?
        })
    }

    /// Waits until signalled, and resets the signal. A socket's readiness is reset before
    /// this returns: bytes that come after it signal again, and whoever wakes reads what
    /// came before.
    pub async fn wait(&self) -> Result<(), TransportError> {
        let Some(watched) = &self.watched else {
            return wait_on(&self.fd, self.event).await;
        };
        tokio::select! {
            woke = wait_on(&self.fd, self.event) => woke,
            woke = wait_on(watched, false) => woke,
        }
    }
}

/// Waits for `fd` to become readable and resets its readiness; an `event` fd's counter too.
async fn wait_on(fd: &AsyncFd<OwnedFd>, event: bool) -> Result<(), TransportError> {
    let mut ready = fd.readable().await?;
    if event {
        drain(ready.get_inner());
    }
    ready.clear_ready();
    Ok(())
}

/// Registers a descriptor (an eventfd, a socket) with the current tokio runtime, to await its
/// readability.
pub(crate) fn register_readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor that it alone closes, and its `as_raw_fd`
    // returns that same descriptor for as long as the `AsyncFd` owns it.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// Resets an eventfd's counter (non-blocking: nothing to read is fine).
fn drain(event: &OwnedFd) {
    let mut count = [0u8; 8];
    let _ = nix::unistd::read(event, &mut count);
}
