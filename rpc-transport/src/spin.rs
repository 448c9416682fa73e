//! When waiting by spinning pays, and for how long.
//!
//! A receiver that spins sees a message within a cache-line transfer of its publication instead
//! of a kernel wake-up later, but only while the peer runs on another CPU at the same time.
//! Two things decide whether to spin at all:
//!
//! - [`oversubscribed`]: the spinning thread itself keeps waiting for a CPU (the kernel's
//!   account of its run-queue wait, read at most every [`LOAD_CHECK_EVERY`] and smoothed over
//!   the last few readings) while the machine has more runnable threads than the CPUs this
//!   thread may use: its CPU is shared with other busy threads, so it spins at most
//!   [`OVERSUBSCRIBED_SPIN`], as long as a socket's busy-poll. Not spinning at all there made
//!   each message wait for a wake-up, and a thread woken beside busy ones waits for its turn:
//!   with two busy loops on this project's 2-CPU machine, shm medians went to 20-46 µs (p99
//!   1-3 ms) against 5-7 µs for Unix sockets, whose busy-poll kept going; capped, 1.3-2.3 µs
//!   (p99 2-80 µs). The budget still halves at each miss, so a spin that stops paying stops.
//!   A thread that waited only because
//!   the scheduler put its peer on the same CPU while another CPU stood idle still spins: a
//!   pair that wakes each other through the kernel is kept together (a woken thread is placed
//!   beside its waker), which makes each wait for the other and would keep both from spinning
//!   for good, while a spinning pair is soon split by the idle CPU.
//! - [`SpinBudget`]: per receiver, how long spinning has paid lately. It grows towards the
//!   configured maximum ([`TransportConfig::shm_spin`](crate::TransportConfig::shm_spin)) when
//!   the message came while spinning, and halves each time a spin ran out, down to nothing,
//!   unless the message then came within the maximum after all ([`SpinBudget::came_after`]);
//!   at nothing, every [`PROBE_EVERY`]th wait spins the whole budget again, so a peer that
//!   became fast (or woke up: both sides may have stopped spinning) is noticed.

use std::time::{Duration, Instant};

/// The CPUs this process may run on (its CPU quota and the affinity mask of the thread that
/// asks first, normally the process's own, as [`std::thread::available_parallelism`] reads
/// them), read once; 1 where it cannot be read.
pub fn process_cpus() -> usize {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// How often a thread's run-queue wait is read again.
pub const LOAD_CHECK_EVERY: Duration = Duration::from_millis(20);

/// At a budget of nothing, every this many waits spin the whole budget again.
pub const PROBE_EVERY: u32 = 32;

/// Whether this thread has lately waited for a CPU while runnable: its CPU is shared with
/// other busy threads, and spinning would only take CPU time from the peer being waited for.
/// Read from the kernel's account of the thread's run-queue wait
/// (`/proc/thread-self/schedstat`) at most every [`LOAD_CHECK_EVERY`], per thread.
pub fn oversubscribed() -> bool {
    thread_local! {
        static WAITS: std::cell::RefCell<RunQueueWaits> = const {
            std::cell::RefCell::new(RunQueueWaits { last: None, score: 0 })
        };
    }
    WAITS.with(|waits| waits.borrow_mut().oversubscribed())
}

/// How much of its time this thread spent waiting for a CPU lately, smoothed.
struct RunQueueWaits {
    /// When it was last read (by [`coarse_now`], which says when the next reading is due, and
    /// by the fine clock, which measures the time between readings), and the thread's total
    /// run-queue wait then (ns; `None` when it could not be read).
    last: Option<(Duration, Instant, Option<u64>)>,
    /// How often lately a reading found the thread waiting more than [`WAIT_SHARE`] of the
    /// time, 0 to [`SCORE_FULL`], smoothed over about eight readings: one busy moment does not
    /// stop spinning, a CPU that stays shared does.
    score: u64,
}

/// The share of wall time a thread may spend waiting for a CPU before its CPU counts as
/// oversubscribed (a thread alone on its CPU waits next to nothing).
const WAIT_SHARE: f64 = 0.05;

/// The score of a thread found waiting at every reading.
const SCORE_FULL: u64 = 1024;

impl RunQueueWaits {
    fn oversubscribed(&mut self) -> bool {
        let coarse = coarse_now();
        let due = self
            .last
            .is_none_or(|(at, _, _)| coarse.saturating_sub(at) >= LOAD_CHECK_EVERY);
        if due {
            let now = Instant::now();
            // Unreadable (no CONFIG_SCHED_INFO, no /proc): tried again only when due again.
            let waited = run_queue_wait();
            if let (Some(waited), Some((_, at, Some(before)))) = (waited, self.last) {
                let wall = now.duration_since(at).as_nanos() as f64;
                let share = waited.saturating_sub(before) as f64 / wall.max(1.0);
                let crowded = share > WAIT_SHARE && more_runnable_than_cpus();
                let sample = if crowded { SCORE_FULL } else { 0 };
                self.score = (self.score * 7 + sample) / 8;
            }
            self.last = Some((coarse, now, waited));
        }
        self.score > SCORE_FULL / 2
    }
}

/// Whether the machine has more runnable threads right now than the CPUs the calling thread
/// may run on (both as the kernel counts them: the runnable count of `/proc/loadavg`, which
/// includes this thread, and the thread's affinity mask). `true` where either cannot be read:
/// then the run-queue wait alone decides.
fn more_runnable_than_cpus() -> bool {
    let Some(runnable) = runnable_threads() else {
        return true;
    };
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok();
    let cpus = allowed.map(|set| {
        (0..nix::sched::CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .count()
    });
    cpus.is_none_or(|cpus| runnable > cpus)
}

/// Threads runnable on the whole machine at this moment: the fourth field of `/proc/loadavg`
/// (`runnable/total`).
fn runnable_threads() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let field = text.split_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

/// The monotonic clock as the kernel last ticked it (`CLOCK_MONOTONIC_COARSE`: a few
/// milliseconds coarse, and a quarter of the fine clock's cost, which a receiver would
/// otherwise pay on every wait just to learn that no reading is due), as time since an
/// unspecified start. Where it cannot be read, the fine clock, from the first call on.
pub fn coarse_now() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    match clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE) {
        Ok(now) => Duration::from(now),
        Err(_) => {
            static FIRST: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            FIRST.get_or_init(Instant::now).elapsed()
        }
    }
}

