//! How a connection's read loop waits and ends: graceful shutdown (reading on for the running
//! calls), waits during which the connection is not read, the idle timeout, and the last words
//! to a peer that broke the protocol.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use rpc_transport::FrameReceiver;

use super::calls::Calls;
use super::dispatch::{Answer, Incoming, Outgoing, classify};
use super::ready::Ready;
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
#[derive(Debug)]
pub(crate) struct GraceEnd {
    grace: Duration,
    /// Set when the grace starts; `None` inside for a grace too long to be an instant
    /// (`Duration::MAX`), which has no end.
    end: std::sync::OnceLock<Option<std::time::Instant>>,
}

impl GraceEnd {
    /// A grace of `grace`, not started yet.
    pub(crate) fn new(grace: Duration) -> GraceEnd {
        GraceEnd {
            grace,
            end: std::sync::OnceLock::new(),
        }
    }

    /// The grace's end, starting it now if it has not started (call once the stop is seen);
    /// `None`: it has no end.
    pub(crate) fn start_or_get(&self) -> Option<std::time::Instant> {
        *self
            .end
            .get_or_init(|| std::time::Instant::now().checked_add(self.grace))
    }

    /// Whether the grace (started now if it had not) is over.
    pub(crate) fn passed(&self) -> bool {
        self.start_or_get()
            .is_some_and(|end| std::time::Instant::now() >= end)
    }

    /// Completes when the grace (started now if it had not) is over; never, without an end.
    pub(crate) async fn ended(&self) {
        match self.start_or_get() {
            Some(end) => tokio::time::sleep_until(end.into()).await,
            None => std::future::pending().await,
        }
    }
}

/// Takes `size` bytes of the requests' budget; while it is spent, sends what is ready and
/// waits without reading, watching the server's signals and the peer.
pub(crate) async fn reserve(
    s: &Session,
    receiver: &FrameReceiver,
    ready: &mut Ready,
    size: usize,
) -> Result<Held, Waited<()>> {
    if let Some(held) = s.memory.requests.try_take(size) {
        return Ok(held);
    }
    // The answers ready go out first, even when the server stops meanwhile: they are
    // answers to calls that finished, which a graceful stop delivers.
    let batch = ready.take();
    if !batch.is_empty() {
        match unread_through_stop(s, receiver, s.sink.send_many(batch)).await {
            Waited::Done(_) => {}
            // (A stop is not watched here: it is seen at the wait below.)
            Waited::Killed | Waited::Stopped => return Err(Waited::Killed),
            Waited::PeerGone => return Err(Waited::PeerGone),
        }
    }
    match unread(s, receiver, s.memory.requests.take(size)).await {
        Waited::Done(held) => Ok(held),
        Waited::Stopped => Err(Waited::Stopped),
        Waited::Killed => Err(Waited::Killed),
        Waited::PeerGone => Err(Waited::PeerGone),
    }
}

/// Takes `size` bytes of the requests' budget for an item of call `call_id`'s stream once the
/// server stops gracefully. The call runs on through the grace, so its item waits for memory
/// (freed as running calls finish) rather than being dropped at once, but no longer than the
/// grace, nor once no call runs. `None` when it waits for none of that: the call does not
/// run (or takes no items), the grace ended, or every call did.
pub(crate) async fn take_within_grace(
    s: &Session,
    receiver: &FrameReceiver,
    call_id: u64,
    size: usize,
) -> Waited<Option<Held>> {
    if !s.calls.takes_items(call_id) {
        return Waited::Done(None);
    }
    let wait = async {
        tokio::select! {
            biased;
            held = s.memory.requests.take(size) => Some(held),
            () = s.grace_end.ended() => None,
            () = s.calls.wait_idle() => None,
        }
    };
    unread_through_stop(s, receiver, wait).await
}

/// Graceful shutdown of one connection: what is ready goes out, running calls get the grace
/// period, then our direction closes (unless the server is killed first). Meanwhile the
/// connection is still read, for what running calls need: their streams' items, ends and
/// credit, and cancels; a new call is refused with `ShuttingDown`.
pub(crate) async fn stop(s: &Session, receiver: &mut FrameReceiver, ready: Vec<Outgoing>) {
    let (calls, sink, memory) = (&*s.calls, &s.sink, &s.memory);
    let grace = s.grace_end.ended();
    until_killed(s, async {
        let _ = sink.send_many(ready).await;
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
    let mut work = std::pin::pin!(work);
    if !watch_stop {
        // As a rule done at once (answers written into the transport's buffer): then no
        // watch is set up for it (a cancellation waiter registered and removed, under locks).
        let at_once = std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
        if let Poll::Ready(done) = at_once {
            return Waited::Done(done);
        }
    }
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
        done = &mut work => Waited::Done(done),
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
