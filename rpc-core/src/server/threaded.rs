//! A shared-memory connection served from a thread of its own: a request is read from the ring
//! the moment it lands (the thread spins, then sleeps on the futex), its handler is polled right
//! there, and a handler that completes at once (most do) is answered from the same thread. No
//! runtime wake-up sits between a request and its reply. A handler that must wait (a
//! streaming call's, as a rule) continues as a task.
//!
//! A handler that computes for long before its first `.await` holds this thread, so it cannot
//! read: once it has run for `TAKEOVER_AFTER` (2 ms; seen 2 to 4 ms after it began while
//! handlers run), a takeover thread reads the
//! connection in its place, running every call it reads as a task, until the handler is done
//! (see `takeover.rs`). So no call waits behind another's handler.

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use rpc_transport::spin::coarse_now;
use rpc_transport::{BlockingReceiver, Deadline, TransportError};
use tokio_util::sync::CancellationToken;

use super::calls::{Calls, Start};
use super::dispatch::{Answer, CallEnv, Incoming, Prepared, classify, prepare_call};
use super::reply::{ReplySink, error_frame};
use super::session_end::{GraceEnd, LINGER};
use super::takeover::{self, Busy};
use super::{ConnectionEnv, ServerConfig};
use crate::budget::{ConnectionMemory, FRAME_OVERHEAD, Held, TASK_OVERHEAD, TaskBudget};
use crate::wire::WireError;

/// How often an idle thread looks at the server's stop and kill signals on its own; the
/// connection's task also interrupts its wait the moment either fires.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// What the connection's thread and a takeover thread share.
pub(crate) struct Conn {
    /// Whoever reads holds it: the connection's thread, or a takeover thread while the
    /// connection's thread runs a handler.
    receiver: Mutex<BlockingReceiver>,
    /// Since when the connection's thread has been running a handler, if it is.
    pub(crate) busy: Busy,
    calls: Arc<Calls>,
    call_env: CallEnv,
    sink: ReplySink,
    memory: ConnectionMemory,
    pub(crate) runtime: tokio::runtime::Handle,
    kill: CancellationToken,
    stop: CancellationToken,
    config: Arc<ServerConfig>,
    /// Set when either thread ended the connection (a protocol violation, the peer gone).
    ended: std::sync::atomic::AtomicBool,
    /// When the graceful stop's grace ends, once the connection saw the stop.
    grace_end: GraceEnd,
}

