//! A shared-memory connection served from a thread of its own: a request is read from the ring
//! the moment it lands (the thread spins, then sleeps on the futex), its handler is polled right
//! there, and a handler that completes at once (most do) is answered from the same thread. No
//! runtime wake-up sits between a request and its reply; a handler that must wait continues as
//! a task.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use rpc_transport::{BlockingReceiver, Deadline, TransportError};

use super::ConnectionEnv;
use super::calls::Calls;
use super::dispatch::{Answer, CallEnv, Incoming, classify, prepare_call};
use super::reply::{ReplySink, error_frame};
use super::session::LINGER;
use crate::budget::{ConnectionMemory, Held, TASK_OVERHEAD};
use crate::wire::WireError;

/// How often an idle thread looks at the server's stop and kill signals on its own; the
/// connection's task also interrupts its wait the moment either fires.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Serves the connection on a new thread; returns when that thread is done.
pub(crate) async fn run(
    env: ConnectionEnv,
    calls: Arc<Calls>,
    call_env: CallEnv,
    sink: ReplySink,
    receiver: BlockingReceiver,
    memory: ConnectionMemory,
) {
    let (done, mut finished) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Handle::current();
    let (kill, stop) = (env.kill.clone(), env.stop.clone());
    let interrupter = receiver.interrupter();
    let spawned = std::thread::Builder::new()
        .name("rpc-shm-conn".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            serve(&env, &calls, &call_env, &sink, receiver, &runtime, &memory);
            calls.abort_all();
            let _ = done.send(());
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start a connection thread");
        return;
    }
    tokio::select! {
        _ = &mut finished => return,
        _ = stop.cancelled() => interrupter.interrupt(),
        _ = kill.cancelled() => {}
    }
    tokio::select! {
        _ = finished => {}
        _ = kill.cancelled() => interrupter.interrupt(),
    }
}

fn serve(
    env: &ConnectionEnv,
    calls: &Arc<Calls>,
    call_env: &CallEnv,
    sink: &ReplySink,
    mut receiver: BlockingReceiver,
    runtime: &tokio::runtime::Handle,
    memory: &ConnectionMemory,
) {
    let mut inline = TaskContext::from_waker(Waker::noop());
    // The server's signals are looked at when idle and every 64 frames when busy.
    let mut unchecked = 0u32;
    let mut last_frame = Instant::now();
    loop {
        if unchecked > 0 {
            unchecked -= 1;
        } else if env.kill.is_cancelled() {
            sink.close_blocking();
            return;
        } else if env.stop.is_cancelled() {
            let grace = Instant::now() + env.config.shutdown_grace;
            while calls.busy() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(1));
            }
            sink.close_blocking();
            return;
        } else {
            unchecked = 64;
        }
        let check = env
            .config
            .idle_timeout
            .map_or(CHECK_EVERY, |t| t.min(CHECK_EVERY));
        let frame = match receiver.recv(Deadline::After(check)) {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(TransportError::TimedOut) => {
                if env
                    .config
                    .idle_timeout
                    .is_some_and(|t| last_frame.elapsed() >= t && calls.len() == 0)
                {
                    tracing::debug!("closing a connection idle for longer than the idle timeout");
                    sink.close_blocking();
                    return;
                }
                unchecked = 0;
                continue;
            }
            Err(error) => return fail(sink, &mut receiver, error.to_string()),
        };
        last_frame = Instant::now();
        let size = frame.len() + TASK_OVERHEAD;
        let prepared = match classify(frame) {
            Incoming::Call(request) => prepare_call(call_env, calls, request),
            Incoming::Cancel(call_id) => {
                calls.cancel(call_id);
                continue;
            }
            Incoming::Violation(reason) => return fail(sink, &mut receiver, reason),
        };
        // The request's memory (a large one is a view of the peer's region, which it reuses
        // once released) now belongs to the call: a handler of owned arguments gives it back
        // once they are decoded, one that borrows them when it finishes.
        let answer = match prepared {
            Ok((call_id, mut reply)) => match reply.as_mut().poll(&mut inline) {
                Poll::Ready(answer) => answer,
                Poll::Pending => {
                    // The request lives on in a task, holding its bytes of the budget; while
                    // the budget is spent this thread reads nothing more.
                    match take_waiting(env, &receiver, memory, size) {
                        Waited::Took(held) => {
                            calls.spawn(runtime, sink.clone(), call_id, reply, Some(held));
                        }
                        // The call is dropped; the top of the loop gives the others their grace.
                        Waited::Stopped => unchecked = 0,
                        Waited::Gone => {
                            sink.close_blocking();
                            return;
                        }
                    }
                    continue;
                }
            },
            Err(refusal) => Answer::Frame(refusal),
        };
        if sink.send_blocking(answer).is_err() {
            return;
        }
    }
}

/// How a wait for the requests' budget ended.
enum Waited {
    Took(Held),
    /// The server stops gracefully.
    Stopped,
    /// The server is killed, or the peer left.
    Gone,
}

/// Takes `size` bytes of the requests' budget, waiting (in short sleeps) while running calls
/// hold it, and looking whether the server stops or the peer leaves meanwhile.
fn take_waiting(
    env: &ConnectionEnv,
    receiver: &BlockingReceiver,
    memory: &ConnectionMemory,
    size: usize,
) -> Waited {
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(held) = memory.requests.try_take(size) {
            return Waited::Took(held);
        }
        if env.kill.is_cancelled() || receiver.peer_gone() {
            return Waited::Gone;
        }
        if env.stop.is_cancelled() {
            return Waited::Stopped;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// As the async loop's `fail`: name the violation, close, and linger briefly for the peer.
fn fail(sink: &ReplySink, receiver: &mut BlockingReceiver, reason: String) {
    tracing::debug!(%reason, "closing a connection that broke the protocol");
    let violation = error_frame(0, 0, &WireError::Protocol(reason));
    let _ = sink.send_blocking(Answer::Frame(violation));
    sink.close_blocking();
    let until = Instant::now() + LINGER;
    while let Ok(Some(_)) | Err(TransportError::TimedOut) = receiver.recv(Some(until)) {
        if Instant::now() >= until {
            break;
        }
    }
}
