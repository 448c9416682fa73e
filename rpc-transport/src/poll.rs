//! Receiving without waiting, for mechanisms where a look costs no system call (shared
//! memory): a task waiting for a reply reads it itself, with no wake-up between the reply
//! landing and its caller running. See [`PollFrames`].

use std::os::fd::OwnedFd;
use std::sync::Arc;

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
}

/// The signal a receiver's sleeper waits on (an eventfd the peer writes). Clones share it.
#[derive(Clone)]
pub struct Wakeup(Arc<AsyncFd<OwnedFd>>);

impl std::fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Wakeup").finish_non_exhaustive()
    }
}

impl Wakeup {
    pub(crate) fn new(event: Arc<AsyncFd<OwnedFd>>) -> Wakeup {
        Wakeup(event)
    }

    /// Waits until signalled, and resets the signal.
    pub async fn wait(&self) -> Result<(), TransportError> {
        let mut ready = self.0.readable().await?;
        drain(ready.get_inner());
        ready.clear_ready();
        Ok(())
    }
}

/// Resets an eventfd's counter (non-blocking: nothing to read is fine).
fn drain(event: &OwnedFd) {
    let mut count = [0u8; 8];
    let _ = nix::unistd::read(event, &mut count);
}
