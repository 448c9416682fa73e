//! [`ReplySink`]: where a connection's answers go, from tasks and from its own thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_transport::{BlockingSender, Deadline, Frame, FrameSender, TransportError};

use super::dispatch::{Answer, Outgoing};
use crate::budget::Pool;
use crate::outbox::Outbox;
use crate::wire::{self, Header, Kind, WireError};

/// How long an answer may wait for space in a full shared-memory ring before the connection
/// is given up.
const BLOCKING_SEND_LIMIT: Duration = Duration::from_secs(30);

/// The longest pause between two looks at a full ring, for a task's answer.
const RING_RETRY_MAX: Duration = Duration::from_millis(1);

type SharedBlocking = Arc<tokio::sync::Mutex<BlockingSender>>;

/// Writes an answer's bytes into the place the transport gives, as often as it is tried.
type Writer = Box<dyn Fn(&mut [u8]) + Send>;

#[derive(Clone)]
enum Half {
    /// An async transport half.
    Async(Arc<Outbox>),
    /// A blocking half (shared memory served from a dedicated thread). The thread sends with
    /// blocking waits; tasks send when the ring has room and otherwise wait asynchronously,
    /// so a peer that stops reading holds no thread of a shared pool.
    Blocking(SharedBlocking),
}

/// The sending half of a server connection, shared by every call on it, with the client's
/// maximum frame size.
#[derive(Clone)]
pub(crate) struct ReplySink {
    half: Half,
    peer_limit: usize,
}

impl ReplySink {
    /// A sink over an async half; queued replies hold bytes of `budget`.
    pub(crate) fn new_async(sender: FrameSender, peer_limit: usize, budget: Arc<Pool>) -> Self {
        ReplySink {
            half: Half::Async(Outbox::new(sender, Some(budget))),
            peer_limit,
        }
    }

    /// A sink over a blocking half.
    pub(crate) fn new_blocking(sender: BlockingSender, peer_limit: usize) -> Self {
        ReplySink {
            half: Half::Blocking(Arc::new(tokio::sync::Mutex::new(sender))),
            peer_limit,
        }
    }

    fn send_locked(
        sender: &mut BlockingSender,
        outgoing: Outgoing,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let sent = match outgoing {
            Outgoing::Frame(frame) => sender.send(frame, deadline),
            Outgoing::InPlace { len, header, body } => sender.send_with(
                len,
                move |out| Outgoing::write(&header, &body, out),
                deadline,
            ),
        };
        if sent.is_err() {
            // A client that stopped reading (or is gone): end the connection, so every other
            // answer waiting to be sent fails at once instead of waiting its turn.
            sender.close();
        }
        sent
    }

    /// Waits until queued replies leave room in the connection's budget (see
    /// [`Outbox::room`]); at once on a blocking half, whose answers wait for ring room instead.
    pub(crate) async fn room(&self) {
        if let Half::Async(outbox) = &self.half {
            outbox.room().await;
        }
    }

    /// `answer` sized for this connection's client, ready to send.
    pub(crate) fn prepare(&self, answer: Answer) -> Outgoing {
        answer.outgoing(self.peer_limit)
    }

    /// Sends `answer` from async code.
    pub(crate) async fn send(&self, answer: Answer) -> Result<(), TransportError> {
        self.send_prepared(self.prepare(answer)).await
    }

    pub(crate) async fn send_prepared(&self, outgoing: Outgoing) -> Result<(), TransportError> {
        match &self.half {
            Half::Async(outbox) => match outgoing {
                Outgoing::Frame(frame) => outbox.send(frame).await,
                Outgoing::InPlace { len, header, body } => {
                    outbox
                        .send_with(len, move |out| Outgoing::write(&header, &body, out), false)
                        .await
                }
            },
            Half::Blocking(sender) => Self::send_from_task(sender, outgoing).await,
        }
    }

    /// Sends on a blocking half from a task: takes the ring when it has room, else lets go
    /// and looks again after a short pause, so neither a runtime worker nor a pool thread
    /// waits for a slow peer. Gives the connection up after `BLOCKING_SEND_LIMIT`.
    async fn send_from_task(
        sender: &SharedBlocking,
        outgoing: Outgoing,
    ) -> Result<(), TransportError> {
        let (len, write): (usize, Writer) = match outgoing {
            Outgoing::Frame(frame) => (
                frame.len(),
                Box::new(move |out: &mut [u8]| rpc_transport::copy_in_place(out, frame.payload())),
            ),
            Outgoing::InPlace { len, header, body } => (
                len,
                Box::new(move |out: &mut [u8]| Outgoing::write(&header, &body, out)),
            ),
        };
        let give_up = Instant::now() + BLOCKING_SEND_LIMIT;
        let mut pause = Duration::from_micros(20);
        loop {
            {
                let mut sender = sender.lock().await;
                match sender.try_send_with(len, |out| write(out)) {
                    Ok(true) => return Ok(()),
                    Ok(false) if Instant::now() >= give_up => {
                        sender.close();
                        return Err(TransportError::TimedOut);
                    }
                    Ok(false) => {}
                    Err(error) => {
                        sender.close();
                        return Err(error);
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RING_RETRY_MAX);
        }
    }

    /// Sends `answers`, in order, with as few writes as the transport allows.
    pub(crate) async fn send_many(&self, answers: Vec<Outgoing>) -> Result<(), TransportError> {
        match &self.half {
            Half::Async(outbox) if !outbox.in_place() => {
                outbox
                    .send_written(
                        answers,
                        Outgoing::len,
                        |outgoing, out| match outgoing {
                            Outgoing::Frame(frame) => out.copy_from_slice(frame.payload()),
                            Outgoing::InPlace { header, body, .. } => {
                                Outgoing::write(&header, &body, out)
                            }
                        },
                        false,
                    )
                    .await
            }
            _ => {
                for outgoing in answers {
                    self.send_prepared(outgoing).await?;
                }
                Ok(())
            }
        }
    }

    /// Sends `answer` from the connection's own thread (blocking sinks only).
    pub(crate) fn send_blocking(&self, answer: Answer) -> Result<(), TransportError> {
        match &self.half {
            Half::Blocking(sender) => Self::send_locked(
                // Uncontended as a rule: `try_lock` spares `blocking_lock`'s parker set-up.
                &mut sender.try_lock().unwrap_or_else(|_| sender.blocking_lock()),
                answer.outgoing(self.peer_limit),
                Deadline::After(BLOCKING_SEND_LIMIT),
            ),
            Half::Async(_) => unreachable!("async sinks are only used from tasks"),
        }
    }

    /// Closes the sending direction.
    pub(crate) async fn close(&self) {
        match &self.half {
            Half::Async(outbox) => outbox.close().await,
            Half::Blocking(sender) => sender.lock().await.close(),
        }
    }

    /// Closes the sending direction from the connection's own thread (blocking sinks only).
    pub(crate) fn close_blocking(&self) {
        if let Half::Blocking(sender) = &self.half {
            sender.blocking_lock().close();
        }
    }
}

/// An `Error` frame for call `call_id` of `method` (call id 0: the whole connection).
pub(crate) fn error_frame(method: u32, call_id: u64, error: &WireError) -> Frame {
    let header = Header {
        kind: Kind::Error,
        method,
        call_id,
    };
    wire::message_frame(header, None, error).expect("wire errors always encode")
}
