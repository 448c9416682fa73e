//! A shared-memory connection served from a thread of its own: a request is read from the ring
//! the moment it lands (the thread spins, then sleeps on the futex) and handed to a task on the
//! runtime, which writes its answer straight into the reply ring. The thread never runs a
//! handler, so no call waits behind another's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_transport::{BlockingReceiver, Deadline, TransportError};

use super::ConnectionEnv;
use super::calls::Calls;
use super::dispatch::{Answer, CallEnv, Incoming, classify, prepare_call};
use super::reply::{ReplySink, error_frame};
use super::session::LINGER;
use crate::budget::{ConnectionMemory, FRAME_OVERHEAD, Held, TASK_OVERHEAD};
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
        // Every call runs as a task on the runtime, so no call waits behind another's handler
        // and this thread only reads; it takes the call's bytes from the budget first, and while
        // the budget is spent it reads nothing more.
        match classify(frame) {
            Incoming::Call(call) => match prepare_call(call_env, calls, call, sink) {
                Ok(prepared) => {
                    let size = prepared.size + TASK_OVERHEAD;
                    match take_waiting(env, &receiver, memory, size) {
                        Waited::Took(held) => calls.spawn(runtime, sink.clone(), prepared, held),
                        // The call is dropped; the top of the loop gives the others their grace.
                        Waited::Stopped => unchecked = 0,
                        Waited::Gone => {
                            sink.close_blocking();
                            return;
                        }
                    }
                }
                Err(refusal) => {
                    if sink.send_blocking(Answer::Frame(refusal)).is_err() {
                        return;
                    }
                }
            },
            Incoming::Cancel(call_id) => calls.cancel(call_id),
            Incoming::Item(call_id, item) => {
                let size = item.len() + FRAME_OVERHEAD;
                match take_waiting(env, &receiver, memory, size) {
                    Waited::Took(held) => {
                        if let Err(reason) = calls.deliver(call_id, item, held) {
                            return fail(sink, &mut receiver, reason);
                        }
                    }
                    Waited::Stopped => unchecked = 0,
                    Waited::Gone => {
                        sink.close_blocking();
                        return;
                    }
                }
            }
            Incoming::End(call_id, reason) => calls.end_stream(call_id, reason),
            Incoming::Credit(call_id, bytes) => calls.grant(call_id, bytes),
            Incoming::Violation(reason) => return fail(sink, &mut receiver, reason),
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
