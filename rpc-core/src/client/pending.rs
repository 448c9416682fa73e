//! The table of calls waiting for their replies (and, for streaming calls, their items).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_transport::Frame;
use rustc_hash::FxHashMap;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::error::RpcError;
use crate::stream::credit::Credit;
use crate::stream::inbox::Inbox;

/// A reply frame, or why none will come.
pub(crate) type Reply = Result<Frame, RpcError>;

/// What a call is handed when its deadline comes before its reply (see
/// [`Pending::expire_calls`]); its caller names the method and the timeout (see
/// [`is_expiry`]).
pub(crate) fn expired() -> RpcError {
    RpcError::DeadlineExceeded {
        method: String::new(),
        timeout: Duration::ZERO,
    }
}

/// Whether `error`, handed to a waiting call, says its deadline came: only
/// [`Pending::expire_calls`] hands a call `DeadlineExceeded` (the server's deadline errors
/// come as reply frames).
pub(crate) fn is_expiry(error: &RpcError) -> bool {
    matches!(error, RpcError::DeadlineExceeded { .. })
}

/// Turns a streaming call's final frame into how its stream ended.
pub(crate) type Finish = Box<dyn FnOnce(&Frame) -> Result<(), RpcError> + Send>;

/// Who waits for a call's answer.
pub(crate) enum Waiter {
    /// One reply, to a plain call: counted among the unclaimed replies (see
    /// [`Pending::unclaimed`]) until its [`ReplyReceiver`] takes it.
    Call(oneshot::Sender<Reply>),
    /// One reply, to a streaming call.
    Once(oneshot::Sender<Reply>),
    /// Items, then a final frame that ends their stream.
    Stream { inbox: Inbox, finish: Finish },
}

struct Entry {
    waiter: Waiter,
    /// The credit of the items this call sends, if it sends any.
    credit: Option<Arc<Credit>>,
    /// When the call gives up waiting (see [`Pending::expire_calls`]).
    deadline: Option<Instant>,
}

impl Entry {
    fn end(self, reply: Reply, unclaimed: &AtomicUsize) -> bool {
        if let Some(credit) = &self.credit {
            credit.close();
        }
        match self.waiter {
            Waiter::Call(tx) => {
                // Counted before it can be taken, so the count never goes below zero.
                unclaimed.fetch_add(1, Ordering::Relaxed);
                let sent = tx.send(reply).is_ok();
                if !sent {
                    unclaimed.fetch_sub(1, Ordering::Relaxed);
                }
                sent
            }
            Waiter::Once(tx) => tx.send(reply).is_ok(),
            Waiter::Stream { inbox, finish } => {
                inbox.end(reply.and_then(|frame| finish(&frame)));
                true
            }
        }
    }
}

#[derive(Default)]
struct State {
    /// By call id. The ids are this client's own (a counter), never chosen by the peer, so
    /// a fast hash that a chooser of keys could attack is safe here, and spares each call
    /// three SipHash rounds.
    calls: FxHashMap<u64, Entry>,
    /// Set once the connection is gone: why.
    closed: Option<String>,
    /// Whether it went because the runtime running its reader shut down.
    runtime_gone: bool,
    /// When [`Pending::expire_calls`] looks next: no later than the earliest deadline of a
    /// waiting call (earlier, once that call is answered; `None`: it waits to be told).
    next_expiry: Option<Instant>,
    /// The deadlines of the calls registered with one, soonest first. An answered call's
    /// entry stays until it comes due (or the heap is rebuilt, see [`State::prune`]): a call
    /// costs a push, and an expiry looks only at the calls due.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl State {
    /// Rebuilds [`deadlines`](Self::deadlines) from the calls still waiting once answered
    /// calls' entries outnumber them: the heap stays within twice the calls in flight, at an
    /// amortized constant cost per call.
    fn prune(&mut self) {
        if self.deadlines.len() <= 2 * self.calls.len() + 64 {
            return;
        }
        self.deadlines = self
            .calls
            .iter()
            .filter_map(|(&id, entry)| entry.deadline.map(|at| Reverse((at, id))))
            .collect();
    }

    /// The error for a call on a connection that is gone.
    fn gone(&self, reason: &str) -> RpcError {
        if self.runtime_gone {
            RpcError::RuntimeShutDown
        } else {
            RpcError::disconnected(reason)
        }
    }
}

