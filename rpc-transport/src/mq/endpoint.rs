//! [`MqSender`] and [`MqReceiver`]: the halves of a message-queue connection, async and
//! blocking.
//!
//! A sender writes the messages of each frame to the peer's queue. A receiver either reads its
//! own reply queue (client side) or takes the frames the server's routing task hands it (server
//! side, async only).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::link::{Link, Stopped, Taken, retry_async, retry_blocking};
use super::queue::Queue;
use super::routed::RoutedInbox;
use super::wire::{self, Event, Outgoing, Reassembler};
use crate::TransportConfig;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::poll::PollFrames;

mod direct;

/// How long a closing sender keeps trying to finish its last frame and say goodbye when the
/// peer's queue is full.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How often the closing thread looks whether it is still needed (see [`MqSender::close`]).
const CLOSE_CHECK: Duration = Duration::from_millis(10);

fn stopped_error(stopped: Stopped) -> TransportError {
    match stopped {
        Stopped::Gone => TransportError::Closed,
        Stopped::Failed(e) => TransportError::Io(e),
    }
}

/// `queue` registered with the runtime for `interest`, registering it on first use.
fn registered<'a>(
    slot: &'a mut Option<AsyncFd<Arc<Queue>>>,
    queue: &Arc<Queue>,
    interest: Interest,
) -> Result<&'a AsyncFd<Arc<Queue>>, TransportError> {
    if slot.is_none() {
        *slot = Some(super::fd::register(queue.clone(), interest)?);
    }
    Ok(slot.as_ref().expect("set above"))
}

/// The sending half of a message-queue connection.
#[derive(Debug)]
pub(crate) struct MqSender {
    /// The peer's queue.
    queue: Arc<Queue>,
    ready: Option<AsyncFd<Arc<Queue>>>,
    link: Arc<Link>,
    /// Put in every message (the server routes by it).
    token: u64,
    limit: usize,
    spin: Duration,
    /// A frame a cancelled or timed-out send left half sent; the next send finishes it first.
    pending: Option<Outgoing>,
    scratch: Vec<u8>,
    closed: bool,
    /// A client's sender counts its frames and bytes and keeps within the credit windows
    /// (`link.rs`) of those the server has taken; a server's sender writes to the client's own
    /// queue and needs no credit (`None`).
    sent: Option<Taken>,
}

impl MqSender {
    /// A sender to `queue`; `asynchronous` registers the queue with the current runtime now;
    /// `credited` (a client's sender to the shared server queue) keeps within the credit the
    /// server grants.
    pub(crate) fn new(
        queue: Arc<Queue>,
        link: Arc<Link>,
        token: u64,
        config: &TransportConfig,
        asynchronous: bool,
        credited: bool,
    ) -> Result<MqSender, TransportError> {
        let mut ready = None;
        if asynchronous {
            registered(&mut ready, &queue, Interest::WRITABLE)?;
        }
        Ok(MqSender {
            scratch: Vec::with_capacity(queue.msgsize()),
            queue,
            ready,
            link,
            token,
            limit: config.max_frame_size.min(u32::MAX as usize),
            spin: config.socket_spin,
            pending: None,
            closed: false,
            sent: credited.then(Taken::default),
        })
    }

    /// The token in our messages, for tests that write messages by hand.
    #[cfg(test)]
    pub(crate) fn token_for_tests(&self) -> u64 {
        self.token
    }

    /// The peer's queue, for tests that look at or write to it directly.
    #[cfg(test)]
    pub(crate) fn queue_for_tests(&self) -> Arc<Queue> {
        self.queue.clone()
    }

    /// Whether the server has taken enough of what we sent for one more frame (always, for a
    /// server's sender); what it had taken as far as we know otherwise.
    fn credit_needed(&self) -> Option<Taken> {
        let taken = self.link.taken();
        self.sent?.beyond_credit(taken).then_some(taken)
    }

    /// Waits until the server's credit allows one more frame.
    async fn wait_credit(&self) -> Result<(), TransportError> {
        while let Some(seen) = self.credit_needed() {
            if self.link.is_dead() {
                return Err(TransportError::Closed);
            }
            self.link.more_taken(seen).await;
        }
        Ok(())
    }

    /// The blocking form of [`MqSender::wait_credit`], until `deadline`.
    fn wait_credit_blocking(&self, deadline: Deadline) -> Result<(), TransportError> {
        while let Some(seen) = self.credit_needed() {
            self.link.more_taken_blocking(seen, deadline)?;
        }
        Ok(())
    }

