//! The async read loop of one connection. Every call runs as a task of its own, so a handler
//! that computes before its first `.await` holds up no other call; refusals of requests that
//! arrived together leave in one write.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rpc_transport::FrameReceiver;

use super::ConnectionEnv;
use super::calls::Calls;
use super::dispatch::{Answer, CallEnv, Incoming, Outgoing, classify, prepare_call};
use super::reply::{ReplySink, error_frame};
use crate::budget::{ConnectionMemory, FRAME_OVERHEAD, Held, TASK_OVERHEAD};
use crate::wire::WireError;

/// The most answers held back to leave in one write (see also `BATCH_BYTES`).
const BATCH: usize = 64;

/// How long a connection ended for a protocol error waits for its peer to read why.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// What ended a wait during which the connection is not read.
enum Waited<T> {
    Done(T),
    /// The server is killed.
    Killed,
    /// The server stops gracefully.
    Stopped,
    /// The peer left while we waited.
    PeerGone,
}

/// Serves calls until the peer leaves, breaks the protocol, or the server stops.
pub(crate) async fn run(
    env: &ConnectionEnv,
    calls: &Arc<Calls>,
    call_env: &CallEnv,
    sink: &ReplySink,
    receiver: &mut FrameReceiver,
    memory: &ConnectionMemory,
) {
    let runtime = tokio::runtime::Handle::current();
    let mut ready = Ready::default();
    loop {
        receiver.set_spinning(!calls.busy());
        let received = tokio::select! {
            biased;
            _ = env.kill.cancelled() => return,
            _ = env.stop.cancelled() => return stop(env, calls, sink, receiver, memory, ready.take()).await,
            received = receiver.recv() => received,
            _ = idle(env.config.idle_timeout, calls) => {
                tracing::debug!("closing a connection idle for longer than the idle timeout");
                let ready = ready.take();
                return until_killed(env, async {
                    let _ = sink.send_many(ready).await;
                    sink.close().await;
                })
                .await;
            }
        };
        let frame = match received {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                let ready = ready.take();
                return until_killed(env, async {
                    let _ = sink.send_many(ready).await;
                })
                .await;
            }
            Err(error) => {
                let ready = ready.take();
                return until_killed(env, async {
                    let _ = sink.send_many(ready).await;
                    fail(env, sink, receiver, error.to_string()).await;
                })
                .await;
            }
        };
        // Every call runs as a task of its own, so no call waits behind another's handler; it
        // takes its bytes from the budget first, and while the budget is spent this loop reads
        // nothing more.
        match classify(frame) {
            Incoming::Call(call) => match prepare_call(call_env, calls, call, sink) {
                Ok(prepared) => {
                    let size = prepared.size + TASK_OVERHEAD;
                    let held = match reserve(env, receiver, memory, sink, &mut ready, size).await {
                        Ok(held) => held,
                        Err(Waited::Stopped) => {
                            drop(prepared);
                            return stop(env, calls, sink, receiver, memory, Vec::new()).await;
                        }
                        Err(_) => return,
                    };
                    calls.spawn(&runtime, sink.clone(), prepared, held);
                }
                Err(refusal) => ready.push(sink.prepare(Answer::Frame(refusal))),
            },
            Incoming::Cancel(call_id) => calls.cancel(call_id),
            Incoming::Item(call_id, item) => {
                let size = item.len() + FRAME_OVERHEAD;
                let held = match reserve(env, receiver, memory, sink, &mut ready, size).await {
                    Ok(held) => held,
                    Err(Waited::Stopped) => {
                        return stop(env, calls, sink, receiver, memory, Vec::new()).await;
                    }
                    Err(_) => return,
                };
                if let Err(reason) = calls.deliver(call_id, item, held) {
                    let ready = ready.take();
                    return until_killed(env, async {
                        let _ = sink.send_many(ready).await;
                        fail(env, sink, receiver, reason).await;
                    })
                    .await;
                }
            }
            Incoming::End(call_id, reason) => calls.end_stream(call_id, reason),
            Incoming::Credit(call_id, bytes) => calls.grant(call_id, bytes),
            Incoming::Violation(reason) => {
                let ready = ready.take();
                return until_killed(env, async {
                    let _ = sink.send_many(ready).await;
                    fail(env, sink, receiver, reason).await;
                })
                .await;
            }
        }
        // Answer once the requests that arrived together are handled, and at least every
        // `BATCH` answers or `BATCH_BYTES`, so a client that keeps pipelining still hears back
        // and the answers held here stay small. Sending waits while the replies' budget is
        // spent (the peer does not read), and so does this loop: the peer's further requests
        // stay where they are.
        if ready.is_due(receiver.has_buffered()) {
            match unread(env, receiver, sink.send_many(ready.take())).await {
                Waited::Done(_) => {}
                Waited::Stopped => {
                    return stop(env, calls, sink, receiver, memory, Vec::new()).await;
                }
                Waited::Killed | Waited::PeerGone => return,
            }
        }
    }
}