/// The calling thread's total time spent runnable but waiting for a CPU, in nanoseconds: the
/// second field of `/proc/thread-self/schedstat`. `None` where it cannot be read.
fn run_queue_wait() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Yields to the runtime's other tasks between looks of a spin, through the worker's run
/// queue, where another worker may take this task. `tokio::task::yield_now` instead parks the
/// task in its worker's own list of deferred tasks, which no other worker takes: when that
/// worker then polls a handler that computes in place for a second, the spinning task (a
/// connection's read loop, the mq routing task) waits that second with it.
///
/// Elsewhere `yield_now` all the same:
/// - on a current-thread runtime, or a multi-threaded one of one worker, there is no other
///   worker to take the task, and a task in the run queue keeps the runtime from polling its
///   IO driver (and a `block_on` body) until the queue has run dry or 61 polls have passed,
///   where a deferred task lets it do so at every look;
/// - in a process allowed one CPU, where the other workers can run only in this one's place
///   (the kernel's time slices aside), and a task put in the run queue wakes one of them at
///   every look (tokio tells an idle worker of the work), which cost 32 calls in flight over
///   a Unix socket about a seventh of their rate. A handler computing in place there still
///   holds the tasks deferred on its worker.
pub async fn yield_to_others() {
    if !another_worker_may_take_it() {
        return tokio::task::yield_now().await;
    }
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Whether the calling task runs on a multi-threaded runtime of more than one worker, in a
/// process allowed more than one CPU.
fn another_worker_may_take_it() -> bool {
    process_cpus() > 1
        && tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                && runtime.metrics().num_workers() > 1
        })
}

/// The most a receiver spins while its CPU is oversubscribed (see [`oversubscribed`]).
pub const OVERSUBSCRIBED_SPIN: Duration = Duration::from_micros(50);

/// How long a receiver spins next, learned from how its spins went; see the module docs.
#[derive(Debug, Clone)]
pub struct SpinBudget {
    max: Duration,
    current: Duration,
    /// Waits since the budget fell to nothing, for the probe.
    idle_waits: u32,
}

impl SpinBudget {
    /// A budget that starts at, and never exceeds, `max`; zero never spins.
    pub fn new(max: Duration) -> SpinBudget {
        SpinBudget {
            max,
            current: max,
            idle_waits: 0,
        }
    }

    /// How long to spin for the next wait: at most [`OVERSUBSCRIBED_SPIN`] while the machine
    /// is oversubscribed, zero when spins have kept missing (except for an occasional probe).
    pub fn next_spin(&mut self) -> Duration {
        if self.max.is_zero() {
            return Duration::ZERO;
        }
        if oversubscribed() {
            return self.current.min(OVERSUBSCRIBED_SPIN);
        }
        if self.current.is_zero() {
            self.idle_waits += 1;
            if self.idle_waits >= PROBE_EVERY {
                self.idle_waits = 0;
                // The whole budget: a peer that stopped spinning too answers after a wake-up,
                // and a shorter probe would never see it (both sides would stay asleep).
                return self.max;
            }
        }
        self.current
    }

    /// Records that a spin was answered after `waited`: the budget grows to four times that
    /// (at least half the maximum), so the next wait like it is caught too.
    pub fn hit(&mut self, waited: Duration) {
        self.idle_waits = 0;
        self.current = (waited * 4).max(self.max / 2).min(self.max);
    }

    /// Records that a spin ran out with nothing: the budget halves, and under a microsecond it
    /// is nothing.
    pub fn miss(&mut self) {
        self.current /= 2;
        if self.current < Duration::from_micros(1) {
            self.current = Duration::ZERO;
        }
    }

