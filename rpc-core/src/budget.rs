//! Memory budgets: how many bytes one connection, and the whole server, may hold for calls.
//!
//! Two kinds of bytes are held, each in a pool of its own so that neither can starve the
//! other (a call holds its request while it waits to queue its reply):
//!
//! - **requests**: the frames of calls that run as tasks, from the moment the read loop hands
//!   one to its task until the call's reply is queued;
//! - **replies**: frames queued in a connection's outbox until they are written.
//!
//! Each pool has a limit per connection and one for all connections together. When a pool is
//! empty the read loop waits before it takes the next request (so the peer's further requests
//! stay in the kernel or the ring), and a finished call waits before it queues its reply. A
//! frame larger than a limit takes the whole limit, so it still goes through, one at a time.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// What a frame costs beyond its bytes (its allocation and bookkeeping), counted with it so
/// that many small frames are not undercounted.
pub(crate) const FRAME_OVERHEAD: usize = 64;

/// What a call running as a task costs beyond its request frame, counted with the request:
/// its task (about 1.5 KiB), its boxed reply future (about 2 KiB, the handler's own state
/// included), their allocations' rounding and the call's span.
pub(crate) const TASK_OVERHEAD: usize = 4096;

/// The server-wide side of both pools, shared by every connection.
#[derive(Debug)]
pub(crate) struct ServerMemory {
    requests: Arc<Limit>,
    replies: Arc<Limit>,
}

impl ServerMemory {
    /// Pools of `limit` bytes each for all connections together.
    pub(crate) fn new(limit: usize) -> ServerMemory {
        ServerMemory {
            requests: Arc::new(Limit::new(limit)),
            replies: Arc::new(Limit::new(limit)),
        }
    }

    /// One connection's budget: at most `limit` bytes in each pool.
    pub(crate) fn connection(&self, limit: usize) -> ConnectionMemory {
        ConnectionMemory {
            requests: Arc::new(Pool {
                connection: Limit::new(limit),
                server: self.requests.clone(),
            }),
            replies: Arc::new(Pool {
                connection: Limit::new(limit),
                server: self.replies.clone(),
            }),
        }
    }
}

/// One connection's two pools.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionMemory {
    /// Requests held by calls running as tasks.
    pub(crate) requests: Arc<Pool>,
    /// Replies waiting in the outbox.
    pub(crate) replies: Arc<Pool>,
}

/// A semaphore of bytes with its size.
#[derive(Debug)]
struct Limit {
    bytes: Semaphore,
    size: u32,
}

impl Limit {
    fn new(limit: usize) -> Limit {
        let size = limit.clamp(1, u32::MAX as usize) as u32;
        Limit {
            bytes: Semaphore::new(size as usize),
            size,
        }
    }

    /// What taking `bytes` costs here: at least one, at most the whole limit.
    fn cost(&self, bytes: usize) -> u32 {
        bytes.clamp(1, self.size as usize) as u32
    }
}

/// One pool of one connection: its own limit, then the server's.
#[derive(Debug)]
pub(crate) struct Pool {
    connection: Limit,
    server: Arc<Limit>,
}

impl Pool {
    /// Takes `bytes` if both limits have them now.
    pub(crate) fn try_take(self: &Arc<Self>, bytes: usize) -> Option<Held> {
        let (own, all) = (self.connection.cost(bytes), self.server.cost(bytes));
        let own_permit = self.connection.bytes.try_acquire_many(own).ok()?;
        let all_permit = self.server.bytes.try_acquire_many(all).ok()?;
        own_permit.forget();
        all_permit.forget();
        Some(Held {
            pool: self.clone(),
            own,
            all,
        })
    }

