//! The calls running on one connection, by call id, so a `Cancel` can abort one, a shutdown
//! can wait for them, and a connection that ends lets go of its admission only once its
//! aborted calls are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dispatch::{CallStreams, Prepared};
use super::reply::ReplySink;
use crate::budget::{Held, TaskBudget};
use crate::error::RpcError;
use crate::wire::WireError;

/// A running call: how to stop its handler (a `Cancel` from the client), and how to drop its
/// whole task (the connection is gone).
struct Running {
    /// Which call this is: an id freed by a `Cancel` may be used again while the first
    /// call's task still ends, and that task must not take the new call's entry with it.
    serial: u64,
    cancel: CancellationToken,
    /// `None` while the call is polled inline, before it has a task.
    abort: Option<AbortHandle>,
    streams: CallStreams,
}

#[derive(Default)]
pub(crate) struct Calls {
    running: Mutex<HashMap<u64, Running>>,
    idle: Notify,
    /// Every call task, until its future is dropped (finished or aborted).
    tasks: TaskTracker,
    /// The serial of the next call entered in the table.
    next_serial: AtomicU64,
    /// The call whose handler the read loop polls in place now, which is in no table: a
    /// takeover reader must not admit a second call with its id, counts it as running, and
    /// can cancel it.
    inline: InlineCall,
}

/// How a call comes to [`Calls::spawn`].
#[derive(Clone, Copy)]
pub(crate) enum Start {
    /// Read by a takeover reader and never polled: it waits for room among the answers
    /// before it runs.
    Fresh,
    /// Polled in place first, where it had to wait. `sends_items`: a server-streaming call,
    /// which may be the outbox's writer, mid-write, and so hold what makes room among the
    /// answers; it does not wait for that room, or it would stay unpolled for good.
    Begun { sends_items: bool },
}

/// A call entered in the table before its inline poll (a streaming call): how to stop it,
/// and which entry is its own.
pub(crate) struct Registered {
    cancel: CancellationToken,
    serial: u64,
}

/// The id of the call polled in place, if one is, and whether a `Cancel` came for it
/// meanwhile: atomics, so the read loop's fast path takes no lock for it. What orders them is
/// the receiver's hand-over, not the atomics' orderings: the read loop marks a call before it
/// lends the receiver out (or lets go of its lock), a takeover reader (the only one to read
/// while a call is polled in place) looks at the mark only while it holds the receiver, and
/// the read loop marks the next call only once it has the receiver back. A `Cancel` handled
/// after the clear finds nothing marked, as one that comes after the answer.
#[derive(Default)]
struct InlineCall {
    polled: AtomicBool,
    call_id: AtomicU64,
    /// Set by [`Calls::cancel`], under the table's lock.
    cancelled: AtomicBool,
}

impl InlineCall {
    /// Whether call `call_id` is the one polled in place.
    fn is(&self, call_id: u64) -> bool {
        self.polled.load(Ordering::Acquire) && self.call_id.load(Ordering::Relaxed) == call_id
    }

    /// The id the call polled in place holds: none once it was cancelled, which frees its
    /// id and its place among the calls in flight, as for a call in the table.
    fn holds(&self) -> Option<u64> {
        let held = self.polled.load(Ordering::Acquire) && !self.cancelled.load(Ordering::Acquire);
        held.then(|| self.call_id.load(Ordering::Relaxed))
    }