    /// Records, after a [`miss`](Self::miss), that the message came `waited` after the spin
    /// began. Within the maximum, a spin of the maximum would have caught it: the miss is
    /// undone as a [`hit`](Self::hit) of `waited` would have counted. A peer answers late once
    /// in a while (it was preempted, or slept for want of a request and had to be woken), and
    /// each such miss halving the budget would soon leave both sides sleeping for good: every
    /// message would then wait for a wake-up on each side, and each wake-up makes the next
    /// miss. Later than the maximum (an idle peer), the miss stands.
    pub fn came_after(&mut self, waited: Duration) {
        if waited <= self.max {
            self.hit(waited);
        }
    }

    /// The most it ever grants.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The budget the next wait would get, ignoring the machine's load (for tests and reports).
    pub fn current(&self) -> Duration {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_halve_the_budget_down_to_nothing_and_a_hit_restores_it() {
        let max = Duration::from_micros(200);
        let mut budget = SpinBudget::new(max);
        assert_eq!(budget.current(), max);
        budget.miss();
        assert_eq!(budget.current(), max / 2);
        for _ in 0..10 {
            budget.miss();
        }
        assert_eq!(budget.current(), Duration::ZERO);
        budget.hit(Duration::from_micros(3));
        assert_eq!(
            budget.current(),
            max / 2,
            "a quick hit gives back half the maximum"
        );
        budget.hit(Duration::from_micros(80));
        assert_eq!(budget.current(), max, "never over the maximum");
    }

    #[test]
    fn a_message_that_came_soon_after_a_miss_undoes_it_and_a_late_one_does_not() {
        let max = Duration::from_micros(100);
        let mut budget = SpinBudget::new(max);
        budget.miss();
        budget.miss();
        assert_eq!(budget.current(), max / 4);
        budget.came_after(Duration::from_micros(70));
        assert_eq!(budget.current(), max, "a full spin would have caught it");
        budget.miss();
        budget.came_after(Duration::from_millis(5));
        assert_eq!(budget.current(), max / 2, "an idle peer's miss stands");
        for _ in 0..10 {
            budget.miss();
        }
        budget.came_after(Duration::from_micros(10));
        assert_eq!(budget.current(), max / 2, "as a hit after 10 µs");
        // At the boundary: the maximum itself would have caught it, a nanosecond more not.
        budget.miss();
        budget.came_after(max);
        assert_eq!(budget.current(), max);
        budget.miss();
        budget.came_after(max + Duration::from_nanos(1));
        assert_eq!(budget.current(), max / 2);
    }

    #[test]
    fn an_empty_budget_probes_now_and_then() {
        let mut budget = SpinBudget::new(Duration::from_micros(160));
        for _ in 0..20 {
            budget.miss();
        }
        if oversubscribed() {
            // A busy machine spins at most a socket's busy-poll, and an empty budget not at all.
            assert_eq!(budget.next_spin(), Duration::ZERO);
            return;
        }
        let spins: Vec<Duration> = (0..PROBE_EVERY * 2).map(|_| budget.next_spin()).collect();
        let probes = spins.iter().filter(|d| !d.is_zero()).count();
        // The load may change between calls; at most one probe per PROBE_EVERY waits.
        assert!(probes <= 2, "{probes} probes in {} waits", spins.len());
    }

    #[test]
    fn zero_maximum_never_spins() {
        let mut budget = SpinBudget::new(Duration::ZERO);
        budget.hit(Duration::from_micros(1));
        assert_eq!(budget.next_spin(), Duration::ZERO);
    }

    #[test]
    fn a_thread_sharing_its_cpu_with_busy_threads_finds_it_oversubscribed() {
        if run_queue_wait().is_none() {
            eprintln!("this kernel keeps no run-queue wait (no CONFIG_SCHED_INFO): nothing to see");
            return;
        }
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
        use nix::unistd::Pid;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let allowed = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
        let cpu = (0..CpuSet::count())
            .find(|&c| allowed.is_set(c).unwrap_or(false))
            .expect("a CPU to run on");
        let pin = move || {
            let mut set = CpuSet::new();
            set.set(cpu).unwrap();
            sched_setaffinity(Pid::from_raw(0), &set).unwrap();
        };
        let stop = Arc::new(AtomicBool::new(false));
        // Two busy threads and the one asking, all on one CPU: it waits most of the time.
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    pin();
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        let found = std::thread::spawn(move || {
            pin();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(5) {
                if oversubscribed() {
                    // Read again only after LOAD_CHECK_EVERY: the budget sees the same state.
                    return Some(SpinBudget::new(Duration::from_micros(200)).next_spin());
                }
                std::hint::spin_loop();
            }
            None
        })
        .join()
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        for thread in busy {
            thread.join().unwrap();
        }
        let spin = found
            .expect("a thread sharing its CPU with two busy ones never found it oversubscribed");
        assert_eq!(spin, OVERSUBSCRIBED_SPIN, "a full budget is capped there");
    }
}