/// Calls in flight on one connection, matched to replies by call id.
#[derive(Default)]
pub(crate) struct Pending {
    state: Mutex<State>,
    /// Replies handed to plain calls whose callers have not taken them yet. As a rule their
    /// tasks are woken and about to run (and to call again); a call future kept unpolled
    /// after its reply came (the losing side of a `select`) holds its count until dropped.
    unclaimed: AtomicUsize,
    /// Told when a call's deadline comes before [`State::next_expiry`].
    expiry_moved: Notify,
}

/// A plain call's reply on its way: a future of it, which also counts it among
/// [`Pending::unclaimed`] from its delivery until it is taken (or dropped untaken).
pub(crate) struct ReplyReceiver<'a> {
    rx: oneshot::Receiver<Reply>,
    unclaimed: &'a AtomicUsize,
    taken: bool,
}

impl ReplyReceiver<'_> {
    /// The reply, if it is here.
    pub(crate) fn try_recv(&mut self) -> Result<Reply, oneshot::error::TryRecvError> {
        let reply = self.rx.try_recv();
        if reply.is_ok() {
            self.take();
        }
        reply
    }

    fn take(&mut self) {
        self.taken = true;
        self.unclaimed.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Future for ReplyReceiver<'_> {
    type Output = Result<Reply, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = Pin::new(&mut self.rx).poll(cx);
        if let Poll::Ready(Ok(_)) = polled {
            self.take();
        }
        polled
    }
}