/// The most answers held back to leave in one write, and the most bytes.
const BATCH_BYTES: usize = 64 * 1024;

/// Answers of calls that completed at once, held back to leave in one write.
#[derive(Default)]
struct Ready {
    answers: Vec<Outgoing>,
    bytes: usize,
}

impl Ready {
    fn push(&mut self, answer: Outgoing) {
        self.bytes += answer.len();
        self.answers.push(answer);
    }

    fn take(&mut self) -> Vec<Outgoing> {
        self.bytes = 0;
        std::mem::take(&mut self.answers)
    }

    /// Whether to send now: a batch is full, or no further request is waiting.
    fn is_due(&self, more_waiting: bool) -> bool {
        !self.answers.is_empty()
            && (self.answers.len() >= BATCH || self.bytes >= BATCH_BYTES || !more_waiting)
    }
}

/// Graceful shutdown of one connection: what is ready goes out, running calls get the grace
/// period, then our direction closes (unless the server is killed first). Meanwhile the
/// connection is still read, for what running calls need: their streams' items, ends and
/// credit, and cancels; a new call is refused with `ShuttingDown`.
async fn stop(
    env: &ConnectionEnv,
    calls: &Calls,
    sink: &ReplySink,
    receiver: &mut FrameReceiver,
    memory: &ConnectionMemory,
    ready: Vec<Outgoing>,
) {
    until_killed(env, async {
        let _ = sink.send_many(ready).await;
        tokio::select! {
            _ = tokio::time::sleep(env.config.shutdown_grace) => {}
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
            Incoming::Violation(_) => break,
        }
    }
    std::future::pending::<()>().await;
}

/// How often a connection that is not being read looks whether its peer left.
const GONE_CHECK: Duration = Duration::from_millis(50);

/// Runs `work` while the connection is not read (its budget is spent), watching the server's
/// signals and whether the peer left meanwhile.
async fn unread<T>(
    env: &ConnectionEnv,
    receiver: &FrameReceiver,
    work: impl Future<Output = T>,
) -> Waited<T> {
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
        _ = env.kill.cancelled() => Waited::Killed,
        _ = env.stop.cancelled() => Waited::Stopped,
        done = work => Waited::Done(done),
        _ = gone => Waited::PeerGone,
    }
}

/// Takes `size` bytes of the requests' budget; while it is spent, sends what is ready and
/// waits without reading, watching the server's signals and the peer.
async fn reserve(
    env: &ConnectionEnv,
    receiver: &FrameReceiver,
    memory: &ConnectionMemory,
    sink: &ReplySink,
    ready: &mut Ready,
    size: usize,
) -> Result<Held, Waited<()>> {
    if let Some(held) = memory.requests.try_take(size) {
        return Ok(held);
    }
    let batch = ready.take();
    let wait = async {
        let _ = sink.send_many(batch).await;
        memory.requests.take(size).await
    };
    match unread(env, receiver, wait).await {
        Waited::Done(held) => Ok(held),
        Waited::Stopped => Err(Waited::Stopped),
        Waited::Killed => Err(Waited::Killed),
        Waited::PeerGone => Err(Waited::PeerGone),
    }
}

/// Runs `work` (the last words to a peer that may not be reading) unless the server is killed
/// first.
async fn until_killed(env: &ConnectionEnv, work: impl Future<Output = ()>) {
    tokio::select! {
        _ = env.kill.cancelled() => {}
        _ = work => {}
    }
}

/// Completes once `timeout` has passed with no call running (restarted by the caller on
/// every frame); never without a timeout.
async fn idle(timeout: Option<Duration>, calls: &Calls) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(timeout).await;
        if calls.len() == 0 {
            return;
        }
    }
}

/// Tells the client why the connection ends, closes our direction, and drains the client's
/// (for a bounded time) so the kernel does not reset the connection under the last frame.
async fn fail(env: &ConnectionEnv, sink: &ReplySink, receiver: &mut FrameReceiver, reason: String) {
    tracing::debug!(%reason, "closing a connection that broke the protocol");
    let violation = error_frame(0, 0, &WireError::Protocol(reason));
    let _ = sink.send(Answer::Frame(violation)).await;
    sink.close().await;
    tokio::select! {
        _ = env.kill.cancelled() => {}
        _ = tokio::time::sleep(LINGER) => {}
        _ = receiver.drain() => {}
    }
}
