//! [`ReplySink`]: where a connection's answers go, from tasks and from its own thread.

use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use rpc_transport::{BlockingSender, Deadline, Frame, FrameSender, TransportError};

use super::dispatch::{Answer, Outgoing};
use crate::outbox::Outbox;
use crate::wire::{self, Header, Kind, WireError};

/// How long an answer may wait for space in a full shared-memory ring before the connection
/// is given up.
const BLOCKING_SEND_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
enum Half {
    /// An async transport half.
    Async(Arc<Outbox>),
    /// A blocking half (shared memory served from a dedicated thread).
    Blocking(Arc<std::sync::Mutex<BlockingSender>>),
}

/// The sending half of a server connection, shared by every call on it, with the client's
/// maximum frame size.
#[derive(Clone)]
pub(crate) struct ReplySink {
    half: Half,
    peer_limit: usize,
}

impl ReplySink {
    /// A sink over an async half.
    pub(crate) fn new_async(sender: FrameSender, peer_limit: usize) -> Self {
        ReplySink {
            half: Half::Async(Outbox::new(sender)),
            peer_limit,
        }
    }

    /// A sink over a blocking half.
    pub(crate) fn new_blocking(sender: BlockingSender, peer_limit: usize) -> Self {
        ReplySink {
            half: Half::Blocking(Arc::new(std::sync::Mutex::new(sender))),
            peer_limit,
        }
    }

    fn lock(sender: &std::sync::Mutex<BlockingSender>) -> MutexGuard<'_, BlockingSender> {
        sender.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send_locked(sender: &mut BlockingSender, outgoing: Outgoing) -> Result<(), TransportError> {
        let deadline = Deadline::After(BLOCKING_SEND_LIMIT);
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

    /// Sends `answer` from async code.
    pub(crate) async fn send(&self, answer: Answer) -> Result<(), TransportError> {
        let outgoing = answer.outgoing(self.peer_limit);
        match &self.half {
            Half::Async(outbox) => match outgoing {
                Outgoing::Frame(frame) => outbox.send(frame).await,
                Outgoing::InPlace { len, header, body } => {
                    outbox
                        .send_with(len, move |out| Outgoing::write(&header, &body, out), false)
                        .await
                }
            },
            Half::Blocking(sender) => {
                // A full ring can make this wait: never on a runtime worker, whose other
                // tasks (other connections) would wait with it.
                let sender = sender.clone();
                tokio::task::spawn_blocking(move || {
                    Self::send_locked(&mut Self::lock(&sender), outgoing)
                })
                .await
                .unwrap_or_else(|e| Err(TransportError::Io(std::io::Error::other(e))))
            }
        }
    }

    /// Sends `answers`, in order, with as few writes as the transport allows.
    pub(crate) async fn send_many(&self, answers: Vec<Answer>) -> Result<(), TransportError> {
        match &self.half {
            Half::Async(outbox) if !outbox.in_place() => {
                let frames = answers
                    .into_iter()
                    .map(|answer| match answer.outgoing(self.peer_limit) {
                        Outgoing::Frame(frame) => frame,
                        Outgoing::InPlace { len, header, body } => {
                            Frame::filled(len, |out| Outgoing::write(&header, &body, out))
                        }
                    })
                    .collect();
                outbox.send_all(frames).await
            }
            _ => {
                for answer in answers {
                    self.send(answer).await?;
                }
                Ok(())
            }
        }
    }

    /// Sends `answer` from the connection's own thread (blocking sinks only).
    pub(crate) fn send_blocking(&self, answer: Answer) -> Result<(), TransportError> {
        match &self.half {
            Half::Blocking(sender) => {
                Self::send_locked(&mut Self::lock(sender), answer.outgoing(self.peer_limit))
            }
            Half::Async(_) => unreachable!("async sinks are only used from tasks"),
        }
    }

    /// Closes the sending direction.
    pub(crate) async fn close(&self) {
        match &self.half {
            Half::Async(outbox) => outbox.close().await,
            Half::Blocking(sender) => Self::lock(sender).close(),
        }
    }

    /// Closes the sending direction from the connection's own thread (blocking sinks only).
    pub(crate) fn close_blocking(&self) {
        if let Half::Blocking(sender) = &self.half {
            Self::lock(sender).close();
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