    /// Unmarks it: whether it was cancelled.
    fn clear(&self) -> bool {
        self.polled.store(false, Ordering::SeqCst);
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl Calls {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls running now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether a new call `call_id` may start: `Err(TooManyCalls)` at `limit` running calls,
    /// `Err(BadRequest)` when that id is already running. One look at the table for both.
    pub(crate) fn admit(&self, call_id: u64, limit: usize) -> Result<(), WireError> {
        let running = self.lock();
        let inline = self.inline.holds();
        if running.len() + usize::from(inline.is_some()) >= limit {
            return Err(WireError::TooManyCalls(limit as u32));
        }
        if running.contains_key(&call_id) || inline == Some(call_id) {
            return Err(WireError::BadRequest(format!(
                "call id {call_id} is already in flight on this connection"
            )));
        }
        Ok(())
    }

    /// Marks call `call_id` as polled in place (it is in no table meanwhile), until
    /// [`Calls::polled_inline`] or [`Calls::spawn`].
    pub(crate) fn polling_inline(&self, call_id: u64) {
        self.inline.call_id.store(call_id, Ordering::Relaxed);
        self.inline.cancelled.store(false, Ordering::Relaxed);
        self.inline.polled.store(true, Ordering::Release);
    }

    /// The call polled in place has answered: whether it was cancelled meanwhile (its answer
    /// is not sent then). (One that goes on as a task is unmarked by [`Calls::spawn`].)
    pub(crate) fn polled_inline(&self) -> bool {
        self.inline.clear()
    }

    /// Registers a streaming call before its handler is first polled inline, so its stream's
    /// frames find it (the connection may be read meanwhile, by a takeover reader); the call's
    /// cancellation token goes with it to its task.
    pub(crate) fn register_streams(&self, prepared: &mut Prepared) {
        let cancel = CancellationToken::new();
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let streams = prepared.take_streams();
        prepared.registered = Some(Registered {
            cancel: cancel.clone(),
            serial,
        });
        self.lock().insert(
            prepared.call_id,
            Running {
                serial,
                cancel,
                abort: None,
                streams,
            },
        );
    }

    /// The registered call `prepared` answered inline: whether it was cancelled meanwhile
    /// (its answer is not sent then).
    pub(crate) fn finish_registered(&self, prepared: &Prepared) -> bool {
        match &prepared.registered {
            Some(registered) => {
                self.finish(prepared.call_id, registered.serial);
                registered.cancel.is_cancelled()
            }
            None => false,
        }
    }

    /// Call `call_id` (entered as `serial`) is done: answered inline, or its task is about to
    /// send its answer. A newer call with the same id keeps its entry.
    fn finish(&self, call_id: u64, serial: u64) {
        let mut running = self.lock();
        if running
            .get(&call_id)
            .is_some_and(|call| call.serial == serial)
        {
            running.remove(&call_id);
        }
        if running.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Stops call `call_id`'s handler if it runs. A call already sending its answer finishes
    /// sending: it may be writing other calls' answers too, which must not be cut short.
    pub(crate) fn cancel(&self, call_id: u64) {
        let mut running = self.lock();
        if let Some(call) = running.remove(&call_id) {
            call.cancel.cancel();
        } else if self.inline.is(call_id) {
            // Polled in place: it stops when it would become a task, and its answer, if it
            // makes one in place, is not sent.
            self.inline.cancelled.store(true, Ordering::SeqCst);
        }
        if running.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Hands an item of the client's stream to call `call_id`. An item for a call that has
    /// ended is dropped (it was sent within credit); `Err` when the client broke the protocol
    /// (items for a call that takes none, or beyond its credit).
    pub(crate) fn deliver(
        &self,
        call_id: u64,
        frame: rpc_transport::Frame,
        held: Held,
    ) -> Result<(), String> {
        let running = self.lock();
        let Some(call) = running.get(&call_id) else {
            return Ok(());
        };
        match &call.streams.inbox {
            Some(inbox) => inbox.deliver(frame, Some(held)),
            None => Err(format!(
                "a stream item for call {call_id}, which takes no stream"
            )),
        }
    }

    /// Whether call `call_id` runs and takes a stream of the client's items.
    pub(crate) fn takes_items(&self, call_id: u64) -> bool {
        self.lock()
            .get(&call_id)
            .is_some_and(|call| call.streams.inbox.is_some())
    }

    /// Ends the client's stream of call `call_id` (`reason`: why its producer failed).
    pub(crate) fn end_stream(&self, call_id: u64, reason: Option<String>) {
        let running = self.lock();
        let Some(streams) = running.get(&call_id).map(|call| &call.streams) else {
            return;
        };
        if let Some(inbox) = &streams.inbox {
            inbox.end(match reason {
                None => Ok(()),
                Some(reason) => Err(RpcError::StreamFailed {
                    method: streams.method.to_owned(),
                    reason,
                }),
            });
        }
    }

    /// The client may be sent `bytes` more of call `call_id`'s stream.
    pub(crate) fn grant(&self, call_id: u64, bytes: u64) {
        if let Some(credit) = self
            .lock()
            .get(&call_id)
            .and_then(|call| call.streams.credit.as_ref())
        {
            credit.grant(bytes);
        }
    }

    /// Aborts every running call (the connection is gone).
    pub(crate) fn abort_all(&self) {
        for (_, call) in self.lock().drain() {
            call.cancel.cancel();
            if let Some(abort) = call.abort {
                abort.abort();
            }
        }
        self.idle.notify_waiters();
    }

    /// Aborts every running call and waits until each call's future is dropped, so whatever a
    /// handler holds is released before the connection counts as gone. (Aborting only asks:
    /// a task is dropped the next time the runtime gets to it.)
    pub(crate) async fn abort_all_and_wait(&self) {
        self.abort_all();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Whether a call runs or an answer is still on its way to the transport.
    pub(crate) fn busy(&self) -> bool {
        !self.lock().is_empty() || !self.tasks.is_empty()
    }

    /// Waits until no call runs and every answer is handed to the transport.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.lock().is_empty() {
                break;
            }
            idle.await;
        }
        // A call leaves the table just before its answer goes out (see `spawn`).
        while !self.tasks.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// Runs a prepared call as a task on `runtime`, sending its final answer through `sink`.
    /// The call counts as running until its answer is ready, and holds `request` (its share of
    /// the connection's memory, counted with the task's own cost) until the answer is handed to
    /// the sink. A call waits for room among the answers before it runs, unless it may be
    /// writing (see [`Start::Begun`]). `false` when the call was cancelled while polled in
    /// place: its task ends at once, and owes nothing.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        sink: ReplySink,
        prepared: Prepared,
        request: TaskBudget,
        start: Start,
    ) -> bool {
        let may_be_writing = matches!(start, Start::Begun { sends_items: true });
        let Prepared {
            call_id,
            run,
            streams,
            registered,
            ..
        } = prepared;
        let reply = run.into_future();
        let calls = self.clone();
        let (cancel, serial) = match &registered {
            Some(registered) => (registered.cancel.clone(), registered.serial),
            None => (
                CancellationToken::new(),
                self.next_serial.fetch_add(1, Ordering::Relaxed),
            ),
        };
        let cancelled = cancel.clone();
        let task = async move {
            tokio::task::yield_now().await;
            let run = async {
                // No answer is built while the answers before it cannot be queued.
                if !may_be_writing {
                    sink.room().await;
                }
                reply.await
            };
            let answer = tokio::select! {
                biased;
                _ = cancelled.cancelled() => None,
                answer = run => Some(answer),
            };
            // The call leaves the table before its answer goes out: a client that keeps to
            // `max_in_flight` may send its next call the moment it reads this answer. The task
            // itself is still bounded, by the request's bytes it holds until the answer is out.
            calls.finish(call_id, serial);
            if let Some(answer) = answer {
                let _ = sink.send(answer).await;
            }
            drop(request);
        };
        // Hold the table while spawning, so the task cannot finish before it is registered.
        let mut running = self.lock();
        // Polled in place until now: from here the table has it (cleared under the lock
        // `admit` and `cancel` look under, and before the task can finish). Cancelled while
        // polled, it ends at once and is not entered.
        let cancelled_in_place =
            matches!(start, Start::Begun { .. }) && self.inline.is(call_id) && self.inline.clear();
        if cancelled_in_place {
            cancel.cancel();
        }
        let handle = runtime.spawn(self.tasks.track_future(task));
        let abort = Some(handle.abort_handle());
        match (running.get_mut(&call_id), registered.is_some()) {
            _ if cancelled_in_place => return false,
            // Registered before its inline poll (a streaming call).
            (Some(call), true) if call.serial == serial => call.abort = abort,
            // Registered, and cancelled since (its id may be another call's now): its task
            // ends at once, at the cancellation.
            (_, true) => {}
            (_, false) => {
                running.insert(
                    call_id,
                    Running {
                        serial,
                        cancel,
                        abort,
                        streams,
                    },
                );
            }
        }
        true
    }
}
