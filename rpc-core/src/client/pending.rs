//! The table of calls waiting for their replies (and, for streaming calls, their items).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rpc_transport::Frame;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use crate::error::RpcError;
use crate::stream::credit::Credit;
use crate::stream::inbox::Inbox;

/// A reply frame, or why none will come.
pub(crate) type Reply = Result<Frame, RpcError>;

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
}

impl State {
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

    /// Registers plain call `id` waiting for one reply; fails at once when the connection is
    /// gone.
    pub(crate) fn register(&self, id: u64) -> Result<ReplyReceiver<'_>, RpcError> {
        let (tx, rx) = oneshot::channel();
        self.register_waiter(id, Waiter::Call(tx), None)?;
        Ok(ReplyReceiver {
            rx,
            unclaimed: &self.unclaimed,
            taken: false,
        })
    }

    /// How many replies to plain calls are delivered but not yet taken by their callers: while
    /// any are, their tasks are, as a rule, about to run (see `Client::call_in`).
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
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(state.gone(reason));
        }
        state.calls.insert(id, Entry { waiter, credit });
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> Reply {
        Err(RpcError::disconnected("test"))
    }

    #[tokio::test]
    async fn a_reply_counts_as_unclaimed_until_its_caller_takes_it() {
        let pending = Pending::default();
        let mut first = pending.register(1).unwrap();
        let second = pending.register(2).unwrap();
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

    #[test]
    fn a_reply_dropped_untaken_or_never_delivered_leaves_no_count() {
        let pending = Pending::default();
        let delivered = pending.register(1).unwrap();
        assert!(pending.complete(1, reply()));
        drop(delivered);
        assert_eq!(pending.unclaimed(), 0, "delivered, then dropped untaken");
        let gone = pending.register(2).unwrap();
        drop(gone);
        assert!(!pending.complete(2, reply()), "its caller gave up");
        assert_eq!(
            pending.unclaimed(),
            0,
            "a reply nobody can take is not counted"
        );
        let _waiting = pending.register(3).unwrap();
        pending.close("the connection ended");
        assert_eq!(
            pending.unclaimed(),
            1,
            "the failure handed to a waiting call counts"
        );
    }
}
