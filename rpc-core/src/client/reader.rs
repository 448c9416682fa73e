//! The connection's reader task: hands each reply (and stream item and credit) to its caller
//! by call id, answers the server's pings, and pings a silent server under a keepalive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rpc_transport::{Frame, FrameReceiver};

use super::misuse;
use super::pending::Pending;
use crate::keepalive::{self, Keepalive};
use crate::outbox::Outbox;
use crate::wire::{Header, Kind, WireError};

/// The connection's reader: hands each reply to its caller until the connection ends.
///
/// Dropped before it ends (its runtime shut down), it fails the connection's calls with
/// [`RpcError::RuntimeShutDown`]. With `keepalive`, it pings a silent server and gives the
/// connection up when the server stays silent (see [`Keepalive`]).
pub(super) async fn read_replies(
    mut receiver: FrameReceiver,
    dispatcher: Dispatcher,
    keepalive: Option<Keepalive>,
) {
    let alive = misuse::ReaderAlive::new(dispatcher.pending.clone());
    let mut watch = keepalive.map(keepalive::Watch::new);
    let reason = loop {
        let received = match watch.as_mut() {
            None => receiver.recv().await,
            Some(watch) => {
                let woke = tokio::select! {
                    biased;
                    received = receiver.recv() => Ok(received),
                    due = watch.due() => Err(due),
                };
                match woke {
                    Ok(received) => {
                        watch.heard();
                        received
                    }
                    Err(keepalive::Due::Ping(ping)) => {
                        dispatcher.send_bounded(ping, watch.timeout());
                        continue;
                    }
                    Err(keepalive::Due::Lapsed) => {
                        break watch.lapsed();
                    }
                }
            }
        };
        let frame = match received {
            Ok(Some(frame)) => frame,
            Ok(None) => break CLOSED.to_owned(),
            Err(e) => break format!("receiving failed: {e}"),
        };
        if let Err(reason) = dispatcher.dispatch(frame) {
            break reason;
        }
    };
    tracing::debug!(%reason, "client connection ended");
    alive.ended(&reason);
    // The transport goes now, not with the last handle to the client (see `Outbox::release`).
    drop(receiver);
    dispatcher.sender.release(&reason).await;
}

/// Why a connection ended when the server closed it.
pub(super) const CLOSED: &str = "the server closed the connection";

/// Hands each frame from the server to whom it is for: replies and stream items to their
/// calls, credit to streams, pings answered. Used by the reader task, and by a caller that
/// reads the connection itself ([`super::direct`]).
#[derive(Clone)]
pub(super) struct Dispatcher {
    pub(super) pending: Arc<Pending>,
    pub(super) sender: Arc<Outbox>,
    /// A `Pong` is being written: one at a time.
    pong_pending: Arc<AtomicBool>,
    /// The connection's runtime: pongs are written from a task there, whichever runtime the
    /// caller that read the ping runs on (it may be short-lived).
    runtime: tokio::runtime::Handle,
}

impl Dispatcher {
    /// Must be made inside the connection's runtime.
    pub(super) fn new(pending: Arc<Pending>, sender: Arc<Outbox>) -> Dispatcher {
        Dispatcher {
            pending,
            sender,
            pong_pending: Arc::new(AtomicBool::new(false)),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Sends `frame` from a task of the connection's runtime, given up after `within`.
    pub(super) fn send_bounded(&self, frame: Frame, within: Duration) {
        send_on(&self.runtime, &self.sender, frame, within, None);
    }

    /// Hands `frame` on; `Err` with the reason when it ends the connection.
    pub(super) fn dispatch(&self, frame: Frame) -> Result<(), String> {
        let parsed = match Header::parse(frame.payload()) {
            Ok(parsed) => parsed,
            Err(e) => return Err(format!("the server sent a bad frame: {e}")),
        };
        let header = parsed.header;
        match header.kind {
            Kind::Error if header.call_id == 0 => {
                let why = crate::wire::decode::<WireError>(parsed.body, "a connection error")
                    .map(|e| format!("the server closed the connection: {e:?}"))
                    .unwrap_or_else(|e| e.to_string());
                Err(why)
            }
            Kind::Response | Kind::Error => {
                self.pending.complete(header.call_id, Ok(frame));
                Ok(())
            }
            Kind::StreamItem => self.pending.item(header.call_id, frame),
            Kind::Credit => {
                let bytes = crate::wire::decode::<u64>(parsed.body, "a stream's credit")
                    .map_err(|e| e.to_string())?;
                self.pending.grant(header.call_id, bytes);
                Ok(())
            }
            Kind::Ping => {
                // One pong at a time: a server that floods pings and never reads gets no more
                // than one answer queued (one says the client is alive as well as many).
                if !self.pong_pending.swap(true, Ordering::AcqRel) {
                    let pong = keepalive::pong_frame(header.call_id);
                    let done = PongDone(self.pong_pending.clone());
                    send_on(&self.runtime, &self.sender, pong, PONG_WITHIN, Some(done));
                }
                Ok(())
            }
            Kind::Pong => Ok(()),
            other => Err(format!("the server sent an unexpected {other:?} frame")),
        }
    }
}

/// How long a `Pong` may wait to be written before it is given up.
const PONG_WITHIN: Duration = Duration::from_secs(10);

/// Clears the "pong being written" mark when dropped: once the pong is written or given up,
/// and also when its task is dropped unfinished (its runtime shut down).
struct PongDone(Arc<AtomicBool>);

impl Drop for PongDone {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Sends `frame` from a task of `runtime` (the reader must not wait on a full transport),
/// given up after `within` so that a dead link does not keep the task, and the connection,
/// alive. `done` is dropped once the frame is written or given up.
fn send_on(
    runtime: &tokio::runtime::Handle,
    sender: &Arc<Outbox>,
    frame: Frame,
    within: Duration,
    done: Option<PongDone>,
) {
    let sender = sender.clone();
    runtime.spawn(async move {
        let _done = done;
        let _ = tokio::time::timeout(within, sender.send(frame)).await;
    });
}
