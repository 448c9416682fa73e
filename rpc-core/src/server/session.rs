//! The async read loop of one connection. Each handler is polled once right here: one that
//! finishes at once (most do) is answered without a task of its own, and the answers to a batch
//! of requests that arrived together leave in one write. A handler that must wait (a
//! streaming call's, as a rule) continues as a task.
//!
//! A handler that computes for long before its first `.await` holds this loop. Once it has run
//! for 2 ms (seen 2 to 4 ms after it began while handlers run), the takeover monitor (`takeover.rs`) starts a task on another worker that reads
//! the connection in the loop's place, running every call it reads as a task, until the
//! handler is done: no call waits behind another's handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use rpc_transport::FrameReceiver;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::calls::{Calls, Start};
use super::dispatch::{Answer, CallEnv, Incoming, Prepared, classify, prepare_call};
use super::ready::Ready;
use super::reply::ReplySink;
use super::session_end::{
    GraceEnd, Waited, fail, idle, reserve, stop, take_within_grace, unread_through_stop,
    until_killed,
};
use super::takeover::{self, Busy, Watched};
use super::{ConnectionEnv, ServerConfig};
use crate::budget::{ConnectionMemory, FRAME_OVERHEAD, TASK_OVERHEAD, TaskBudget};
use crate::keepalive::{Due, Watch};

/// How long a takeover task waits for a frame before it looks whether the handler is done.
const TAKEOVER_TICK: Duration = Duration::from_millis(1);

/// What the read loop and a takeover task share.
pub(crate) struct Session {
    /// Where the read loop leaves the receiving half while it runs a handler, for a takeover
    /// task to read with; empty otherwise (the loop owns it).
    lent: std::sync::Mutex<Option<FrameReceiver>>,
    /// Signalled when a takeover task gives the receiving half back.
    returned: Notify,
    busy: Busy,
    pub(crate) calls: Arc<Calls>,
    call_env: CallEnv,
    pub(crate) sink: ReplySink,
    pub(crate) memory: ConnectionMemory,
    runtime: tokio::runtime::Handle,
    pub(crate) kill: CancellationToken,
    pub(crate) stop: CancellationToken,
    pub(crate) config: Arc<ServerConfig>,
    /// Set when a takeover task ended the connection (a violation, the peer gone).
    ended: AtomicBool,
    /// When a takeover task last read a frame, for the keepalive (the read loop's own frames
    /// are noted in its `Watch`).
    heard: std::sync::Mutex<tokio::time::Instant>,
    /// Whether the client pinged us, and so answers our pings.
    answers_pings: AtomicBool,
    /// When the graceful stop's grace ends, once the connection saw the stop.
    pub(crate) grace_end: GraceEnd,
}

/// What to do after a frame.
enum Flow {
    Go,
    /// The server stops gracefully.
    Stop,
    /// The connection is over.
    End,
}

/// Serves calls until the peer leaves, breaks the protocol, or the server stops.
pub(crate) async fn run(
    env: &ConnectionEnv,
    calls: Arc<Calls>,
    call_env: CallEnv,
    sink: ReplySink,
    receiver: FrameReceiver,
    memory: ConnectionMemory,
) {
    let session = Arc::new(Session {
        lent: std::sync::Mutex::new(None),
        returned: Notify::new(),
        busy: Busy::default(),
        calls,
        call_env,
        sink,
        memory,
        runtime: tokio::runtime::Handle::current(),
        kill: env.kill.clone(),
        stop: env.stop.clone(),
        config: env.config.clone(),
        ended: AtomicBool::new(false),
        heard: std::sync::Mutex::new(tokio::time::Instant::now()),
        answers_pings: AtomicBool::new(false),
        grace_end: GraceEnd::new(env.config.shutdown_grace),
    });
    takeover::watch(session.clone());
    serve(&session, receiver).await;
    session.ended.store(true, Ordering::Release);
}

