//! The table of calls waiting for their replies.

use std::collections::HashMap;
use std::sync::Mutex;

use rpc_transport::Frame;
use tokio::sync::oneshot;

use crate::error::RpcError;

/// A reply frame, or why none will come.
pub(crate) type Reply = Result<Frame, RpcError>;

#[derive(Default)]
struct State {
    calls: HashMap<u64, oneshot::Sender<Reply>>,
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

    /// Registers call `id`; fails at once when the connection is already gone.
    pub(crate) fn register(&self, id: u64) -> Result<oneshot::Receiver<Reply>, RpcError> {
        let mut state = self.lock();
        if let Some(reason) = &state.closed {
            return Err(state.gone(reason));
        }
        let (tx, rx) = oneshot::channel();
        state.calls.insert(id, tx);
        Ok(rx)
    }

    /// Hands `reply` to call `id`; false if no such call waits (it gave up).
    pub(crate) fn complete(&self, id: u64, reply: Reply) -> bool {
        let waiter = self.lock().calls.remove(&id);
        waiter.is_some_and(|tx| tx.send(reply).is_ok())
    }

    /// Forgets call `id` (the caller gave up).
    pub(crate) fn forget(&self, id: u64) {
        self.lock().calls.remove(&id);
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
        for (_, waiter) in calls {
            let error = match runtime_gone {
                true => RpcError::RuntimeShutDown,
                false => RpcError::disconnected(reason),
            };
            let _ = waiter.send(Err(error));
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