    /// This connection's link, for tests that simulate a peer's death.
    #[cfg(test)]
    pub(crate) fn link_for_tests(&self) -> Arc<Link> {
        self.link.clone()
    }

    pub(crate) fn max_frame_size(&self) -> usize {
        self.limit
    }

    fn start(&mut self, frame: Frame) -> Result<(), TransportError> {
        if self.closed || self.link.is_dead() {
            return Err(TransportError::Closed);
        }
        if frame.len() > self.limit {
            return Err(TransportError::FrameTooLarge {
                size: frame.len(),
                limit: self.limit,
            });
        }
        if let Some(sent) = &mut self.sent {
            sent.frames += 1;
            sent.bytes += frame.len() as u64;
        }
        self.pending = Some(Outgoing::new(frame));
        Ok(())
    }

    pub(crate) async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        if self.closed || self.link.is_dead() {
            return Err(TransportError::Closed);
        }
        self.flush().await?;
        self.wait_credit().await?;
        self.start(frame)?;
        self.flush().await
    }

    /// Sends the rest of the pending frame.
    async fn flush(&mut self) -> Result<(), TransportError> {
        let msgsize = self.queue.msgsize();
        let ready = registered(&mut self.ready, &self.queue, Interest::WRITABLE)?;
        while let Some(out) = self.pending.as_mut() {
            if out.is_done() {
                self.pending = None;
                break;
            }
            out.next_message(&mut self.scratch, msgsize, self.token);
            let scratch = &self.scratch;
            let sent = retry_async(ready, Interest::WRITABLE, &self.link, self.spin, |q| {
                q.try_send(scratch)
            })
            .await;
            match sent {
                Ok(()) => out.advance(msgsize),
                Err(stopped) => {
                    self.pending = None;
                    return Err(stopped_error(stopped));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn send_blocking(
        &mut self,
        frame: Frame,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        if self.closed || self.link.is_dead() {
            return Err(TransportError::Closed);
        }
        // Resolve once, so a frame of many messages has one deadline.
        let deadline = Deadline::from(deadline.resolve());
        self.flush_blocking(deadline)?;
        self.wait_credit_blocking(deadline)?;
        self.start(frame)?;
        self.flush_blocking(deadline)
    }

    fn flush_blocking(&mut self, deadline: Deadline) -> Result<(), TransportError> {
        let result = send_rest(
            &self.queue,
            &self.link,
            &mut self.pending,
            &mut self.scratch,
            self.token,
            self.spin,
            deadline,
        );
        if !matches!(result, Ok(()) | Err(TransportError::TimedOut)) {
            self.pending = None;
        }
        result
    }

    /// Says goodbye: finishes a half-sent frame and sends `BYE`, without waiting. Should the
    /// peer's queue be full, a short-lived thread does it, giving up after [`CLOSE_WAIT`] or
    /// when the peer goes (no thread at all if the peer is gone already).
    ///
    /// The thread also stops, without `BYE`, once it is the link's last holder with no frame
    /// half sent (a frame a cancelled send left unstarted is dropped: a cancelled send never
    /// promised delivery): the connection is then dropped on this side, and dropping the link
    /// closes the socket, which ends the peer's receiver just as `BYE` would (after everything
    /// sent before). So two sides dropped at once with full queues do not hold each other's
    /// queues (and `RLIMIT_MSGQUEUE` budget) for [`CLOSE_WAIT`], each keeping its socket open
    /// while waiting for the other to read. Only a frame already half sent keeps the thread
    /// trying for up to [`CLOSE_WAIT`], as its peer would otherwise get a cut frame.
    pub(crate) fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) || self.link.is_dead() {
            return;
        }
        let mut pending = self.pending.take();
        let finished = send_rest(
            &self.queue,
            &self.link,
            &mut pending,
            &mut self.scratch,
            self.token,
            Duration::ZERO,
            Deadline::At(Instant::now()),
        )
        .and_then(|()| {
            send_bye(
                &self.queue,
                &self.link,
                self.token,
                Deadline::At(Instant::now()),
            )
        });
        if !matches!(finished, Err(TransportError::TimedOut)) || self.link.peer_gone_now() {
            return;
        }
        let (queue, link, token) = (self.queue.clone(), self.link.clone(), self.token);
        let spawned = std::thread::Builder::new()
            .name("rpc-mq-close".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let give_up = Instant::now() + CLOSE_WAIT;
                let mut scratch = Vec::new();
                loop {
                    let deadline = Deadline::At((Instant::now() + CLOSE_CHECK).min(give_up));
                    let result = send_rest(
                        &queue,
                        &link,
                        &mut pending,
                        &mut scratch,
                        token,
                        Duration::ZERO,
                        deadline,
                    )
                    .and_then(|()| send_bye(&queue, &link, token, deadline));
                    match result {
                        Err(TransportError::TimedOut) if Instant::now() < give_up => {
                            let half_sent = pending.as_ref().is_some_and(Outgoing::is_started);
                            if !half_sent && Arc::strong_count(&link) == 1 {
                                // Dropping the link (closing the socket) says goodbye.
                                return;
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%error, "an mq connection closed without its goodbye");
                            return;
                        }
                        Ok(()) => return,
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::debug!(%error, "cannot start the mq closing thread");
        }
    }
}

impl Drop for MqSender {
    fn drop(&mut self) {
        self.close();
    }
}

/// Sends the rest of `pending`, waiting as `deadline` allows.
fn send_rest(
    queue: &Queue,
    link: &Link,
    pending: &mut Option<Outgoing>,
    scratch: &mut Vec<u8>,
    token: u64,
    spin: Duration,
    deadline: Deadline,
) -> Result<(), TransportError> {
    let msgsize = queue.msgsize();
    while let Some(out) = pending.as_mut() {
        if out.is_done() {
            *pending = None;
            break;
        }
        out.next_message(scratch, msgsize, token);
        retry_blocking(queue, PollFlags::POLLOUT, link, spin, deadline, |q| {
            q.try_send(scratch)
        })?;
        out.advance(msgsize);
    }
    Ok(())
}

fn send_bye(
    queue: &Queue,
    link: &Link,
    token: u64,
    deadline: Deadline,
) -> Result<(), TransportError> {
    let mut message = Vec::with_capacity(wire::HEADER_LEN);
    wire::bye(&mut message, token);
    retry_blocking(
        queue,
        PollFlags::POLLOUT,
        link,
        Duration::ZERO,
        deadline,
        |q| q.try_send(&message),
    )
}

/// How a receiver's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The peer closed (or vanished between frames): `None` from now on.
    Cleanly,
    /// An error was returned: `Closed` from now on.
    Failed,
}

/// The receiving half of a message-queue connection.
#[derive(Debug)]
pub(crate) struct MqReceiver(Inbox);

#[derive(Debug)]
enum Inbox {
    Queue(QueueInbox),
    Routed(RoutedInbox),
}

/// A client's receiver: reads its own reply queue.
#[derive(Debug)]
struct QueueInbox {
    queue: Arc<Queue>,
    ready: Option<AsyncFd<Arc<Queue>>>,
    link: Arc<Link>,
    reassembler: Reassembler,
    /// The largest frame accepted.
    limit: usize,
    buf: Vec<u8>,
    spin: Duration,
    ended: Option<Ended>,
    /// How often `PollFrames::peer_gone` was asked (see `direct.rs`).
    gone_asked: std::sync::atomic::AtomicU32,
}

impl MqReceiver {
    /// A receiver reading `queue`; `asynchronous` registers it with the current runtime now.
    pub(crate) fn reading(
        queue: Arc<Queue>,
        link: Arc<Link>,
        config: &TransportConfig,
        asynchronous: bool,
    ) -> Result<MqReceiver, TransportError> {
        let mut ready = None;
        if asynchronous {
            registered(&mut ready, &queue, Interest::READABLE)?;
        }
        Ok(MqReceiver(Inbox::Queue(QueueInbox {
            buf: vec![0; queue.msgsize().max(wire::HEADER_LEN)],
            queue,
            ready,
            link,
            reassembler: Reassembler::new(),
            limit: config.max_frame_size,
            spin: config.socket_spin,
            ended: None,
            gone_asked: Default::default(),
        })))
    }

    /// A server connection's receiver, fed by the routing task.
    pub(crate) fn routed(inbox: RoutedInbox) -> MqReceiver {
        MqReceiver(Inbox::Routed(inbox))
    }

    /// On a server: the most bytes of frames the routing task held for this connection.
    #[cfg(test)]
    pub(crate) fn most_held_for_tests(&self) -> u64 {
        match &self.0 {
            Inbox::Queue(_) => unreachable!("a client's receiver"),
            Inbox::Routed(r) => r.most_held_for_tests(),
        }
    }

    /// Sets the largest frame accepted from now on. A bigger frame fails the connection as it
    /// starts to arrive (on a server, in the routing task, which never reassembles it).
    pub(crate) fn set_max_frame_size(&mut self, limit: usize) {
        match &mut self.0 {
            Inbox::Queue(q) => q.limit = limit,
            Inbox::Routed(r) => r.set_max_frame_size(limit),
        }
    }

    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match &mut self.0 {
            Inbox::Queue(q) => q.recv().await,
            Inbox::Routed(r) => r.recv().await,
        }
    }

    pub(crate) fn recv_blocking(
        &mut self,
        deadline: Deadline,
    ) -> Result<Option<Frame>, TransportError> {
        match &mut self.0 {
            Inbox::Queue(q) => q.recv_blocking(deadline),
            Inbox::Routed(_) => Err(TransportError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "a server's mq receiver is async only",
            ))),
        }
    }

    /// Whether the peer is gone (its rendezvous socket closed).
    pub(crate) fn peer_gone(&self) -> bool {
        match &self.0 {
            Inbox::Queue(q) => q.link.is_dead() || q.link.hung_up(),
            Inbox::Routed(r) => r.peer_gone(),
        }
    }

    /// A client's receiver may be looked at without waiting (see `direct.rs`); a server's,
    /// fed by the routing task, not.
    pub(crate) fn as_poll(&mut self) -> Option<&mut dyn PollFrames> {
        match &mut self.0 {
            Inbox::Queue(q) => Some(q),
            Inbox::Routed(_) => None,
        }
    }

    pub(crate) fn has_buffered(&self) -> bool {
        match &self.0 {
            Inbox::Queue(_) => false,
            Inbox::Routed(r) => r.has_buffered(),
        }
    }

    pub(crate) async fn drain(&mut self) {
        while let Ok(Some(_)) = self.recv().await {}
    }
}

