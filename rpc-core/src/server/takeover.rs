//! Takeover: while a shared-memory connection's own thread runs a handler that computes for
//! long before its first `.await`, another thread reads the connection in its place.
//!
//! The connection's thread marks when it starts and ends each handler it polls inline (a few
//! atomic operations: nothing more on the fast path). One process-wide monitor thread looks at
//! the marks every [`LOOK_EVERY`] while handlers run, backing off to every 100 ms when none has
//! run for a while; a handler running for longer than
//! [`TAKEOVER_AFTER`] gets a takeover thread for its connection, which reads on and runs every
//! call it reads as a task, until the handler is done and the connection's thread wants the
//! ring back. At most one takeover reader per connection runs at a time, and only while a
//! handler holds its thread; for a shared-memory connection it runs on the runtime's blocking
//! pool (threads reused), for an async one it is a task.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rpc_transport::{Deadline, TransportError};

use super::dispatch::classify;
use super::threaded::{Conn, Flow, handle};

/// A connection whose read loop polls handlers inline, so the monitor can look at it and
/// start a reader in its place.
pub(crate) trait Watched: Send + Sync + 'static {
    /// Its marks.
    fn busy(&self) -> &Busy;
    /// Starts reading in place of its read loop, until the handler is done; clears
    /// `taken_over` when it stops.
    fn take_over(self: Arc<Self>);
}

impl Watched for Conn {
    fn busy(&self) -> &Busy {
        &self.busy
    }

    /// On the runtime's blocking pool, whose threads are reused: a connection whose handlers
    /// compute one after another does not start a thread for each.
    fn take_over(self: Arc<Self>) {
        let runtime = self.runtime.clone();
        runtime.spawn_blocking(move || take_over(self));
    }
}

/// How long a handler may hold its connection's thread before another thread reads instead.
pub(crate) const TAKEOVER_AFTER: Duration = Duration::from_millis(2);

/// How often the monitor looks while handlers run: as often as a handler may run before it is
/// taken over, so one seen running on two looks in a row has run at least that long (it is
/// taken over 2 to 4 ms after it began while handlers run; after a quiet spell, within
/// [`IDLE_TICK`] more). Each look wakes the monitor, and on a server whose
/// threads share one CPU it preempts a connection's thread for tens of microseconds on this
/// project's VM: at every millisecond, a dedicated thread spent 5% of its time waiting for its
/// CPU, enough to make it stop spinning for requests now and then.
const LOOK_EVERY: Duration = TAKEOVER_AFTER;

/// How long a takeover thread waits for a frame before it looks whether the handler is done.
const TICK: Duration = Duration::from_millis(1);

/// How often, at most, the monitor looks when no handler has run for a while: it backs off
/// from [`LOOK_EVERY`] to this when idle, so an idle server costs no CPU (a handler that starts
/// computing after a long quiet spell is taken over within this much more).
const IDLE_TICK: Duration = Duration::from_millis(100);

/// Whether a connection's read loop runs a handler, and which one: no clock on the fast path.
/// The monitor calls a handler overdue when it finds the same one running on two looks
/// [`TAKEOVER_AFTER`] apart.
#[derive(Debug, Default)]
pub(crate) struct Busy {
    /// Whether a handler runs now.
    running: AtomicBool,
    /// Handlers polled so far (the one running included).
    pub(crate) polls: AtomicU64,
    /// Whether a takeover reader reads the connection now.
    pub(crate) taken_over: AtomicBool,
    /// The monitor's own: the `polls` it saw running, and when it first did.
    seen: Mutex<Option<(u64, Instant)>>,
}

/// Clears the mark when the handler's poll returns (or unwinds).
struct Running<'a>(&'a Busy);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

impl Busy {
    /// Runs `poll` (a handler's inline poll) marked as running.
    pub(crate) fn run<T>(&self, poll: impl FnOnce() -> T) -> T {
        self.polls.fetch_add(1, Ordering::AcqRel);
        self.running.store(true, Ordering::Release);
        let _running = Running(self);
        poll()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Whether the handler running now has run for longer than [`TAKEOVER_AFTER`], as far as
    /// the monitor's looks tell (called by the monitor only).
    fn overdue(&self) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_running() {
            *seen = None;
            return false;
        }
        let poll = self.polls.load(Ordering::Acquire);
        match *seen {
            Some((seen_poll, since)) if seen_poll == poll => since.elapsed() >= TAKEOVER_AFTER,
            _ => {
                *seen = Some((poll, Instant::now()));
                false
            }
        }
    }
}

/// The connections the monitor looks at.
#[derive(Default)]
struct Monitor {
    conns: Mutex<Vec<Weak<dyn Watched>>>,
    added: Condvar,
}

fn monitor() -> &'static Monitor {
    static MONITOR: OnceLock<&'static Monitor> = OnceLock::new();
    MONITOR.get_or_init(|| {
        let monitor: &'static Monitor = Box::leak(Box::default());
        let started = std::thread::Builder::new()
            .name("rpc-shm-takeover".into())
            .spawn(move || monitor.run());
        if let Err(error) = started {
            tracing::warn!(%error, "cannot start the shared-memory takeover monitor");
        }
        monitor
    })
}

/// Has the monitor look at `conn` while it lives.
pub(crate) fn watch(conn: Arc<dyn Watched>) {
    let monitor = monitor();
    monitor
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::downgrade(&conn));
    monitor.added.notify_one();
}

impl Monitor {
    fn run(&self) {
        let mut tick = LOOK_EVERY;
        let mut polls_seen = 0u64;
        loop {
            let (overdue, active): (Vec<Arc<dyn Watched>>, bool) = {
                let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
                conns.retain(|conn| conn.strong_count() > 0);
                while conns.is_empty() {
                    conns = self.added.wait(conns).unwrap_or_else(|p| p.into_inner());
                    conns.retain(|conn| conn.strong_count() > 0);
                }
                let live: Vec<Arc<dyn Watched>> = conns.iter().filter_map(Weak::upgrade).collect();
                let polls: u64 = live
                    .iter()
                    .map(|conn| conn.busy().polls.load(Ordering::Relaxed))
                    .fold(0, u64::wrapping_add);
                let active = polls != polls_seen || live.iter().any(|c| c.busy().is_running());
                polls_seen = polls;
                let overdue = live
                    .into_iter()
                    .filter(|conn| {
                        let busy = conn.busy();
                        busy.overdue() && !busy.taken_over.swap(true, Ordering::AcqRel)
                    })
                    .collect();
                (overdue, active)
            };
            for conn in overdue {
                conn.take_over();
            }
            tick = if active {
                LOOK_EVERY
            } else {
                (tick * 2).min(IDLE_TICK)
            };
            std::thread::sleep(tick);
        }
    }
}

/// Reads `conn` while its thread runs a handler, running every call it reads as a task.
fn take_over(conn: Arc<Conn>) {
    let _runtime = conn.runtime.enter();
    {
        let mut receiver = conn.receiver();
        while conn.busy.is_running() && !conn.is_ended() {
            match receiver.recv(Deadline::After(TICK)) {
                Ok(Some(frame)) => {
                    if let Flow::End = handle(&conn, &mut receiver, classify(frame)) {
                        break;
                    }
                }
                Err(TransportError::TimedOut) => {}
                // The peer is gone, or the ring broke: the connection's thread finds out when
                // it reads again.
                Ok(None) | Err(_) => break,
            }
        }
    }
    conn.busy.taken_over.store(false, Ordering::Release);
}
