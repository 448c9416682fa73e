//! The table of calls waiting for their replies (and, for streaming calls, their items).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rpc_transport::Frame;
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
    /// One reply.
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
    fn end(self, reply: Reply) -> bool {
        if let Some(credit) = &self.credit {
            credit.close();
        }
        match self.waiter {
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
    calls: HashMap<u64, Entry>,
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
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Registers call `id` waiting for one reply; fails at once when the connection is gone.
    pub(crate) fn register(&self, id: u64) -> Result<oneshot::Receiver<Reply>, RpcError> {
        let (tx, rx) = oneshot::channel();
        self.register_waiter(id, Waiter::Once(tx), None)?;
        Ok(rx)
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
        entry.is_some_and(|entry| entry.end(reply))
    }

    /// Hands a stream item to call `id`. An item for a call that gave up is dropped; `Err`
    /// when the server broke the protocol (items for a call that expects none, or beyond the
    /// credit it was given).
    pub(crate) fn item(&self, id: u64, frame: Frame) -> Result<(), String> {
        let state = self.lock();
        match state.calls.get(&id).map(|entry| &entry.waiter) {
            None => Ok(()),
            Some(Waiter::Stream { inbox, .. }) => inbox.deliver(frame, None),
            Some(Waiter::Once(_)) => Err(format!(
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
            entry.end(Err(error));
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