impl QueueInbox {
    fn finished(&self) -> Option<Result<Option<Frame>, TransportError>> {
        match self.ended? {
            Ended::Cleanly => Some(Ok(None)),
            Ended::Failed => Some(Err(TransportError::Closed)),
        }
    }

    fn end(
        &mut self,
        result: Result<Option<Frame>, TransportError>,
    ) -> Result<Option<Frame>, TransportError> {
        self.ended = Some(if result.is_ok() {
            Ended::Cleanly
        } else {
            Ended::Failed
        });
        result
    }

    /// The server is gone and its queue drained.
    fn vanished(&mut self) -> Result<Option<Frame>, TransportError> {
        if self.reassembler.in_progress() {
            self.end(Err(TransportError::Malformed(
                "the server vanished in the middle of a frame".into(),
            )))
        } else {
            self.end(Ok(None))
        }
    }

    /// Takes the message of `n` bytes in `buf`; `Some` when `recv` returns.
    fn take(&mut self, n: usize) -> Option<Result<Option<Frame>, TransportError>> {
        let event = wire::parse(&self.buf[..n])
            .and_then(|(header, chunk)| self.reassembler.push(header, chunk, self.limit));
        match event {
            Ok(None) => None,
            Ok(Some(Event::Frame(frame))) => Some(Ok(Some(frame))),
            Ok(Some(Event::Bye)) => Some(self.end(Ok(None))),
            Err(error) => Some(self.end(Err(error))),
        }
    }

    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if let Some(result) = self.finished() {
                return result;
            }
            let ready = registered(&mut self.ready, &self.queue, Interest::READABLE)?;
            let buf = &mut self.buf;
            let received = retry_async(ready, Interest::READABLE, &self.link, self.spin, |q| {
                q.try_receive(buf)
            })
            .await;
            match received {
                Ok(n) => {
                    if let Some(result) = self.take(n) {
                        return result;
                    }
                }
                Err(Stopped::Gone) => return self.vanished(),
                Err(Stopped::Failed(e)) => return self.end(Err(TransportError::Io(e))),
            }
        }
    }

    fn recv_blocking(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError> {
        let deadline = Deadline::from(deadline.resolve());
        loop {
            if let Some(result) = self.finished() {
                return result;
            }
            let buf = &mut self.buf;
            let received = retry_blocking(
                &self.queue,
                PollFlags::POLLIN,
                &self.link,
                self.spin,
                deadline,
                |q| q.try_receive(buf),
            );
            match received {
                Ok(n) => {
                    if let Some(result) = self.take(n) {
                        return result;
                    }
                }
                Err(TransportError::Closed) => return self.vanished(),
                Err(TransportError::TimedOut) => return Err(TransportError::TimedOut),
                Err(error) => return self.end(Err(error)),
            }
        }
    }
}
