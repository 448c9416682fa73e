//! The connection's reader task: hands each reply (and stream item and credit) to its caller
//! by call id, answers the server's pings, and pings a silent server under a keepalive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rpc_transport::FrameReceiver;

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
    pending: Arc<Pending>,
    sender: Arc<Outbox>,
    keepalive: Option<Keepalive>,
) {
    let alive = misuse::ReaderAlive::new(pending);
    let pong_pending = Arc::new(AtomicBool::new(false));
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
                        send_bounded(&sender, ping, watch.timeout(), || {});
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
            Ok(None) => break "the server closed the connection".to_owned(),
            Err(e) => break format!("receiving failed: {e}"),
        };
        let header = match Header::parse(frame.payload()) {
            Ok(parsed) => parsed.header,
            Err(e) => break format!("the server sent a bad frame: {e}"),
        };
        match header.kind {
            Kind::Error if header.call_id == 0 => {
                let parsed = Header::parse(frame.payload()).expect("parsed above");
                let why = crate::wire::decode::<WireError>(parsed.body, "a connection error")
                    .map(|e| format!("the server closed the connection: {e:?}"))
                    .unwrap_or_else(|e| e.to_string());
                break why;
            }
            Kind::Response | Kind::Error => {
                alive.pending().complete(header.call_id, Ok(frame));
            }
            Kind::StreamItem => {
                if let Err(reason) = alive.pending().item(header.call_id, frame) {
                    break reason;
                }
            }
            Kind::Credit => {
                let parsed = Header::parse(frame.payload()).expect("parsed above");
                match crate::wire::decode::<u64>(parsed.body, "a stream's credit") {
                    Ok(bytes) => alive.pending().grant(header.call_id, bytes),
                    Err(e) => break e.to_string(),
                }
            }
            Kind::Ping => {
                // One pong at a time: a server that floods pings and never reads gets no more
                // than one answer queued (one says the client is alive as well as many).
                if !pong_pending.swap(true, Ordering::AcqRel) {
                    let pong = keepalive::pong_frame(header.call_id);
                    let done = pong_pending.clone();
                    send_bounded(&sender, pong, PONG_WITHIN, move || {
                        done.store(false, Ordering::Release)
                    });
                }
            }
            Kind::Pong => {}
            other => break format!("the server sent an unexpected {other:?} frame"),
        }
    };
    tracing::debug!(%reason, "client connection ended");
    alive.ended(&reason);
}

/// How long a `Pong` may wait to be written before it is given up.
const PONG_WITHIN: Duration = Duration::from_secs(10);

/// Sends `frame` from a task of its own (the reader must not wait on a full transport), given
/// up after `within` so that a dead link does not keep the task, and the connection, alive.
/// `then` runs once the frame is written or given up.
fn send_bounded(
    sender: &Arc<Outbox>,
    frame: rpc_transport::Frame,
    within: Duration,
    then: impl FnOnce() + Send + 'static,
) {
    let sender = sender.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(within, sender.send(frame)).await;
        then();
    });
}
