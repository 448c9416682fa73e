//! The server's routing task: reads the shared server queue and hands each connection the
//! frames its client sent, by token.
//!
//! The task owns every connection's reassembly state. Connections talk to it over a control
//! channel: they register when accepted, report their client gone when they see its socket
//! close, and unregister when dropped. The task ends (closing the queue) once the acceptor and
//! every connection's receiver have let go of the control channel.
//!
//! The task never waits for a connection: a connection that does not take its frames (its
//! client stopped reading replies, say, so the server stopped reading its calls) must not hold
//! up the others. A well-behaved client keeps within the credit windows (`link.rs`), so its
//! inbox always has room and the task holds less than [`BYTE_WINDOW`] bytes of its frames
//! plus the one being reassembled (at most the connection's frame limit); a client that sends
//! beyond either window fails its own connection, with an error after the frames it had in
//! the inbox. The frame limit is the connection's own, changed by its receiver at any time
//! (a server accepts only small frames until its handshake is done), and a frame over it is
//! refused at its first message.
//!
//! A client's death is final only once everything it sent is routed: its messages were all in
//! the queue before its socket closed, so when a death is reported the task notes how many
//! messages the queue holds, and ends the connection once it has read that many more (or found
//! the queue empty).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::link::{BYTE_WINDOW, CREDIT_WINDOW};
use super::queue::Queue;
use super::wire::{self, Event, Header, Reassembler};
use crate::error::TransportError;
use crate::frame::Frame;

/// Room in a connection's inbox: the frames of its client's credit window, and one slot kept
/// for the error that ends a connection (so an error never waits, nor is lost).
pub(crate) const INBOX_FRAMES: usize = CREDIT_WINDOW as usize + 1;

/// What a connection's receiver takes from the routing task.
pub(crate) type Item = Result<Frame, TransportError>;

/// What a connection's receiver and the routing task share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The largest frame the connection accepts now.
    pub(crate) limit: AtomicUsize,
    /// Bytes of frames the connection has taken (counted before it grants credit for them).
    pub(crate) taken_bytes: AtomicU64,
    /// The most bytes of frames (whole or begun) the routing task held for the connection.
    #[cfg(test)]
    pub(crate) most_held: AtomicU64,
}

impl Shared {
    pub(crate) fn new(limit: usize) -> Arc<Shared> {
        Arc::new(Shared {
            limit: AtomicUsize::new(limit),
            taken_bytes: AtomicU64::new(0),
            #[cfg(test)]
            most_held: AtomicU64::new(0),
        })
    }
}

/// Messages to the routing task.
#[derive(Debug)]
pub(crate) enum Control {
    /// A new connection: route `token`'s messages to `inbox`, refusing frames over the limit
    /// in `shared`.
    Register {
        token: u64,
        inbox: mpsc::Sender<Item>,
        shared: Arc<Shared>,
    },
    /// The connection's client is gone: end it once its last messages are routed.
    Gone(u64),
    /// The connection was dropped: discard its messages from now on.
    Unregister(u64),
}

struct Route {
    inbox: mpsc::Sender<Item>,
    shared: Arc<Shared>,
    reassembler: Reassembler,
    /// Bytes of the whole frames handed to the inbox.
    routed_bytes: u64,
    /// Set when the client is gone: the number of messages read after which it has nothing
    /// left in the queue.
    gone_after: Option<u64>,
}

/// The routing task's state.
struct Demux {
    queue: AsyncFd<Arc<Queue>>,
    control: mpsc::UnboundedReceiver<Control>,
    routes: HashMap<u64, Route>,
    /// Messages read so far.
    read: u64,
    spin: Duration,
    /// Set once every control sender is gone: the task ends.
    done: bool,
}

/// Starts routing `queue` on the current runtime.
pub(crate) fn spawn(
    queue: Arc<Queue>,
    control: mpsc::UnboundedReceiver<Control>,
    spin: Duration,
) -> std::io::Result<()> {
    let queue = super::fd::register(queue, Interest::READABLE)?;
    let demux = Demux {
        queue,
        control,
        routes: HashMap::new(),
        read: 0,
        spin,
        done: false,
    };
    tokio::spawn(demux.run());
    Ok(())
}

impl Demux {
    async fn run(mut self) {
        let mut buf = vec![0u8; self.queue.get_ref().msgsize().max(wire::HEADER_LEN)];
        while !self.done {
            self.take_controls();
            match self.queue.get_ref().try_receive(&mut buf) {
                Ok(n) => {
                    self.read += 1;
                    self.route(&buf[..n]);
                    self.end_routed();
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(error) => {
                    tracing::error!(%error, "reading the mq server queue failed; routing stops");
                    return;
                }
            }
            // Empty: every client reported gone has nothing left in the queue.
            self.end_all_gone();
            if self.done {
                break;
            }
            self.wait().await;
        }
    }

    /// Spins, then sleeps until the queue may have a message or a control arrives.
    async fn wait(&mut self) {
        let spin_until = crate::deadline::after(self.spin);
        while std::time::Instant::now() < spin_until {
            crate::spin::yield_to_others().await;
            if !self.queue.get_ref().waiting().is_ok_and(|n| n == 0) || !self.control.is_empty() {
                return;
            }
        }
        tokio::select! {
            ready = self.queue.readable() => match ready {
                Ok(mut guard) => guard.clear_ready_matching(tokio::io::Ready::READABLE),
                Err(error) => {
                    tracing::error!(%error, "waiting on the mq server queue failed");
                    self.done = true;
                }
            },
            control = self.control.recv() => match control {
                Some(control) => self.apply(control),
                None => self.done = true,
            },
        }
    }

    fn take_controls(&mut self) {
        loop {
            match self.control.try_recv() {
                Ok(control) => self.apply(control),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.done = true;
                    return;
                }
            }
        }
    }