async fn serve(s: &Session, mut receiver: FrameReceiver) {
    let mut ready = Ready::default();
    let mut watch = s.config.keepalive.map(Watch::new);
    // When the client last sent something other than a keepalive ping, for the idle timeout.
    let mut active = tokio::time::Instant::now();
    // Frames read since the clock was last read: the times above are brought up to date once
    // per batch of frames, before the loop waits, rather than once per frame.
    let mut unclocked = Unclocked::default();
    loop {
        if s.ended.load(Ordering::Acquire) {
            return;
        }
        // Looked at before every frame, not only before a wait: a call that comes after a
        // stop is refused (`ShuttingDown`), and after a kill no further handler runs.
        if s.kill.is_cancelled() {
            return;
        }
        if s.stop.is_cancelled() {
            return Box::pin(stop(s, &mut receiver, ready.take())).await;
        }
        // A frame here already is taken without setting up the wait below (cancellation
        // waiters, the keepalive's timer, the clock): that per-frame cost is for waiting. At
        // least every `AT_HAND_RUN` frames the loop goes through the wait anyway, so a client
        // that keeps frames coming still lets this worker's other tasks run (the runtime's
        // cooperative budget is checked there) and the keepalive's times stay fresh.
        let at_hand = if unclocked.frames < AT_HAND_RUN {
            frame_at_hand(&mut receiver)
        } else {
            None
        };
        let received = match at_hand {
            Some(received) => Next::Frame(received),
            None => {
                unclocked.settle(&mut watch, &mut active);
                receiver.set_spinning(|| !s.calls.busy());
                wait_for_frame(s, &mut receiver, &mut watch, &mut ready, active).await
            }
        };
        let received = match received {
            Next::Frame(received) => received,
            Next::Again => continue,
            Next::Return => return,
        };
        let frame = match received {
            Ok(Some(frame)) => {
                unclocked.frames += 1;
                frame
            }
            Ok(None) => {
                let ready = ready.take();
                return Box::pin(until_killed(s, async {
                    let _ = s.sink.send_many(ready).await;
                }))
                .await;
            }
            Err(error) => {
                let ready = ready.take();
                return Box::pin(until_killed(s, async {
                    let _ = s.sink.send_many(ready).await;
                    fail(s, &mut receiver, error.to_string()).await;
                }))
                .await;
            }
        };
        let incoming = classify(frame);
        if !matches!(incoming, Incoming::Ping(_) | Incoming::Pong) {
            unclocked.active = true;
        }
        let flow = match incoming {
            Incoming::Call(call) => match prepare_call(&s.call_env, &s.calls, call, &s.sink) {
                Ok(prepared) => {
                    // The handler runs right here; while it does, a takeover task may read.
                    let (flow, back) = inline(s, receiver, prepared, &mut ready).await;
                    receiver = back;
                    if let Some(watch) = watch.as_mut() {
                        // Frames a takeover task read meanwhile.
                        watch.heard_at(s.last_heard());
                    }
                    flow
                }
                Err(refusal) => {
                    ready.push(s.sink.prepare(Answer::Frame(refusal)));
                    Flow::Go
                }
            },
            // Boxed, as the rarer paths below: the loop's own future stays small, and so does
            // an idle connection.
            other => Box::pin(handle(s, &mut receiver, &mut ready, other)).await,
        };
        match flow {
            Flow::Go => {}
            Flow::Stop => return Box::pin(stop(s, &mut receiver, ready.take())).await,
            Flow::End => return,
        }
        // Answer once the requests that arrived together are handled, and at least every
        // `BATCH` answers or `BATCH_BYTES` (`ready.rs`), so a client that keeps pipelining
        // still hears back and the answers held here stay small. Sending waits while the
        // replies' budget is spent (the peer does not read), and so does this loop: the peer's
        // further requests stay where they are.
        if ready.is_due(receiver.has_buffered()) {
            // Not cut short by a graceful stop, which delivers these answers too.
            match unread_through_stop(s, &receiver, s.sink.send_many(ready.take())).await {
                Waited::Done(_) => {}
                Waited::Stopped => return Box::pin(stop(s, &mut receiver, Vec::new())).await,
                Waited::Killed | Waited::PeerGone => return,
            }
        }
    }
}

/// Sends the answers held back, then closes our direction (unless the server is killed
/// meanwhile): how the loop lets a lapsed or idle connection go.
async fn answer_and_close(s: &Session, ready: &mut Ready) {
    let ready = ready.take();
    until_killed(s, async {
        let _ = s.sink.send_many(ready).await;
        s.sink.close().await;
    })
    .await;
}

/// The next frame if it is here already and taking it needs no wait: one look (a receive
/// polled once, and dropped if it would wait, as receives may be). `None`: wait for it.
fn frame_at_hand(receiver: &mut FrameReceiver) -> Option<Received> {
    if !receiver.has_buffered() {
        return None;
    }
    let mut cx = TaskContext::from_waker(Waker::noop());
    match std::pin::pin!(receiver.recv()).poll(&mut cx) {
        Poll::Ready(received) => Some(received),
        Poll::Pending => None,
    }
}