impl Drop for ReplyReceiver<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        // Closed first: a reply sent from now on fails, and its sender uncounts it.
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            self.unclaimed.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Registers plain call `id` waiting for one reply, failed with [`expired`] at `deadline`
    /// (see [`expire_calls`](Self::expire_calls)); fails at once when the connection is gone.
    pub(crate) fn register(
        &self,
        id: u64,
        deadline: Option<Instant>,
    ) -> Result<ReplyReceiver<'_>, RpcError> {
        let (tx, rx) = oneshot::channel();
        self.insert(
            id,
            Entry {
                waiter: Waiter::Call(tx),
                credit: None,
                deadline,
            },
        )?;
        Ok(ReplyReceiver {
            rx,
            unclaimed: &self.unclaimed,
            taken: false,
        })
    }

    /// How many replies to plain calls are delivered but not yet taken by their callers: while
    /// any are, their tasks are, as a rule, about to run (see `unary::exchange`).
    pub(crate) fn unclaimed(&self) -> usize {
        self.unclaimed.load(Ordering::Relaxed)
    }

    /// Registers call `id` with its waiter and the credit of the items it sends.
    pub(crate) fn register_waiter(
        &self,
        id: u64,
        waiter: Waiter,
        credit: Option<Arc<Credit>>,
    ) -> Result<(), RpcError> {
        self.insert(
            id,
            Entry {
                waiter,
                credit,
                deadline: None,
            },
        )
    }

    fn insert(&self, id: u64, entry: Entry) -> Result<(), RpcError> {
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(state.gone(reason));
        }
        let sooner = entry
            .deadline
            .filter(|&at| state.next_expiry.is_none_or(|next| at < next));
        if sooner.is_some() {
            state.next_expiry = sooner;
        }
        if let Some(at) = entry.deadline {
            state.deadlines.push(Reverse((at, id)));
        }
        state.calls.insert(id, entry);
        state.prune();
        drop(state);
        if sooner.is_some() {
            self.expiry_moved.notify_one();
        }
        Ok(())
    }

    /// Fails every call whose deadline has come with [`expired`], for as long as it runs:
    /// one task per connection, asleep until [`State::next_expiry`]. A call so needs no timer
    /// of its own (registering one cost about a fifth of a call's work on the client). The
    /// deadlines of a client's calls come in the order they were made, as a rule: a call wakes
    /// the task only when its deadline is the soonest (the first after an idle spell), and the
    /// task wakes about once per timeout while calls keep coming, not once per call.
    pub(crate) async fn expire_calls(self: Arc<Self>) {
        let _alive = ExpiryAlive(&self);
        loop {
            let next = self.lock().next_expiry;
            match next {
                None => self.expiry_moved.notified().await,
                Some(at) if at > Instant::now() => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.expiry_moved.notified() => {}
                    }
                }
                Some(_) => self.expire_due(Instant::now()),
            }
        }
    }

    /// Fails the calls whose deadline is `now` or earlier, and looks next at the earliest
    /// deadline left.
    fn expire_due(&self, now: Instant) {
        let due = {
            let mut state = self.lock();
            let mut due = Vec::new();
            while let Some(&Reverse((at, id))) = state.deadlines.peek() {
                if at > now {
                    break;
                }
                state.deadlines.pop();
                // An answered call's entry: its id is not waiting any more (ids are not reused).
                if state
                    .calls
                    .get(&id)
                    .is_some_and(|entry| entry.deadline == Some(at))
                {
                    due.extend(state.calls.remove(&id));
                }
            }
            state.next_expiry = state.deadlines.peek().map(|&Reverse((at, _))| at);
            due
        };
        for entry in due {
            entry.end(Err(expired()), &self.unclaimed);
        }
    }

    /// Hands the final `reply` to call `id`; false if no such call waits (it gave up).
    pub(crate) fn complete(&self, id: u64, reply: Reply) -> bool {
        let entry = self.lock().calls.remove(&id);
        entry.is_some_and(|entry| entry.end(reply, &self.unclaimed))
    }

    /// Hands a stream item to call `id`. An item for a call that gave up is dropped; `Err`
    /// when the server broke the protocol (items for a call that expects none, or beyond the
    /// credit it was given).
    pub(crate) fn item(&self, id: u64, frame: Frame) -> Result<(), String> {
        let state = self.lock();
        match state.calls.get(&id).map(|entry| &entry.waiter) {
            None => Ok(()),
            Some(Waiter::Stream { inbox, .. }) => inbox.deliver(frame, None),
            Some(Waiter::Once(_) | Waiter::Call(_)) => Err(format!(
                "the server sent a stream item for call {id}, which expects one reply"
            )),
        }
    }

    /// The server may be sent `bytes` more of call `id`'s items.
    pub(crate) fn grant(&self, id: u64, bytes: u64) {
        if let Some(credit) = self.lock().calls.get(&id).and_then(|e| e.credit.as_ref()) {
            credit.grant(bytes);
        }
    }

    /// Forgets call `id` (the caller gave up).
    pub(crate) fn forget(&self, id: u64) {
        let entry = self.lock().calls.remove(&id);
        if let Some(credit) = entry.and_then(|e| e.credit) {
            credit.close();
        }
    }

    /// Marks the connection gone and fails every waiting call with `Disconnected`.
    pub(crate) fn close(&self, reason: &str) {
        self.close_with(reason, false);
    }

    /// Marks the connection gone because the runtime running its reader shut down: every
    /// waiting call, and every later one, fails with [`RpcError::RuntimeShutDown`].
    pub(crate) fn close_runtime_gone(&self) {
        self.close_with("the client's runtime shut down", true);
    }

    fn close_with(&self, reason: &str, runtime_gone: bool) {
        let (calls, runtime_gone) = {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(reason.to_owned());
                state.runtime_gone = runtime_gone;
            }
            state.deadlines.clear();
            (std::mem::take(&mut state.calls), state.runtime_gone)
        };
        for (_, entry) in calls {
            let error = match runtime_gone {
                true => RpcError::RuntimeShutDown,
                false => RpcError::disconnected(reason),
            };
            entry.end(Err(error), &self.unclaimed);
        }
    }

    /// Why the connection is gone, if it is.
    pub(crate) fn closed_reason(&self) -> Option<String> {
        self.lock().closed.clone()
    }

    /// How many calls wait.
    pub(crate) fn len(&self) -> usize {
        self.lock().calls.len()
    }
}

/// Held by [`Pending::expire_calls`]: no deadline fires once it stops, so its calls, waiting
/// and later, fail then rather than wait for ever. It stops when its runtime shuts down
/// ([`RpcError::RuntimeShutDown`], as the reader's calls), when the connection is dropped,
/// or when it panics (a runtime built without timers).
struct ExpiryAlive<'a>(&'a Pending);

