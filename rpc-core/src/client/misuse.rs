//! Misuse that explains itself: a blocking client where blocking would deadlock, and an async
//! client whose runtime is gone, fail at once with an error that says what to do instead.
//!
//! Where a blocking call deadlocks:
//! - On the thread of a current-thread tokio runtime, while it polls a future (a task, or the
//!   future given to `block_on`, as in `#[tokio::test]`): the thread that would serve the reply
//!   (an in-process server, the connection's tasks) is the one blocked. The thread of a
//!   `spawn_blocking` closure of the same runtime is fine.
//! - With `mem://`, anywhere inside a runtime: its blocking halves drive a private runtime of
//!   their own, which tokio refuses to start inside another.
//!
//! Tokio has no public "is this thread driving a scheduler?" call, and `Handle::try_current`
//! answers the same on a runtime's thread and on its `spawn_blocking` threads. What differs is
//! the cooperative budget: a scheduler polls every future with a limited budget, and a
//! blocking-pool thread or a plain thread has none. [`polled_by_scheduler`] finds out which
//! one applies without changing it.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::coop;

use super::pending::Pending;
use crate::error::RpcError;

/// `Err` when a blocking client of `service` must not block this thread (`own_runtime`: its
/// transport drives a runtime of its own, see
/// [`BlockingSender::runs_own_runtime`](rpc_transport::BlockingSender::runs_own_runtime)): the
/// error says why and what to use instead.
pub(crate) fn check_blocking(service: &str, own_runtime: bool) -> Result<(), RpcError> {
    let Ok(runtime) = Handle::try_current() else {
        return Ok(());
    };
    if own_runtime {
        return Err(RpcError::BlockingInAsyncContext {
            advice: format!(
                "this blocking client's transport runs a runtime of its own and cannot be used \
                 inside a tokio runtime; use the async client `{service}Client`, or use the \
                 blocking client from a plain std::thread"
            ),
        });
    }
    if runtime.runtime_flavor() == RuntimeFlavor::CurrentThread && polled_by_scheduler() {
        return Err(RpcError::BlockingInAsyncContext {
            advice: format!(
                "this thread runs a current-thread tokio runtime, and blocking it would \
                 deadlock; use the async client `{service}Client`, or call from \
                 `tokio::task::spawn_blocking` or a plain std::thread"
            ),
        });
    }
    Ok(())
}

/// Whether the code running now is a future polled by a tokio scheduler (it has a cooperative
/// budget), rather than a `spawn_blocking` closure or plain thread code (it has none).
///
/// Takes budget units until none is left or more than a budget can hold were taken, then gives
/// every one back: the first unit's guard, dropped last, restores the budget as it was.
fn polled_by_scheduler() -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(first) = coop::poll_proceed(&mut cx) else {
        return true;
    };
    let mut constrained = false;
    for _ in 0..=u8::MAX {
        match coop::poll_proceed(&mut cx) {
            Poll::Ready(unit) => unit.made_progress(),
            Poll::Pending => {
                constrained = true;
                break;
            }
        }
    }
    drop(first);
    constrained
}

/// The error for a call or send that failed because tokio is shutting the runtime down: its
/// I/O then fails with tokio's own message, which is turned into [`RpcError::RuntimeShutDown`].
pub(crate) fn is_runtime_shutdown(error: &impl std::fmt::Display) -> bool {
    error
        .to_string()
        .contains("A Tokio 1.x context was found, but it is being shutdown")
}

/// Held by a connection's reader task. Dropped before [`ReaderAlive::ended`] (its runtime shut
/// down and dropped the task), it fails the connection's calls, waiting and later, with
/// [`RpcError::RuntimeShutDown`] instead of tokio's own error.
pub(crate) struct ReaderAlive(Option<Arc<Pending>>);

impl ReaderAlive {
    pub(crate) fn new(pending: Arc<Pending>) -> ReaderAlive {
        ReaderAlive(Some(pending))
    }

    /// The reader ended on its own: fails the calls with `Disconnected` for `reason`.
    pub(crate) fn ended(mut self, reason: &str) {
        if let Some(pending) = self.0.take() {
            pending.close(reason);
        }
    }
}

impl Drop for ReaderAlive {
    fn drop(&mut self) {
        if let Some(pending) = self.0.take() {
            pending.close_runtime_gone();
        }
    }
}
