//! A server connection's receiver: takes the frames the routing task (`demux.rs`) hands it,
//! and grants its client credit for them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::demux::{Control, Item, Shared};
use super::link::{CREDIT_BYTES, CREDIT_FRAMES, Link, Taken};
use crate::error::TransportError;
use crate::frame::Frame;

#[derive(Debug)]
pub(crate) struct RoutedInbox {
    inbox: mpsc::Receiver<Item>,
    link: Arc<Link>,
    control: mpsc::UnboundedSender<Control>,
    token: u64,
    /// The frame limit and the bytes taken, shared with the routing task.
    shared: Arc<Shared>,
    /// Whether the client's death was reported to the routing task.
    reported: bool,
    /// Set once a frame over the limit was refused here: `Closed` from then on.
    failed: bool,
    /// What the connection has taken so far.
    taken: Taken,
    /// Units of credit written to the socket so far (frames, bytes): one per [`CREDIT_FRAMES`]
    /// frames and per [`CREDIT_BYTES`] bytes taken. What is owed beyond them (the socket's
    /// buffer was full) goes with the next frame taken; the client drains the socket whenever
    /// it waits for credit.
    granted: (u64, u64),
}

impl Drop for RoutedInbox {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Unregister(self.token));
    }
}

impl RoutedInbox {
    pub(crate) fn new(
        inbox: mpsc::Receiver<Item>,
        link: Arc<Link>,
        control: mpsc::UnboundedSender<Control>,
        token: u64,
        shared: Arc<Shared>,
    ) -> RoutedInbox {
        RoutedInbox {
            inbox,
            link,
            control,
            token,
            shared,
            reported: false,
            failed: false,
            taken: Taken::default(),
            granted: (0, 0),
        }
    }

    /// Sets the largest frame accepted from now on: the routing task refuses a bigger frame
    /// at its first message (or at the next one, for a frame already begun), and one that was
    /// whole before the limit fell is refused here.
    pub(crate) fn set_max_frame_size(&mut self, limit: usize) {
        self.shared.limit.store(limit, Ordering::SeqCst);
    }

    /// The most bytes of frames the routing task held for this connection.
    #[cfg(test)]
    pub(crate) fn most_held_for_tests(&self) -> u64 {
        self.shared.most_held.load(Ordering::SeqCst)
    }

    pub(crate) fn has_buffered(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Whether the client is gone (its rendezvous socket closed).
    pub(crate) fn peer_gone(&self) -> bool {
        self.link.is_dead() || self.link.hung_up()
    }

    /// Hands out what the routing task sent, granting the client credit for what it takes.
    fn deliver(&mut self, item: Option<Item>) -> Result<Option<Frame>, TransportError> {
        let frame = match item {
            Some(Ok(frame)) => frame,
            Some(Err(error)) => return Err(error),
            None => return Ok(None),
        };
        let limit = self.shared.limit.load(Ordering::SeqCst);
        if frame.len() > limit {
            self.failed = true;
            let _ = self.control.send(Control::Unregister(self.token));
            return Err(TransportError::FrameTooLarge {
                size: frame.len(),
                limit,
            });
        }
        self.taken.frames += 1;
        self.taken.bytes += frame.len() as u64;
        // Before any credit for them goes: the routing task must never count fewer bytes
        // taken than the client was told.
        self.shared
            .taken_bytes
            .store(self.taken.bytes, Ordering::SeqCst);
        let due = (
            self.taken.frames / CREDIT_FRAMES,
            self.taken.bytes / CREDIT_BYTES,
        );
        if due != self.granted {
            let (frames, bytes) = self
                .link
                .grant(due.0 - self.granted.0, due.1 - self.granted.1);
            self.granted.0 += frames;
            self.granted.1 += bytes;
        }
        Ok(Some(frame))
    }

    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        if self.failed {
            return Err(TransportError::Closed);
        }
        if !self.reported {
            tokio::select! {
                biased;
                item = self.inbox.recv() => return self.deliver(item),
                () = self.link.gone() => {
                    // The routing task ends the inbox once the client's last messages are in.
                    self.reported = true;
                    let _ = self.control.send(Control::Gone(self.token));
                }
            }
        }
        let item = self.inbox.recv().await;
        self.deliver(item)
    }
}