impl Drop for ExpiryAlive<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.close(
                "the client's deadline task failed (does its runtime have timers? enable_time)",
            );
        } else {
            self.0.close_runtime_gone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> Reply {
        Err(RpcError::disconnected("test"))
    }

    #[tokio::test]
    async fn a_reply_counts_as_unclaimed_until_its_caller_takes_it() {
        let pending = Pending::default();
        let mut first = pending.register(1, None).unwrap();
        let second = pending.register(2, None).unwrap();
        assert_eq!(pending.unclaimed(), 0, "nothing delivered yet");
        assert!(pending.complete(1, reply()));
        assert!(pending.complete(2, reply()));
        assert_eq!(pending.unclaimed(), 2, "two delivered, none taken");
        assert!(first.try_recv().is_ok());
        assert_eq!(pending.unclaimed(), 1, "one taken by try_recv");
        assert!(second.await.is_ok());
        assert_eq!(pending.unclaimed(), 0, "the other taken by awaiting it");
        drop(first);
        assert_eq!(
            pending.unclaimed(),
            0,
            "a taken reply is not uncounted twice"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_fail_at_their_deadlines_and_not_before() {
        let pending = Arc::new(Pending::default());
        let expiry = tokio::spawn(pending.clone().expire_calls());
        let start = Instant::now();
        let mut late = pending
            .register(1, Some(start + Duration::from_secs(30)))
            .unwrap();
        let mut never = pending.register(2, None).unwrap();
        // Registered after the late one, due before it: the expiry task is told.
        let mut soon = pending
            .register(3, Some(start + Duration::from_millis(10)))
            .unwrap();
        let answered = pending
            .register(4, Some(start + Duration::from_millis(5)))
            .unwrap();
        assert!(pending.complete(4, reply()));
        tokio::time::sleep(Duration::from_millis(9)).await;
        assert!(soon.try_recv().is_err(), "not due yet");
        let expired = answered.await.unwrap();
        assert!(
            matches!(expired, Err(RpcError::Disconnected { .. })),
            "an answered call keeps its answer"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(matches!(soon.try_recv(), Ok(Err(e)) if is_expiry(&e)));
        assert_eq!(pending.len(), 2);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(matches!(late.try_recv(), Ok(Err(e)) if is_expiry(&e)));
        assert!(never.try_recv().is_err(), "a call without a deadline waits");
        assert_eq!(pending.len(), 1);
        // A call made when none waits wakes the task again.
        let mut again = pending
            .register(5, Some(Instant::now() + Duration::from_millis(1)))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(matches!(again.try_recv(), Ok(Err(e)) if is_expiry(&e)));
        expiry.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn answered_calls_deadlines_do_not_pile_up() {
        let pending = Arc::new(Pending::default());
        let expiry = tokio::spawn(pending.clone().expire_calls());
        let later = Instant::now() + Duration::from_secs(30);
        for id in 0..1000 {
            let waiting = pending.register(id, Some(later)).unwrap();
            assert!(pending.complete(id, reply()));
            drop(waiting);
        }
        let heap = pending.lock().deadlines.len();
        assert!(
            heap <= 64 + 1,
            "answered calls' deadlines were pruned: {heap} left"
        );
        // A call due sooner than the stale entries still fails at its own deadline.
        let mut soon = pending
            .register(1000, Some(Instant::now() + Duration::from_millis(5)))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(4)).await;
        assert!(soon.try_recv().is_err(), "not due yet");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert!(matches!(soon.try_recv(), Ok(Err(e)) if is_expiry(&e)));
        assert_eq!(pending.len(), 0);
        expiry.abort();
    }

    #[test]
    fn a_reply_dropped_untaken_or_never_delivered_leaves_no_count() {
        let pending = Pending::default();
        let delivered = pending.register(1, None).unwrap();
        assert!(pending.complete(1, reply()));
        drop(delivered);
        assert_eq!(pending.unclaimed(), 0, "delivered, then dropped untaken");
        let gone = pending.register(2, None).unwrap();
        drop(gone);
        assert!(!pending.complete(2, reply()), "its caller gave up");
        assert_eq!(
            pending.unclaimed(),
            0,
            "a reply nobody can take is not counted"
        );
        let _waiting = pending.register(3, None).unwrap();
        pending.close("the connection ended");
        assert_eq!(
            pending.unclaimed(),
            1,
            "the failure handed to a waiting call counts"
        );
    }
}