/// What a receive comes to: a frame, the end, or an error.
type Received = Result<Option<rpc_transport::Frame>, rpc_transport::TransportError>;

/// What waiting for the next frame came to.
enum Next {
    /// The receiver's answer: a frame, the end, or an error.
    Frame(Received),
    /// Something else was done meanwhile (a keepalive ping sent): look again.
    Again,
    /// The connection is over (killed, stopped, lapsed or idle), and its end was seen to.
    Return,
}

/// Waits for the next frame while watching for a kill or stop, the keepalive and the idle
/// timeout; what else came first is dealt with here.
async fn wait_for_frame(
    s: &Session,
    receiver: &mut FrameReceiver,
    watch: &mut Option<Watch>,
    ready: &mut Ready,
    active: tokio::time::Instant,
) -> Next {
    tokio::select! {
            biased;
            _ = s.kill.cancelled() => Next::Return,
            _ = s.stop.cancelled() => {
                Box::pin(stop(s, receiver, ready.take())).await;
                Next::Return
            }
            received = receiver.recv() => Next::Frame(received),
            due = keepalive_due(watch), if s.peer_answers_pings() => {
                match due {
                    Due::Ping(ping) => {
                        ready.push(s.sink.prepare(Answer::Frame(ping)));
                        let timeout = watch.as_ref().map_or(Duration::ZERO, Watch::timeout);
                        let batch = s.sink.send_many(ready.take());
                        let ping = unread_through_stop(s, receiver, batch);
                        match tokio::time::timeout(timeout, ping).await {
                            Ok(Waited::Done(_)) => Next::Again,
                            Ok(Waited::Stopped) => {
                                Box::pin(stop(s, receiver, Vec::new())).await;
                                Next::Return
                            }
                            Ok(Waited::Killed | Waited::PeerGone) => Next::Return,
                            Err(_) => {
                                // Not even the ping could be written within the timeout: the
                                // client reads nothing. A frame may be half written: just go.
                                tracing::info!("closing a connection whose client reads nothing, not even a ping");
                                Next::Return
                            }
                        }
                    }
                    Due::Lapsed => {
                        let lapsed = watch.as_ref().map(Watch::lapsed).unwrap_or_default();
                        tracing::info!(reason = %lapsed, "closing a connection whose client stopped answering");
                        Box::pin(answer_and_close(s, ready)).await;
                        Next::Return
                    }
                }
            }
            _ = idle(s.config.idle_timeout, &s.calls, active) => {
                tracing::debug!("closing a connection idle for longer than the idle timeout");
                Box::pin(answer_and_close(s, ready)).await;
                Next::Return
            }
    }
}

/// The most frames taken at hand (see `frame_at_hand`) before the loop goes through its wait.
const AT_HAND_RUN: u32 = 64;

/// Frames read since the loop last read the clock for its keepalive and idle times: how many,
/// and whether any besides keepalive pings and pongs.
#[derive(Default)]
struct Unclocked {
    frames: u32,
    active: bool,
}

impl Unclocked {
    /// Brings the keepalive's last-heard time and the idle timeout's last activity up to now
    /// if frames came since the last call (the loop is about to wait).
    fn settle(&mut self, watch: &mut Option<Watch>, active: &mut tokio::time::Instant) {
        if self.frames == 0 {
            return;
        }
        let now = tokio::time::Instant::now();
        if let Some(watch) = watch.as_mut() {
            watch.heard_at(now);
        }
        if self.active {
            *active = now;
        }
        *self = Unclocked::default();
    }
}