    /// Takes `bytes`, waiting for the connection's limit first, then the server's. Dropping the
    /// future gives back whatever it took.
    pub(crate) async fn take(self: &Arc<Self>, bytes: usize) -> Held {
        if let Some(held) = self.try_take(bytes) {
            return held;
        }
        let (own, all) = (self.connection.cost(bytes), self.server.cost(bytes));
        // The semaphores are never closed: acquiring only waits.
        let own_permit = self.connection.bytes.acquire_many(own).await;
        let all_permit = self.server.bytes.acquire_many(all).await;
        if let (Ok(own_permit), Ok(all_permit)) = (own_permit, all_permit) {
            own_permit.forget();
            all_permit.forget();
        }
        Held {
            pool: self.clone(),
            own,
            all,
        }
    }
}

/// A task's share of the request budget: taken before the task starts ([`TaskBudget::held`]),
/// or once it has started ([`TaskBudget::later`]), when a handler that already began must run
/// on while the budget is spent (it may hold what frees it: the connection's sender, or the
/// answers' budget). What was taken goes back once the task and the taker both let go.
#[derive(Debug)]
pub(crate) struct TaskBudget(Arc<std::sync::Mutex<Option<Held>>>);

impl TaskBudget {
    /// The budget `held`, taken already.
    pub(crate) fn held(held: Held) -> TaskBudget {
        TaskBudget(Arc::new(std::sync::Mutex::new(Some(held))))
    }

    /// A budget still to be taken: the task's handle, and the taker's, which hands over what
    /// it took with [`TaskBudget::fill`].
    pub(crate) fn later() -> (TaskBudget, TaskBudget) {
        let slot = Arc::new(std::sync::Mutex::new(None));
        (TaskBudget(slot.clone()), TaskBudget(slot))
    }

    /// Hands `held` to the task: kept until the task ends (given back at once if it has).
    pub(crate) fn fill(self, held: Held) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(held);
    }
}

/// Bytes taken from a pool, given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    pool: Arc<Pool>,
    own: u32,
    all: u32,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.pool.connection.bytes.add_permits(self.own as usize);
        self.pool.server.bytes.add_permits(self.all as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_taken_late_goes_back_when_both_sides_let_go() {
        let server = ServerMemory::new(1000);
        let memory = server.connection(100);
        // The task ends first: what the taker then hands over goes back at once.
        let (task, taker) = TaskBudget::later();
        drop(task);
        taker.fill(memory.requests.try_take(100).unwrap());
        assert!(memory.requests.try_take(100).is_some(), "given back");
        // The taker first: the task keeps it until it ends.
        let (task, taker) = TaskBudget::later();
        taker.fill(memory.requests.try_take(100).unwrap());
        assert!(
            memory.requests.try_take(1).is_none(),
            "held by the running task"
        );
        drop(task);
        assert!(
            memory.requests.try_take(100).is_some(),
            "given back with the task"
        );
    }

    #[tokio::test]
    async fn a_connection_takes_no_more_than_its_limit_and_gets_it_back() {
        let server = ServerMemory::new(1000);
        let memory = server.connection(100);
        let first = memory.requests.try_take(60).unwrap();
        assert!(memory.requests.try_take(60).is_none(), "over the limit");
        // The other pool is separate.
        let _reply = memory.replies.try_take(100).unwrap();
        drop(first);
        assert!(memory.requests.try_take(60).is_some());
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_takes_the_whole_limit() {
        let server = ServerMemory::new(1000);
        let memory = server.connection(100);
        let big = memory.requests.try_take(10_000).unwrap();
        assert!(memory.requests.try_take(1).is_none());
        drop(big);
        assert!(memory.requests.try_take(100).is_some());
    }

    #[tokio::test]
    async fn connections_share_the_server_limit() {
        let server = ServerMemory::new(150);
        let (a, b) = (server.connection(100), server.connection(100));
        let held = a.requests.try_take(100).unwrap();
        assert!(b.requests.try_take(100).is_none(), "the server has 50 left");
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.requests.take(100).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        let taken = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the waiter gets its bytes once they are given back")
            .unwrap();
        drop(taken);
        assert_eq!(server.requests.bytes.available_permits(), 150);
    }
}
