//! A client's reply queue looked at without waiting ([`PollFrames`]): an async caller reads its
//! own reply, with no runtime wake-up between the reply landing and its caller running. A
//! look is one non-blocking `mq_timedreceive`.

use std::os::fd::AsFd;
use std::time::Duration;

use super::QueueInbox;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::poll::{PollFrames, Wakeup};

impl PollFrames for QueueInbox {
    /// Messages are taken until a frame is whole; a frame whose later messages have not come
    /// yet stays in the reassembler, and counts as none.
    fn try_recv(&mut self) -> Result<Option<Frame>, TransportError> {
        while self.ended.is_none() {
            match self.queue.try_receive(&mut self.buf) {
                Ok(n) => {
                    if let Some(result) = self.take(n) {
                        return result;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return self.end(Err(TransportError::Io(e))),
            }
        }
        Ok(None)
    }

    /// The peer said goodbye, or its socket says it is gone and its queue holds nothing more
    /// (what it sent before it went is in the queue by then).
    fn peer_gone(&self) -> bool {
        self.ended.is_some()
            || (self.link.peer_gone_now() && self.queue.waiting().is_ok_and(|n| n == 0))
    }

    /// Nothing to ask of the peer: the kernel makes the queue readable when a message comes.
    /// But a message already there may have spent its readiness on a wake-up someone else
    /// took, so the queue is asked first: anything there is not slept on.
    fn announce_sleep(&mut self) -> Result<bool, TransportError> {
        if self.ended.is_some() {
            return Ok(false);
        }
        Ok(self.queue.waiting()? == 0)
    }

    fn end_sleep(&mut self) {}

    /// The queue becoming readable, or the connection's socket (its end says the peer is
    /// gone; credit wakes it too, harmlessly).
    fn wakeup(&mut self) -> Result<Wakeup, TransportError> {
        Ok(Wakeup::readable_or(
            self.queue.as_fd(),
            self.link.socket().as_fd(),
        )?)
    }

    fn spin_limit(&self) -> Duration {
        self.spin
    }
}