/// Polls a call's handler once, right here, marked as running for the takeover monitor; an
/// answer joins the batch, a handler that must wait becomes a task. The receiving half is lent
/// out meanwhile, for a takeover task; it comes back once any such task gives it back.
async fn inline(
    s: &Session,
    receiver: FrameReceiver,
    mut prepared: Prepared,
    ready: &mut Ready,
) -> (Flow, FrameReceiver) {
    // A streaming call is registered first, so its stream's frames find it, and its handler
    // has begun (a watch has subscribed) before the next request is read.
    let registered = !prepared.streams.is_empty();
    // Taken with the streams at registration: whether the call sends items.
    let sends_items = prepared.streams.credit.is_some();
    if registered {
        s.calls.register_streams(&mut prepared);
    } else {
        s.calls.polling_inline(prepared.call_id);
    }
    *s.lent() = Some(receiver);
    let polled = s.busy.run(|| {
        let mut cx = TaskContext::from_waker(Waker::noop());
        prepared.poll_inline(&mut cx)
    });
    match polled {
        Poll::Ready(answer) => {
            let receiver = s.reclaim().await;
            let cancelled = if registered {
                s.calls.finish_registered(&prepared)
            } else {
                s.calls.polled_inline()
            };
            if !cancelled {
                ready.push(s.sink.prepare(answer));
            }
            (Flow::Go, receiver)
        }
        Poll::Pending => {
            // A task from now on, before the receiver comes back and before its budget is
            // taken: a takeover reader, or the answers waiting for the budget, may be waiting
            // for what this handler holds (the sender, mid-write), and polled with a no-op
            // waker the handler would not run again until it became a task.
            let size = prepared.size + TASK_OVERHEAD;
            if let Some(held) = s.memory.requests.try_take(size) {
                let budget = TaskBudget::held(held);
                s.calls.spawn(
                    &s.runtime,
                    s.sink.clone(),
                    prepared,
                    budget,
                    Start::Begun { sends_items },
                );
                return (Flow::Go, s.reclaim().await);
            }
            // The budget is spent: the handler runs on, and this loop reads no further until
            // the task's bytes are taken (and handed to it).
            let (task, taker) = TaskBudget::later();
            let went_on = s.calls.spawn(
                &s.runtime,
                s.sink.clone(),
                prepared,
                task,
                Start::Begun { sends_items },
            );
            let receiver = s.reclaim().await;
            if !went_on {
                // Cancelled while polled: its task is gone, and owed nothing.
                return (Flow::Go, receiver);
            }
            let flow = match Box::pin(reserve(s, &receiver, ready, size)).await {
                Ok(held) => {
                    taker.fill(held);
                    Flow::Go
                }
                Err(Waited::Stopped) => Flow::Stop,
                Err(_) => Flow::End,
            };
            (flow, receiver)
        }
    }
}

/// Runs a prepared call as a task once its bytes are taken from the budget.
async fn spawn(s: &Session, receiver: &FrameReceiver, ready: &mut Ready, call: Prepared) -> Flow {
    match reserve(s, receiver, ready, call.size + TASK_OVERHEAD).await {
        Ok(held) => {
            let budget = TaskBudget::held(held);
            s.calls
                .spawn(&s.runtime, s.sink.clone(), call, budget, Start::Fresh);
            Flow::Go
        }
        Err(Waited::Stopped) => {
            // Never run: refused as a call that comes during the shutdown is.
            ready.push(s.sink.prepare(call.shutting_down()));
            Flow::Stop
        }
        Err(_) => Flow::End,
    }
}

/// Handles a frame other than a call to poll inline: a call to run as a task (in a takeover
/// task), a cancel, a stream's item, end or credit, or a violation.
async fn handle(
    s: &Session,
    receiver: &mut FrameReceiver,
    ready: &mut Ready,
    incoming: Incoming,
) -> Flow {
    match incoming {
        Incoming::Call(call) => match prepare_call(&s.call_env, &s.calls, call, &s.sink) {
            Ok(prepared) => spawn(s, receiver, ready, prepared).await,
            Err(refusal) => {
                ready.push(s.sink.prepare(Answer::Frame(refusal)));
                Flow::Go
            }
        },
        Incoming::Cancel(call_id) => {
            s.calls.cancel(call_id);
            Flow::Go
        }
        Incoming::Item(call_id, item) => {
            let size = item.len() + FRAME_OVERHEAD;
            // Delivered even when the server stops meanwhile, if its call runs on in the grace.
            let (held, then) = match reserve(s, receiver, ready, size).await {
                Ok(held) => (held, Flow::Go),
                Err(Waited::Stopped) => match take_within_grace(s, receiver, call_id, size).await {
                    Waited::Done(Some(held)) => (held, Flow::Stop),
                    Waited::Done(None) | Waited::Stopped => return Flow::Stop,
                    Waited::Killed | Waited::PeerGone => return Flow::End,
                },
                Err(_) => return Flow::End,
            };
            match s.calls.deliver(call_id, item, held) {
                Ok(()) => then,
                Err(reason) => violation(s, receiver, ready, reason).await,
            }
        }
        Incoming::End(call_id, reason) => {
            s.calls.end_stream(call_id, reason);
            Flow::Go
        }
        Incoming::Credit(call_id, bytes) => {
            s.calls.grant(call_id, bytes);
            Flow::Go
        }
        Incoming::Ping(nonce) => {
            s.answers_pings.store(true, Ordering::Release);
            let pong = crate::keepalive::pong_frame(nonce);
            ready.push(s.sink.prepare(Answer::Frame(pong)));
            Flow::Go
        }
        Incoming::Pong => Flow::Go,
        Incoming::Violation(reason) => violation(s, receiver, ready, reason).await,
    }
}

