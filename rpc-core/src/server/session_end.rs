//! How a connection's read loop waits and ends: graceful shutdown (reading on for the running
//! calls), waits during which the connection is not read, the idle timeout, and the last words
//! to a peer that broke the protocol.

use std::future::Future;
use std::time::Duration;

use rpc_transport::FrameReceiver;

use super::calls::Calls;
use super::dispatch::{Answer, Incoming, Outgoing, classify};
use super::reply::{ReplySink, error_frame};
use super::session::Session;
use crate::budget::{ConnectionMemory, FRAME_OVERHEAD, Held};
use crate::keepalive;
use crate::wire::WireError;

/// How long a connection ended for a protocol error waits for its peer to read why.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// What ended a wait during which the connection is not read.
pub(crate) enum Waited<T> {
    Done(T),
    /// The server is killed.
    Killed,
    /// The server stops gracefully.
    Stopped,
    /// The peer left while we waited.
    PeerGone,
}

/// When a connection's graceful stop ends: the server's shutdown grace from the moment the
/// connection first saw the stop (the read loop, a takeover reader or the wind-down, whichever
/// came first), so that a wait for memory during the stop counts against the same grace.
#[derive(Debug, Default)]
pub(crate) struct GraceEnd(std::sync::OnceLock<Option<std::time::Instant>>);

impl GraceEnd {
    /// The end of the grace `grace` that began when this was first asked; `None` for a grace
    /// too long to be an instant (`Duration::MAX`), which has no end.
    pub(crate) fn at(&self, grace: Duration) -> Option<std::time::Instant> {
        *self
            .0
            .get_or_init(|| std::time::Instant::now().checked_add(grace))
    }
}

/// Takes `size` bytes of the requests' budget for a frame of a running call (a stream's item)
/// once the server stops gracefully: the call runs on through the grace, so its item waits for
/// memory (freed as running calls finish) until the grace ends, not dropped at once. `None`
/// when the grace ended first: the call is dropped with it.
pub(crate) async fn take_within_grace(
    s: &Session,
    receiver: &FrameReceiver,
    size: usize,
) -> Waited<Option<Held>> {
    let grace_end = s.grace_end.at(s.config.shutdown_grace);
    let take = s.memory.requests.take(size);
    let bounded = async {
        match grace_end {
            Some(at) => tokio::time::timeout_at(at.into(), take).await.ok(),
            None => Some(take.await),
        }
    };
    unread_through_stop(s, receiver, bounded).await
}

/// Graceful shutdown of one connection: what is ready goes out, running calls get the grace
/// period, then our direction closes (unless the server is killed first). Meanwhile the
/// connection is still read, for what running calls need: their streams' items, ends and
/// credit, and cancels; a new call is refused with `ShuttingDown`.
pub(crate) async fn stop(s: &Session, receiver: &mut FrameReceiver, ready: Vec<Outgoing>) {
    let (calls, sink, memory) = (&*s.calls, &s.sink, &s.memory);
    let grace_end = s.grace_end.at(s.config.shutdown_grace);
    until_killed(s, async {
        let _ = sink.send_many(ready).await;
        let grace = async {
            match grace_end {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = grace => {}
            _ = calls.wait_idle() => {}
            _ = wind_down(calls, sink, receiver, memory) => {}
        }
        sink.close().await;
    })
    .await;
}

/// Reads on while running calls finish (see [`stop`]); never completes.
async fn wind_down(
    calls: &Calls,
    sink: &ReplySink,
    receiver: &mut FrameReceiver,
    memory: &ConnectionMemory,
) {
    while let Ok(Some(frame)) = receiver.recv().await {
        match classify(frame) {
            Incoming::Call(call) => {
                let (method, call_id) = call.ids();
                let refusal = error_frame(method, call_id, &WireError::ShuttingDown);
                let _ = sink.send(Answer::Frame(refusal)).await;
            }
            Incoming::Cancel(call_id) => calls.cancel(call_id),
            Incoming::Item(call_id, item) => {
                let held = memory.requests.take(item.len() + FRAME_OVERHEAD).await;
                if calls.deliver(call_id, item, held).is_err() {
                    break;
                }
            }
            Incoming::End(call_id, reason) => calls.end_stream(call_id, reason),
            Incoming::Credit(call_id, bytes) => calls.grant(call_id, bytes),
            Incoming::Ping(nonce) => {
                let _ = sink.send(Answer::Frame(keepalive::pong_frame(nonce))).await;
            }
            Incoming::Pong => {}
            Incoming::Violation(_) => break,
        }
    }
    std::future::pending::<()>().await;
}

/// How often a connection that is not being read looks whether its peer left.
const GONE_CHECK: Duration = Duration::from_millis(50);

/// Runs `work` while the connection is not read (its budget is spent), watching the server's
/// signals and whether the peer left meanwhile.
pub(crate) async fn unread<T>(
    s: &Session,
    receiver: &FrameReceiver,
    work: impl Future<Output = T>,
) -> Waited<T> {
    unread_watching(s, receiver, work, true).await
}

/// As [`unread`], but a graceful stop does not cut `work` short (answers to calls that
/// finished, which the stop delivers too): only a kill or the peer leaving do.
pub(crate) async fn unread_through_stop<T>(
    s: &Session,
    receiver: &FrameReceiver,
    work: impl Future<Output = T>,
) -> Waited<T> {
    unread_watching(s, receiver, work, false).await
}

async fn unread_watching<T>(
    s: &Session,
    receiver: &FrameReceiver,
    work: impl Future<Output = T>,
    watch_stop: bool,
) -> Waited<T> {
    let stopped = async {
        match watch_stop {
            true => s.stop.cancelled().await,
            false => std::future::pending().await,
        }
    };
    let gone = async {
        loop {
            if receiver.peer_gone() {
                return;
            }
            tokio::time::sleep(GONE_CHECK).await;
        }
    };
    tokio::select! {
        biased;
        _ = s.kill.cancelled() => Waited::Killed,
        _ = stopped => Waited::Stopped,
        done = work => Waited::Done(done),
        _ = gone => Waited::PeerGone,
    }
}

/// Runs `work` (the last words to a peer that may not be reading) unless the server is killed
/// first.
pub(crate) async fn until_killed(s: &Session, work: impl Future<Output = ()>) {
    tokio::select! {
        _ = s.kill.cancelled() => {}
        _ = work => {}
    }
}

/// Completes once `timeout` has passed since the client was last `active` (a frame other than
/// a keepalive's ping or pong) with no call running; never without a timeout.
pub(crate) async fn idle(timeout: Option<Duration>, calls: &Calls, active: tokio::time::Instant) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    let mut at = active.checked_add(timeout);
    loop {
        match at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => return std::future::pending().await,
        }
        if calls.len() == 0 {
            return;
        }
        at = tokio::time::Instant::now().checked_add(timeout);
    }
}

/// Tells the client why the connection ends, closes our direction, and drains the client's
/// (for a bounded time) so the kernel does not reset the connection under the last frame.
pub(crate) async fn fail(s: &Session, receiver: &mut FrameReceiver, reason: String) {
    let sink = &s.sink;
    tracing::debug!(%reason, "closing a connection that broke the protocol");
    let violation = error_frame(0, 0, &WireError::Protocol(reason));
    let _ = sink.send(Answer::Frame(violation)).await;
    sink.close().await;
    tokio::select! {
        _ = s.kill.cancelled() => {}
        _ = tokio::time::sleep(LINGER) => {}
        _ = receiver.drain() => {}
    }
}
