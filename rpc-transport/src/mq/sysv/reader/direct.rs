//! A `sysv-mq` receiver looked at without waiting ([`PollFrames`]): an async caller reads its
//! own reply, with no wake-up between the reply landing and its caller running. A look is one
//! `msgrcv` with `IPC_NOWAIT`. A task that sleeps without the receiver waits on an eventfd
//! that the connection's waker thread writes when it finds a message (or the peer gone).

use std::sync::Arc;
use std::time::Duration;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::SysvReceiver;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::poll::{PollFrames, Wakeup, register_readable};

impl PollFrames for SysvReceiver {
    /// Messages are taken until a frame is whole; a frame whose later messages have not come
    /// yet stays in the reassembler, and counts as none. The end (a goodbye, or the peer gone
    /// with its queue drained) is found here too, and `peer_gone` says so from then on.
    fn try_recv(&mut self) -> Result<Option<Frame>, TransportError> {
        if self.ended.is_some() {
            return Ok(None);
        }
        match self.take() {
            Some(Ok(frame)) => Ok(frame),
            Some(Err(error)) => Err(error),
            None => Ok(None),
        }
    }

    /// Only once a look found the end: messages the peer sent before it went are read first.
    fn peer_gone(&self) -> bool {
        self.ended.is_some()
    }

    /// Arms the waker thread, which waits in the kernel for the next message (or is woken
    /// when the peer goes); a message already there is not slept on, nor a queue that cannot
    /// be asked (removed: the next look finds the end).
    fn announce_sleep(&mut self) -> Result<bool, TransportError> {
        if self.ended.is_some() || self.link.rx().waiting().map_or(true, |n| n > 0) {
            return Ok(false);
        }
        self.waker.lock().woken = false;
        self.waker.arm();
        Ok(true)
    }

    /// The waker thread may already wait in the kernel: it wakes the sleeper once more at
    /// the next message, which then finds nothing and sleeps again. (Withholding that signal
    /// while a caller holds the receiver measured no better: `rpc-bench --quick --pin none
    /// --only sysv-mq`, async median 12-302 µs in five runs with it, three of them in the slow
    /// mode above 80 µs; 12-330 µs in sixteen runs without, four of them slow.)
    fn end_sleep(&mut self) {}

    fn wakeup(&mut self) -> Result<Wakeup, TransportError> {
        if let Some(signal) = self.waker.signal.get() {
            return Ok(Wakeup::new(signal.clone()));
        }
        let event =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(std::io::Error::from)?;
        let signal = Arc::new(register_readable(event.into())?);
        let signal = self.waker.signal.get_or_init(|| signal).clone();
        Ok(Wakeup::new(signal))
    }

    fn spin_limit(&self) -> Duration {
        self.spin
    }
}