/// Ends the connection for a protocol violation, after what is ready.
async fn violation(
    s: &Session,
    receiver: &mut FrameReceiver,
    ready: &mut Ready,
    reason: String,
) -> Flow {
    let ready = ready.take();
    until_killed(s, async {
        let _ = s.sink.send_many(ready).await;
        fail(s, receiver, reason).await;
    })
    .await;
    s.ended.store(true, Ordering::Release);
    Flow::End
}

impl Session {
    /// Notes that a takeover task read a frame (for the keepalive).
    fn heard_now(&self) {
        *self.heard.lock().unwrap_or_else(|p| p.into_inner()) = tokio::time::Instant::now();
    }

    /// When a takeover task last read a frame.
    pub(crate) fn last_heard(&self) -> tokio::time::Instant {
        *self.heard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the client answers pings (it pinged us).
    pub(crate) fn peer_answers_pings(&self) -> bool {
        self.answers_pings.load(Ordering::Acquire)
    }

    fn lent(&self) -> std::sync::MutexGuard<'_, Option<FrameReceiver>> {
        self.lent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the receiving half back from where it was lent, waiting while a takeover task
    /// reads with it.
    async fn reclaim(&self) -> FrameReceiver {
        loop {
            let returned = self.returned.notified();
            if let Some(receiver) = self.lent().take() {
                return receiver;
            }
            returned.await;
        }
    }
}

impl Watched for Session {
    fn busy(&self) -> &Busy {
        &self.busy
    }

    fn take_over(self: Arc<Self>) {
        let runtime = self.runtime.clone();
        runtime.spawn(take_over(self));
    }
}

/// Reads the connection while its read loop runs a handler, running every call it reads as a
/// task; refusals go out at once.
async fn take_over(s: Arc<Session>) {
    {
        let Some(mut receiver) = s.lent().take() else {
            // The read loop took it back already: the handler is done.
            s.busy.taken_over.store(false, Ordering::Release);
            return;
        };
        let mut ready = Ready::default();
        // Not after a graceful stop either (as a thread's takeover): the read loop winds the
        // connection down once the handler is done, refusing new calls.
        while s.busy.is_running()
            && !s.ended.load(Ordering::Acquire)
            && !s.kill.is_cancelled()
            && !s.stop.is_cancelled()
        {
            let frame = match tokio::time::timeout(TAKEOVER_TICK, receiver.recv()).await {
                Err(_) => continue,
                Ok(Ok(Some(frame))) => {
                    s.heard_now();
                    frame
                }
                // The peer is gone, or the transport broke: the read loop finds out when it
                // reads again.
                Ok(Ok(None) | Err(_)) => break,
            };
            let flow = handle(&s, &mut receiver, &mut ready, classify(frame)).await;
            // Nothing to answer (a credit grant, a stream's item): no send, so this reader
            // never waits for the sender when it has nothing to write.
            let answers = ready.take();
            if !answers.is_empty() {
                // Bounded as the read loop's own sends are: a peer that reads nothing must
                // not keep the receiver from the loop, nor the server from its kill.
                let sent = unread_through_stop(&s, &receiver, s.sink.send_many(answers)).await;
                if !matches!(sent, Waited::Done(_)) {
                    break;
                }
            }
            if !matches!(flow, Flow::Go) {
                break;
            }
        }
        *s.lent() = Some(receiver);
        s.returned.notify_one();
    }
    s.busy.taken_over.store(false, Ordering::Release);
}

/// What the keepalive's watch says next; never, without one.
async fn keepalive_due(watch: &mut Option<Watch>) -> Due {
    match watch {
        Some(watch) => watch.due().await,
        None => std::future::pending().await,
    }
}