    fn apply(&mut self, control: Control) {
        match control {
            Control::Register {
                token,
                inbox,
                shared,
            } => {
                self.routes.insert(
                    token,
                    Route {
                        inbox,
                        shared,
                        reassembler: Reassembler::new(),
                        routed_bytes: 0,
                        gone_after: None,
                    },
                );
            }
            Control::Gone(token) => {
                let waiting = self.queue.get_ref().waiting().unwrap_or(0);
                if let Some(route) = self.routes.get_mut(&token) {
                    route.gone_after.get_or_insert(self.read + waiting);
                }
            }
            Control::Unregister(token) => {
                self.routes.remove(&token);
            }
        }
    }

    /// Hands one message to its connection.
    fn route(&mut self, message: &[u8]) {
        let (header, chunk) = match wire::parse(message) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::debug!(%error, "dropping a malformed message on the mq server queue");
                return;
            }
        };
        if !self.routes.contains_key(&header.token) {
            // A registration is sent before the client learns its token; take it now.
            self.take_controls();
        }
        let Some(route) = self.routes.get_mut(&header.token) else {
            tracing::debug!(
                token = header.token,
                "dropping a message for no connection on the mq server queue"
            );
            return;
        };
        let item = match route.take(header, chunk) {
            Ok(None) => return,
            Ok(Some(Event::Frame(frame))) => Ok(frame),
            Ok(Some(Event::Bye)) => {
                self.routes.remove(&header.token);
                return;
            }
            Err(error) => Err(error),
        };
        // The last slot is kept for an error: a frame that would take it is over the credit.
        let item = match item {
            Ok(_) if route.inbox.capacity() <= 1 => Err(TransportError::Malformed(format!(
                "the client sent more than {CREDIT_WINDOW} frames the server had not taken yet \
                 (its credit)"
            ))),
            Ok(frame) => {
                route.routed_bytes += frame.len() as u64;
                Ok(frame)
            }
            item => item,
        };
        let failed = item.is_err();
        if route.inbox.try_send(item).is_err() || failed {
            // The connection is gone, or its client broke the protocol: it gets nothing more.
            // (`try_send` never finds the inbox full: see above.)
            self.routes.remove(&header.token);
        }
    }

    /// Ends the connections of gone clients whose messages have all been routed.
    fn end_routed(&mut self) {
        let read = self.read;
        self.routes.retain(|_, route| match route.gone_after {
            Some(after) if after <= read => {
                end(route);
                false
            }
            _ => true,
        });
    }

    /// Ends the connections of every gone client (the queue is empty).
    fn end_all_gone(&mut self) {
        self.routes.retain(|_, route| {
            if route.gone_after.is_some() {
                end(route);
                false
            } else {
                true
            }
        });
    }
}

impl Route {
    /// Takes one message of the client: a frame may begin only while the connection holds
    /// less than [`BYTE_WINDOW`] bytes of frames it has not taken (the client's byte credit).
    fn take(&mut self, header: Header, chunk: &[u8]) -> Result<Option<Event>, TransportError> {
        if header.kind == wire::FIRST && !self.reassembler.in_progress() {
            let taken = self.shared.taken_bytes.load(Ordering::SeqCst);
            let held = self.routed_bytes.saturating_sub(taken);
            if held >= BYTE_WINDOW {
                return Err(TransportError::Malformed(format!(
                    "the client began a frame with {held} bytes the server had not taken yet, \
                     beyond its credit of {BYTE_WINDOW} bytes"
                )));
            }
        }
        let limit = self.shared.limit.load(Ordering::SeqCst);
        let event = self.reassembler.push(header, chunk, limit);
        #[cfg(test)]
        {
            let taken = self.shared.taken_bytes.load(Ordering::SeqCst);
            let whole = match &event {
                Ok(Some(Event::Frame(frame))) => frame.len() as u64,
                _ => 0,
            };
            let held = (self.routed_bytes + whole).saturating_sub(taken)
                + self.reassembler.partial_len() as u64;
            self.shared.most_held.fetch_max(held, Ordering::SeqCst);
        }
        event
    }
}

/// Ends a gone client's connection: dropping the route closes its inbox, so its receiver
/// returns `None` after the frames already routed, or an error if a frame was cut short.
fn end(route: &Route) {
    if route.reassembler.in_progress() {
        let _ = route.inbox.try_send(Err(TransportError::Malformed(
            "the client vanished in the middle of a frame".into(),
        )));
    }
}
