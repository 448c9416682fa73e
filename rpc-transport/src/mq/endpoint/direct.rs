//! A client's reply queue looked at without waiting ([`PollFrames`]): an async caller reads its
//! own reply, with no runtime wake-up between the reply landing and its caller running. A
//! look is one non-blocking `mq_timedreceive`.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::QueueInbox;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::poll::{PollFrames, Wakeup};

/// How often [`PollFrames::peer_gone`] reads the connection's socket rather than trusting
/// what the last read found (see there).
const LOOK_AT_SOCKET_EVERY: u32 = 8;

impl QueueInbox {
    /// Whether the peer is gone (the socket read first if `read_socket`) and its queue empty.
    fn gone_and_drained(&self, read_socket: bool) -> bool {
        let gone = if read_socket {
            self.link.peer_gone_now()
        } else {
            self.link.is_dead()
        };
        gone && self.queue.waiting().is_ok_and(|n| n == 0)
    }
}

impl PollFrames for QueueInbox {
    /// Messages are taken until a frame is whole; a frame whose later messages have not come
    /// yet stays in the reassembler, and counts as none, unless the peer is gone: then it is
    /// the error (the peer vanished in the middle of it).
    fn try_recv(&mut self) -> Result<Option<Frame>, TransportError> {
        while self.ended.is_none() {
            match self.queue.try_receive(&mut self.buf) {
                Ok(n) => {
                    if let Some(result) = self.take(n) {
                        return result;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.reassembler.in_progress() && self.gone_and_drained(true) {
                        return self.vanished();
                    }
                    return Ok(None);
                }
                Err(e) => return self.end(Err(TransportError::Io(e))),
            }
        }
        Ok(None)
    }

    /// The peer said goodbye, or its socket says it is gone and its queue holds nothing more
    /// (what it sent before it went is in the queue by then). The socket is read (for its end,
    /// and any credit) at every [`LOOK_AT_SOCKET_EVERY`]th call only, as a spinning caller
    /// asks at each look; otherwise what the last read found stands (`announce_sleep` reads
    /// it, so the reader task knows before it sleeps).
    fn peer_gone(&self) -> bool {
        let calls = self.gone_asked.fetch_add(1, Ordering::Relaxed);
        self.ended.is_some() || self.gone_and_drained(calls.is_multiple_of(LOOK_AT_SOCKET_EVERY))
    }

    /// Nothing to ask of the peer: the kernel makes the queue readable when a message comes.
    /// But a message already there may have spent its readiness on a wake-up someone else
    /// took, so the queue is asked first: anything there is not slept on. The socket is read
    /// too, so [`peer_gone`](PollFrames::peer_gone) after this knows whether the peer is gone;
    /// gone in the middle of a frame, that frame cut short is the error.
    fn announce_sleep(&mut self) -> Result<bool, TransportError> {
        if self.ended.is_some() {
            return Ok(false);
        }
        if self.link.peer_gone_now()
            && self.reassembler.in_progress()
            && self.gone_and_drained(false)
        {
            return self.vanished().map(|_| false);
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