impl Conn {
    pub(crate) fn receiver(&self) -> MutexGuard<'_, BlockingReceiver> {
        self.receiver.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
            || self.kill.is_cancelled()
            || self.stop.is_cancelled()
    }

    fn end(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::Release);
    }
}

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
    let (kill, stop) = (env.kill.clone(), env.stop.clone());
    let interrupter = receiver.interrupter();
    let conn = Arc::new(Conn {
        receiver: Mutex::new(receiver),
        busy: Busy::default(),
        calls,
        call_env,
        sink,
        memory,
        runtime: tokio::runtime::Handle::current(),
        kill: env.kill.clone(),
        stop: env.stop.clone(),
        config: env.config.clone(),
        ended: Default::default(),
        grace_end: GraceEnd::new(env.config.shutdown_grace),
    });
    takeover::watch(conn.clone());
    let spawned = std::thread::Builder::new()
        .name("rpc-shm-conn".into())
        .spawn(move || {
            let _runtime = conn.runtime.enter();
            serve(&conn);
            conn.end();
            conn.calls.abort_all();
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

fn serve(conn: &Conn) {
    let mut inline = TaskContext::from_waker(Waker::noop());
    // The server's signals are looked at when idle and every 64 frames when busy.
    let mut unchecked = 0u32;
    // On the coarse clock (milliseconds, for the idle timeout): read for every frame.
    let mut last_frame = coarse_now();
    loop {
        if conn.ended.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        if unchecked > 0 {
            unchecked -= 1;
        } else if conn.kill.is_cancelled() {
            conn.sink.close_blocking();
            return;
        } else if conn.stop.is_cancelled() {
            return wind_down(conn);
        } else {
            unchecked = 64;
        }
        let check = conn
            .config
            .idle_timeout
            .map_or(CHECK_EVERY, |t| t.min(CHECK_EVERY));
        let mut receiver = conn.receiver();
        let frame = match receiver.recv(Deadline::After(check)) {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(TransportError::TimedOut) => {
                if conn.config.idle_timeout.is_some_and(|t| {
                    coarse_now().saturating_sub(last_frame) >= t && conn.calls.len() == 0
                }) {
                    tracing::debug!("closing a connection idle for longer than the idle timeout");
                    conn.sink.close_blocking();
                    return;
                }
                unchecked = 0;
                continue;
            }
            Err(error) => return fail(conn, &mut receiver, error.to_string()),
        };
        let incoming = classify(frame);
        // A keepalive's ping is no activity: it must not hold an idle connection open.
        if !matches!(incoming, Incoming::Ping(_) | Incoming::Pong) {
            last_frame = coarse_now();
        }
        let prepared = match incoming {
            Incoming::Call(call) => prepare_call(&conn.call_env, &conn.calls, call, &conn.sink),
            other => match handle(conn, &mut receiver, other) {
                Flow::Go => continue,
                Flow::Recheck => {
                    unchecked = 0;
                    continue;
                }
                Flow::End => return,
            },
        };
        let mut prepared = match prepared {
            Ok(prepared) => prepared,
            Err(refusal) => {
                if conn.sink.send_blocking(Answer::Frame(refusal)).is_err() {
                    return;
                }
                continue;
            }
        };
        // A streaming call is registered first, so its stream's frames find it, and its
        // handler has begun (a watch has subscribed) before the next request is read.
        let registered = !prepared.streams.is_empty();
        // Taken with the streams at registration: whether the call sends items.
        let sends_items = prepared.streams.credit.is_some();
        if registered {
            conn.calls.register_streams(&mut prepared);
        } else {
            conn.calls.polling_inline(prepared.call_id);
        }
        // The handler runs right here: while it does, a takeover reader may read.
        drop(receiver);
        let polled = conn.busy.run(|| prepared.poll_inline(&mut inline));
        let answer = match polled {
            Poll::Ready(answer) => {
                let cancelled = if registered {
                    conn.calls.finish_registered(&prepared)
                } else {
                    // Once a takeover reader is done, if one started: it must not admit this
                    // id meanwhile. (One started later sees no handler running, and stops.)
                    if conn
                        .busy
                        .taken_over
                        .load(std::sync::atomic::Ordering::Acquire)
                    {
                        drop(conn.receiver());
                    }
                    conn.calls.polled_inline()
                };
                if cancelled {
                    // The client no longer waits for it.
                    continue;
                }
                answer
            }
            Poll::Pending => {
                // A task at once, before the receiver is taken back from a takeover reader
                // that may be waiting for what this handler holds; its bytes are taken after.
                let Some((taker, size)) = spawn_begun(conn, prepared, sends_items) else {
                    continue;
                };
                let receiver = conn.receiver();
                match take_waiting(conn, &receiver, size, OnStop::GiveUp) {
                    Waited::Took(held) => taker.fill(held),
                    Waited::Stopped => unchecked = 0,
                    Waited::Gone => {
                        gone(conn);
                        return;
                    }
                }
                continue;
            }
        };
        if conn.sink.send_blocking(answer).is_err() {
            conn.end();
            return;
        }
    }
}

/// What to do after a frame.
pub(crate) enum Flow {
    /// Read on.
    Go,
    /// Read on, looking at the server's signals first.
    Recheck,
    /// The connection is over.
    End,
}

/// Graceful shutdown: running calls get the grace period, and the connection is still read
/// meanwhile for what they need (their streams' items, ends and credit, and cancels); a new
/// call is refused with `ShuttingDown`. Then our direction closes.
fn wind_down(conn: &Conn) {
    let mut receiver = conn.receiver();
    let mut reading = true;
    while conn.calls.busy() && !conn.grace_end.passed() && !conn.kill.is_cancelled() {
        if !reading {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        match receiver.recv(Deadline::After(Duration::from_millis(1))) {
            Ok(Some(frame)) => match classify(frame) {
                Incoming::Call(call) => {
                    let (method, call_id) = call.ids();
                    let refusal = error_frame(method, call_id, &WireError::ShuttingDown);
                    let _ = conn.sink.send_blocking(Answer::Frame(refusal));
                }
                other => reading = !matches!(handle(conn, &mut receiver, other), Flow::End),
            },
            Err(TransportError::TimedOut) => {}
            Ok(None) | Err(_) => reading = false,
        }
    }
    conn.sink.close_blocking();
}

/// Handles a frame that is not a call to poll inline: a call to run as a task (from a takeover
/// thread), a cancel, a stream's item, end or credit, or a violation.
pub(crate) fn handle(conn: &Conn, receiver: &mut BlockingReceiver, incoming: Incoming) -> Flow {
    match incoming {
        Incoming::Call(call) => match prepare_call(&conn.call_env, &conn.calls, call, &conn.sink) {
            Ok(prepared) => spawn(conn, receiver, prepared),
            Err(refusal) => match conn.sink.send_blocking(Answer::Frame(refusal)) {
                Ok(()) => Flow::Go,
                Err(_) => {
                    conn.end();
                    Flow::End
                }
            },
        },
        Incoming::Cancel(call_id) => {
            conn.calls.cancel(call_id);
            Flow::Go
        }
        Incoming::Item(call_id, item) => {
            let size = item.len() + FRAME_OVERHEAD;
            // Delivered even when the server stops meanwhile, if its call runs on in the grace.
            let on_stop = match conn.calls.takes_items(call_id) {
                true => OnStop::WaitOutGrace,
                false => OnStop::GiveUp,
            };
            match take_waiting(conn, receiver, size, on_stop) {
                Waited::Took(held) => match conn.calls.deliver(call_id, item, held) {
                    // The stop came during the wait: the loop looks at it before reading on.
                    Ok(()) if conn.stop.is_cancelled() => Flow::Recheck,
                    Ok(()) => Flow::Go,
                    Err(reason) => {
                        fail(conn, receiver, reason);
                        Flow::End
                    }
                },
                Waited::Stopped => Flow::Recheck,
                Waited::Gone => {
                    conn.sink.close_blocking();
                    conn.end();
                    Flow::End
                }
            }
        }
        Incoming::End(call_id, reason) => {
            conn.calls.end_stream(call_id, reason);
            Flow::Go
        }
        Incoming::Credit(call_id, bytes) => {
            conn.calls.grant(call_id, bytes);
            Flow::Go
        }
        Incoming::Ping(nonce) => {
            // Answered, never initiated: this transport sees a dead peer itself.
            let pong = crate::keepalive::pong_frame(nonce);
            match conn.sink.send_blocking(Answer::Frame(pong)) {
                Ok(()) => Flow::Go,
                Err(_) => Flow::End,
            }
        }
        Incoming::Pong => Flow::Go,
        Incoming::Violation(reason) => {
            fail(conn, receiver, reason);
            Flow::End
        }
    }
}

/// Runs a prepared call as a task, once its bytes are taken from the budget.
fn spawn(conn: &Conn, receiver: &BlockingReceiver, prepared: Prepared) -> Flow {
    let size = prepared.size + TASK_OVERHEAD;
    match take_waiting(conn, receiver, size, OnStop::GiveUp) {
        Waited::Took(held) => {
            let budget = TaskBudget::held(held);
            let sink = conn.sink.clone();
            conn.calls
                .spawn(&conn.runtime, sink, prepared, budget, Start::Fresh);
            Flow::Go
        }
        // Never run: refused as a call that comes during the shutdown is; the top of the
        // loop gives the others their grace.
        Waited::Stopped => match conn.sink.send_blocking(prepared.shutting_down()) {
            Ok(()) => Flow::Recheck,
            Err(_) => gone(conn),
        },
        Waited::Gone => gone(conn),
    }
}

/// Runs a call whose handler has begun (polled inline) as a task at once: it may hold what
/// frees the budget (its inbox's items, the connection's sender), and unpolled it would never
/// let go. Its bytes are taken now if they are free; otherwise the caller takes them (without
/// reading further) and hands them over: the budget to fill, and how many bytes (`None` too
/// when the call was cancelled while polled).
fn spawn_begun(conn: &Conn, prepared: Prepared, sends_items: bool) -> Option<(TaskBudget, usize)> {
    let size = prepared.size + TASK_OVERHEAD;
    let (task, owed) = match conn.memory.requests.try_take(size) {
        Some(held) => (TaskBudget::held(held), None),
        None => {
            let (task, taker) = TaskBudget::later();
            (task, Some((taker, size)))
        }
    };
    let sink = conn.sink.clone();
    let went_on = conn.calls.spawn(
        &conn.runtime,
        sink,
        prepared,
        task,
        Start::Begun { sends_items },
    );
    // Cancelled while polled: its task is gone, and owed nothing.
    owed.filter(|_| went_on)
}

/// The server is killed, or the peer left: the connection ends.
fn gone(conn: &Conn) -> Flow {
    conn.sink.close_blocking();
    conn.end();
    Flow::End
}

/// How a wait for the requests' budget ended.
enum Waited {
    Took(Held),
    /// The server stops gracefully.
    Stopped,
    /// The server is killed, or the peer left.
    Gone,
}

/// What a wait for the requests' budget does when the server stops gracefully.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnStop {
    /// Ends at once ([`Waited::Stopped`]): for a call that has not begun.
    GiveUp,
    /// Waits on until the grace ends (or no call runs): for a frame a running call needs (a
    /// stream's item), as running calls go on through the grace and free memory as they
    /// finish.
    WaitOutGrace,
}

/// Takes `size` bytes of the requests' budget, waiting (in short sleeps) while running calls
/// hold it, and looking whether the server stops (see [`OnStop`]) or the peer leaves meanwhile.
fn take_waiting(conn: &Conn, receiver: &BlockingReceiver, size: usize, on_stop: OnStop) -> Waited {
    let mut pause = Duration::from_micros(50);
    loop {
        if let Some(held) = conn.memory.requests.try_take(size) {
            return Waited::Took(held);
        }
        if conn.kill.is_cancelled() || receiver.peer_gone() {
            return Waited::Gone;
        }
        if conn.stop.is_cancelled()
            && (on_stop == OnStop::GiveUp || conn.grace_end.passed() || !conn.calls.busy())
        {
            return Waited::Stopped;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// As the async loop's `fail`: name the violation, close, and linger briefly for the peer.
fn fail(conn: &Conn, receiver: &mut BlockingReceiver, reason: String) {
    conn.end();
    tracing::debug!(%reason, "closing a connection that broke the protocol");
    let violation = error_frame(0, 0, &WireError::Protocol(reason));
    let _ = conn.sink.send_blocking(Answer::Frame(violation));
    conn.sink.close_blocking();
    let until = Instant::now() + LINGER;
    while let Ok(Some(_)) | Err(TransportError::TimedOut) = receiver.recv(Some(until)) {
        if Instant::now() >= until {
            break;
        }
    }
}
