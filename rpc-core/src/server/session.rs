//! The async read loop of one connection. Each handler is polled once right here: one that
//! finishes at once (most do) is answered without a task of its own, and the answers to a batch
//! of requests that arrived together leave in one write. A handler that must wait continues as
//! a task.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use rpc_transport::FrameReceiver;

use super::ConnectionEnv;
use super::calls::Calls;
use super::dispatch::{Answer, CallEnv, Incoming, classify, prepare_call};
use super::reply::{ReplySink, error_frame};
use crate::wire::WireError;

/// The most answers held back to leave in one write.
const BATCH: usize = 64;

/// How long a connection ended for a protocol error waits for its peer to read why.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Serves calls until the peer leaves, breaks the protocol, or the server stops.
pub(crate) async fn run(
    env: &ConnectionEnv,
    calls: &Arc<Calls>,
    call_env: &CallEnv,
    sink: &ReplySink,
    receiver: &mut FrameReceiver,
) {
    let runtime = tokio::runtime::Handle::current();
    let mut ready: Vec<Answer> = Vec::new();
    loop {
        let received = tokio::select! {
            biased;
            _ = env.kill.cancelled() => return,
            _ = env.stop.cancelled() => {
                let _ = sink.send_many(std::mem::take(&mut ready)).await;
                let _ = tokio::time::timeout(env.config.shutdown_grace, calls.wait_idle()).await;
                sink.close().await;
                return;
            }
            received = receiver.recv() => received,
            _ = idle(env.config.idle_timeout, calls) => {
                tracing::debug!("closing a connection idle for longer than the idle timeout");
                let _ = sink.send_many(std::mem::take(&mut ready)).await;
                sink.close().await;
                return;
            }
        };
        let frame = match received {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                let _ = sink.send_many(ready).await;
                return;
            }
            Err(error) => {
                let _ = sink.send_many(ready).await;
                return fail(env, sink, receiver, error.to_string()).await;
            }
        };
        match classify(frame) {
            Incoming::Call(request) => match prepare_call(call_env, calls, request) {
                Ok((call_id, mut reply)) => match reply
                    .as_mut()
                    .poll(&mut TaskContext::from_waker(Waker::noop()))
                {
                    Poll::Ready(answer) => ready.push(answer),
                    Poll::Pending => calls.spawn(&runtime, sink.clone(), call_id, reply),
                },
                Err(refusal) => ready.push(Answer::Frame(refusal)),
            },
            Incoming::Cancel(call_id) => calls.cancel(call_id),
            Incoming::Violation(reason) => {
                let _ = sink.send_many(ready).await;
                return fail(env, sink, receiver, reason).await;
            }
        }
        // Answer once the requests that arrived together are handled, and at least every
        // `BATCH` answers, so a client that keeps pipelining still hears back.
        if !ready.is_empty() && (ready.len() >= BATCH || !receiver.has_buffered()) {
            let _ = sink.send_many(std::mem::take(&mut ready)).await;
        }
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
