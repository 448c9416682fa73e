//! When waiting by spinning pays, and for how long.
//!
//! A receiver that spins sees a message within a cache-line transfer of its publication instead
//! of a kernel wake-up later, but only while the peer runs on another CPU at the same time.
//! Two things decide whether to spin at all:
//!
//! - [`oversubscribed`]: more threads want to run than there are CPUs (the kernel's count of
//!   runnable threads, read from `/proc/loadavg` at most every [`LOAD_CHECK_EVERY`], and
//!   smoothed over the last few readings). Then a spinner only takes time from the peer it
//!   waits for, so nobody spins.
//! - [`SpinBudget`]: per receiver, how long spinning has paid lately. It grows towards the
//!   configured maximum ([`TransportConfig::shm_spin`](crate::TransportConfig::shm_spin)) when
//!   the message came while spinning, and halves each time a spin ran out, down to nothing; at
//!   nothing, every [`PROBE_EVERY`]th wait spins the whole budget again, so a peer that became
//!   fast (or woke up: both sides may have stopped spinning) is noticed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the count of runnable threads is read again.
pub const LOAD_CHECK_EVERY: Duration = Duration::from_millis(20);

/// At a budget of nothing, every this many waits spin briefly again.
pub const PROBE_EVERY: u32 = 32;

/// Whether more threads are runnable than the machine has CPUs: spinning would only take CPU
/// time from the peer being waited for. Cheap: the kernel's count is read at most
/// every [`LOAD_CHECK_EVERY`] per process.
pub fn oversubscribed() -> bool {
    static STATE: OnceLock<LoadState> = OnceLock::new();
    STATE.get_or_init(LoadState::new).oversubscribed()
}

/// Recent readings of the runnable-thread count, smoothed.
struct LoadState {
    cpus: u64,
    started: Instant,
    /// Nanoseconds after `started` of the last reading; `u64::MAX` before the first.
    last: AtomicU64,
    /// How often lately the count exceeded the CPUs, 0 to [`SCORE_FULL`], smoothed over about
    /// eight readings: one reading over (a thread that ran for a moment) does not stop
    /// spinning, a machine that stays busy (over in three readings of four) does.
    score: AtomicU64,
    reading: Mutex<()>,
}

/// The score of a machine found oversubscribed at every reading.
const SCORE_FULL: u64 = 1024;

impl LoadState {
    fn new() -> LoadState {
        LoadState {
            cpus: online_cpus(),
            started: Instant::now(),
            last: AtomicU64::new(u64::MAX),
            score: AtomicU64::new(0),
            reading: Mutex::new(()),
        }
    }

    fn oversubscribed(&self) -> bool {
        let now = self.started.elapsed().as_nanos() as u64;
        let last = self.last.load(Ordering::Relaxed);
        let due =
            last == u64::MAX || now.saturating_sub(last) >= LOAD_CHECK_EVERY.as_nanos() as u64;
        // One reader at a time; the others use the score as it is meanwhile.
        if due && let Ok(_reading) = self.reading.try_lock() {
            let over = runnable_threads().is_some_and(|running| running > self.cpus);
            let sample = if over { SCORE_FULL } else { 0 };
            let score = if last == u64::MAX {
                sample
            } else {
                (self.score.load(Ordering::Relaxed) * 7 + sample) / 8
            };
            self.score.store(score, Ordering::Relaxed);
            self.last.store(now, Ordering::Relaxed);
        }
        self.score.load(Ordering::Relaxed) > SCORE_FULL * 3 / 4
    }
}

/// The machine's online CPUs: the count of runnable threads is the whole machine's, so it is
/// compared with all of them, not with the CPUs this process is pinned to.
fn online_cpus() -> u64 {
    // SAFETY: sysconf only reads a system setting.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if online > 0 {
        online as u64
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get()) as u64
    }
}

/// The kernel's count of runnable threads (the reader itself included): the fourth field of
/// `/proc/loadavg`, `running/total`. `None` where it cannot be read.
fn runnable_threads() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let field = text.split_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

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

    /// How long to spin for the next wait: zero when the machine is oversubscribed or spins
    /// have kept missing (except for an occasional short probe).
    pub fn next_spin(&mut self) -> Duration {
        if self.max.is_zero() || oversubscribed() {
            return Duration::ZERO;
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
    fn an_empty_budget_probes_now_and_then() {
        let mut budget = SpinBudget::new(Duration::from_micros(160));
        for _ in 0..20 {
            budget.miss();
        }
        if oversubscribed() {
            // A busy machine spins not at all; nothing more to see here.
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
    fn the_runnable_count_is_read() {
        // Linux always has /proc/loadavg; this process itself is running.
        let running = runnable_threads().expect("read /proc/loadavg");
        assert!(running >= 1);
    }
}
