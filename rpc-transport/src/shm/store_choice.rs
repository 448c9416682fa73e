//! Which stores a large message is written into its bulk region with, chosen by how fast
//! large messages have lately gone out each way.
//!
//! The bytes of a large message are read next by another CPU. Written with ordinary stores
//! they sit modified in the writer's cache, and the reader fetches them from there; written
//! with non-temporal stores they go to memory, and the reader fetches them from there. Which
//! is faster depends on the machine, and on a virtual machine on the minute. On the 2-vCPU
//! machines here a 1 MiB echo over shm took 86-90 µs per round trip with ordinary stores on
//! both sides and 206-209 µs with non-temporal ones at one time, while at other times
//! ordinary stores ran at 1.0-1.8 GB/s against 6.3-8.0 GB/s (when fetching another CPU's
//! modified lines slowed to 1-2 GB/s). Mixing them can be worse than either (318 µs with
//! the server's replies non-temporal and the client's requests not): the state one side's
//! stores leave the lines in changes what the other side's next copy costs.
//!
//! So the sender measures instead of guessing, and what it measures is the interval from the
//! start of one large message to the start of its next, per byte: for an exchange that is the
//! round trip, both directions included; for a stream, its rate. Only the client learns: the
//! server writes its large messages the way the client's last one was written (`bulk.rs`), so
//! a client's probe tries a style on both sides at once, and the two sides cannot settle on a
//! mix that is worse than either.
//!
//! It keeps a smoothed cost for the style it uses. Every so often it writes a few messages the
//! other way: a probe whose cost (the median of its counted messages, each capped as the
//! smoothed cost's are) replaces what was known of that style. The first [`SETTLE`] messages
//! (large enough to measure) after any change of style are not counted: on the 2-vCPU VM here
//! the first cost up to 2.5 times the style's settled interval and the second 10-40% more, so
//! a probe that counted them judged the style by its change. A probe that comes out clearly
//! cheaper ([`MARGIN`]) switches styles, and the old style is probed again only
//! [`AFTER_SWITCH`] messages later; one that does not (or that measured nothing) makes the
//! next one twice as far away (up to [`MAX_PROBE_EVERY`] messages). The style in use getting
//! clearly dearer than the other's last probe switches back, and backs off the probes as a
//! losing one does. An interval far longer than any copy (the connection was idle) says
//! nothing and is dropped. A new connection starts with the style
//! this process's connections last settled on (non-temporal stores in a new process) and
//! probes the other after [`FIRST_PROBE`] messages, once it has measured its own.
//!
//! Neither style wins everywhere, nor on one machine all the time. On the AMD 2-vCPU VM, in
//! alternating runs against one server, a 1 MiB echo mostly ran at 9-12.8 GB/s with ordinary
//! stores forced on both sides and at 4.3-8.1 GB/s with non-temporal ones; but once, right
//! after a 64 MiB echo, ordinary stores ran at 0.9 GB/s for a whole run of 800 echoes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How a large message is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Stores {
    /// Non-temporal stores: the bytes go to memory (`large_copy::copy_streaming`).
    #[default]
    Streaming,
    /// Ordinary stores: the bytes stay in this CPU's cache (`large_copy::copy`).
    Cached,
}

impl Stores {
    fn other(self) -> Stores {
        match self {
            Stores::Streaming => Stores::Cached,
            Stores::Cached => Stores::Streaming,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Messages with the style a connection starts with before the first probe of the other
/// (once that style has a measured cost).
const FIRST_PROBE: u32 = 4;
/// Messages with a style a probe found cheaper before the one it replaced is probed again.
/// A probe of the losing style costs [`PROBE_RUN`] messages at its price and [`SETTLE`] more
/// on the way back; the learner used to probe again on the very next message.
const AFTER_SWITCH: u32 = 16;
/// The farthest probes get apart while the other style keeps losing.
pub(crate) const MAX_PROBE_EVERY: u32 = 512;
/// Messages after a change of style (and the first of a connection) that are not counted:
/// they pay for the change itself. Both sides' buffers are as the other style left them, and
/// on the 2-vCPU machines here the second message after a change still ran 10-40% off the
/// style's settled cost (the first, up to 2.5 times).
const SETTLE: u32 = 2;
/// Messages counted in one probe.
const PROBE_COUNTED: usize = 4;
/// Messages in one probe: the settling ones, then the counted ones.
const PROBE_RUN: u32 = SETTLE + PROBE_COUNTED as u32;
/// Weight of the newest measurement in the smoothed cost of the style in use.
const WEIGHT: f64 = 0.25;
/// A measurement counts as at most this multiple of the smoothed cost.
const OUTLIER: f64 = 2.0;
/// Smaller messages tell little (the fixed costs of a hand-over dominate): not counted.
const MIN_MEASURED: usize = 64 * 1024;
/// Intervals longer than this per KiB (20 MB/s) are idle time, not copying: dropped.
const IDLE_PER_KIB: f64 = 50_000.0;

/// A probe must come out at most this share of the current style's cost to switch, and the
/// current style must rise above the other's last cost by as much to switch back: noise
/// (and the application's own time between messages, which both styles' intervals include)
/// does not flip the choice.
const MARGIN: f64 = 0.9;

/// The style this process's connections last settled on (`Stores::index`): where a new
/// connection starts.
static LAST_BEST: AtomicUsize = AtomicUsize::new(0);

/// One sender's choice of [`Stores`], learned from the intervals between its messages.
#[derive(Debug)]
pub(crate) struct StoreChoice {
    /// The style in use.
    current: Stores,
    /// Nanoseconds per KiB, per style (`Stores::index`): smoothed for the current style, the
    /// last probe's for the other; `None` until measured.
    cost: [Option<f64>; 2],
    /// Messages written the current way since the last probe.
    since_probe: u32,
    probe_every: u32,
    /// The probe under way, if one is: messages still to write the other way, messages of it
    /// recorded, and the costs of those counted (the first `probe_counted`).
    probing: bool,
    probe_left: u32,
    probe_seen: u32,
    probe_counted: usize,
    probe_costs: [f64; PROBE_COUNTED],
    /// How the last message recorded was written, and how many recorded messages in a row
    /// (up to [`SETTLE`]) were written that way before it.
    last_used: Option<Stores>,
    settled: u32,
}

impl Default for StoreChoice {
    fn default() -> Self {
        let current = match LAST_BEST.load(Ordering::Relaxed) {
            1 => Stores::Cached,
            _ => Stores::Streaming,
        };
        StoreChoice {
            current,
            cost: [None, None],
            since_probe: 0,
            probe_every: FIRST_PROBE,
            probing: false,
            probe_left: 0,
            probe_seen: 0,
            probe_counted: 0,
            probe_costs: [0.0; PROBE_COUNTED],
            last_used: None,
            settled: 0,
        }
    }
}

impl StoreChoice {
    /// The style in use.
    #[cfg(test)]
    fn best(&self) -> Stores {
        self.current
    }

    /// The style to write the next message with: the current one, or now and then a run of
    /// [`PROBE_RUN`] messages the other way (once the current one has a cost to compare with).
    /// Off x86_64 both styles are the same copy: always [`Stores::Cached`].
    pub(crate) fn next(&mut self) -> Stores {
        if !cfg!(target_arch = "x86_64") {
            return Stores::Cached;
        }
        if !self.probing
            && self.since_probe >= self.probe_every
            && self.cost[self.current.index()].is_some()
        {
            self.since_probe = 0;
            self.probing = true;
            self.probe_left = PROBE_RUN;
            self.probe_seen = 0;
            self.probe_counted = 0;
        }
        if self.probe_left > 0 {
            self.probe_left -= 1;
            return self.current.other();
        }
        self.since_probe += 1;
        self.current
    }

    /// Takes in that the next message began `interval` after one of `bytes` written with
    /// `used` did. The [`SETTLE`] messages after a change of style are not counted: they pay
    /// for the change itself, which says little about either style. Nor is a small message,
    /// or an interval that was mostly idle.
    pub(crate) fn record(&mut self, used: Stores, bytes: usize, interval: Duration) {
        // The first messages of all count as a change too: they pay for faulting in the region.
        // Only messages large enough to measure settle a change: a small one touches little of
        // the region.
        if self.last_used.replace(used) != Some(used) {
            self.settled = 0;
        } else if bytes >= MIN_MEASURED {
            self.settled = (self.settled + 1).min(SETTLE);
        }
        let per_kib = interval.as_nanos() as f64 / (bytes.max(1) as f64 / 1024.0);
        let counted = self.settled >= SETTLE && bytes >= MIN_MEASURED && per_kib <= IDLE_PER_KIB;
        if used == self.current {
            if counted {
                let cost = &mut self.cost[used.index()];
                // One interval far above the rest (this thread was descheduled, say) moves
                // the smoothed cost by at most a quarter: only a lasting change flips styles.
                let smoothed =
                    cost.map_or(per_kib, |c| c + WEIGHT * (per_kib.min(OUTLIER * c) - c));
                *cost = Some(smoothed);
                // The current style got dearer than the other was when last probed.
                if self.cost[used.other().index()].is_some_and(|other| other < MARGIN * smoothed) {
                    // Back off as after a losing probe: styles that keep trading places
                    // (each cheap at first, dearer once settled) are not probed ever faster.
                    self.switch(self.backed_off());
                }
            }
            return;
        }
        if !self.probing {
            return;
        }
        self.probe_seen += 1;
        if counted && self.probe_counted < PROBE_COUNTED {
            // Capped as the smoothed cost's measurements are: with few messages counted (the
            // rest small or idle), one descheduled interval would otherwise decide the probe.
            let current = self.cost[self.current.index()];
            self.probe_costs[self.probe_counted] =
                current.map_or(per_kib, |c| per_kib.min(OUTLIER * c));
            self.probe_counted += 1;
        }
        if self.probe_seen < PROBE_RUN {
            return;
        }
        self.probing = false;
        if self.probe_counted == 0 {
            // Nothing measured (idle, or small messages): no verdict, and the next probe as
            // far away as after a losing one, so an idle-gapped sender is not kept probing.
            self.probe_every = self.backed_off();
            return;
        }
        let probed = median(&mut self.probe_costs[..self.probe_counted]);
        self.cost[used.index()] = Some(probed);
        if self.cost[self.current.index()].is_some_and(|current| probed < MARGIN * current) {
            self.switch(AFTER_SWITCH);
        } else {
            self.probe_every = self.backed_off();
        }
    }

    /// Twice the current distance between probes, up to [`MAX_PROBE_EVERY`].
    fn backed_off(&self) -> u32 {
        (self.probe_every * 2).min(MAX_PROBE_EVERY)
    }

    /// Makes the other style current, probing the old one again after `probe_every` messages
    /// (unless the new one gets clearly dearer than the old one's last cost first: then it
    /// switches straight back).
    fn switch(&mut self, probe_every: u32) {
        self.current = self.current.other();
        self.probe_every = probe_every;
        self.since_probe = 0;
        LAST_BEST.store(self.current.index(), Ordering::Relaxed);
    }
}

/// The median of `costs` (not empty; reordered): a probe's one slow interval does not decide
/// it.
fn median(costs: &mut [f64]) -> f64 {
    costs.sort_by(f64::total_cmp);
    let middle = costs.len() / 2;
    if costs.len().is_multiple_of(2) {
        (costs[middle - 1] + costs[middle]) / 2.0
    } else {
        costs[middle]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    /// Runs `messages` messages of 1 MiB, each `cost(style)` µs apart; returns the styles used.
    fn run(choice: &mut StoreChoice, messages: usize, cost: impl Fn(Stores) -> u64) -> Vec<Stores> {
        run_sized(choice, messages, MIB, cost)
    }

    /// As [`run`], with messages of `bytes`.
    fn run_sized(
        choice: &mut StoreChoice,
        messages: usize,
        bytes: usize,
        cost: impl Fn(Stores) -> u64,
    ) -> Vec<Stores> {
        (0..messages)
            .map(|_| {
                let used = choice.next();
                choice.record(used, bytes, Duration::from_micros(cost(used)));
                used
            })
            .collect()
    }

    fn share(used: &[Stores], style: Stores) -> f64 {
        used.iter().filter(|&&s| s == style).count() as f64 / used.len() as f64
    }

    /// A choice as a new process makes it (the tests share the process-wide start).
    fn fresh() -> StoreChoice {
        StoreChoice {
            current: Stores::Streaming,
            ..StoreChoice::default()
        }
    }

    #[test]
    fn starts_streaming_and_keeps_to_it_while_cached_stores_are_slower() {
        let mut choice = fresh();
        let used = run(&mut choice, 2000, |s| match s {
            Stores::Streaming => 100,
            Stores::Cached => 500,
        });
        assert_eq!(used[0], Stores::Streaming);
        // Probes of six messages, at most 512 apart once the other keeps losing.
        assert!(share(&used, Stores::Cached) < 0.035, "probes back off");
        assert!(share(&used[1000..], Stores::Cached) < 0.02);
        assert_eq!(choice.best(), Stores::Streaming);
    }

    #[test]
    fn switches_when_cached_stores_are_faster_and_back_when_they_slow_down() {
        let mut choice = fresh();
        let fast = run(&mut choice, 400, |s| match s {
            Stores::Streaming => 120,
            Stores::Cached => 80,
        });
        assert!(share(&fast[10..], Stores::Cached) > 0.9);
        assert_eq!(choice.best(), Stores::Cached);
        // The machine changes: fetching the other CPU's modified lines slows down. The
        // smoothed cost of the style in use sees it within a few messages.
        let slow = run(&mut choice, 400, |s| match s {
            Stores::Streaming => 120,
            Stores::Cached => 600,
        });
        assert!(share(&slow[10..], Stores::Streaming) > 0.9);
        assert_eq!(choice.best(), Stores::Streaming);
        // And recovers: the probes, however far apart, find it.
        let again = run(&mut choice, 4 * MAX_PROBE_EVERY as usize, |s| match s {
            Stores::Streaming => 120,
            Stores::Cached => 80,
        });
        assert_eq!(choice.best(), Stores::Cached);
        assert!(share(&again, Stores::Cached) > 0.5);
    }

    #[test]
    fn a_probe_does_not_count_the_message_that_pays_for_the_change() {
        let mut choice = fresh();
        let mut previous = None;
        // Cached stores are cheaper, but the first message after every change is slow.
        let used: Vec<Stores> = (0..200)
            .map(|_| {
                let style = choice.next();
                let micros = match (style, previous == Some(style)) {
                    (_, false) => 900,
                    (Stores::Streaming, true) => 120,
                    (Stores::Cached, true) => 80,
                };
                choice.record(style, MIB, Duration::from_micros(micros));
                previous = Some(style);
                style
            })
            .collect();
        assert_eq!(choice.best(), Stores::Cached);
        assert!(share(&used[100..], Stores::Cached) > 0.9);
    }

    /// Runs `messages` messages of 1 MiB that settle at `streaming` and `cached` µs, the
    /// first messages after each change of style costing `after_change` times as much (the
    /// first, the second, ...); returns the styles used.
    fn run_with_changes(
        choice: &mut StoreChoice,
        messages: usize,
        [streaming, cached]: [f64; 2],
        after_change: &[f64],
    ) -> Vec<Stores> {
        let mut previous = (None, 0);
        (0..messages)
            .map(|_| {
                let style = choice.next();
                let in_a_row = if previous.0 == Some(style) {
                    previous.1 + 1
                } else {
                    0
                };
                let settled = match style {
                    Stores::Streaming => streaming,
                    Stores::Cached => cached,
                };
                let factor = after_change.get(in_a_row).copied().unwrap_or(1.0);
                choice.record(style, MIB, Duration::from_secs_f64(settled * factor / 1e6));
                previous = (Some(style), in_a_row);
                style
            })
            .collect()
    }

    #[test]
    fn a_change_that_takes_two_messages_to_settle_neither_misleads_nor_costs_much() {
        let mut choice = fresh();
        // As measured on a 2-vCPU VM: settled, cached stores 110 µs per message and
        // non-temporal ones 220 µs; the first two messages after a change 2.5 and 1.3 times.
        let used = run_with_changes(&mut choice, 1000, [220.0, 110.0], &[2.5, 1.3]);
        assert_eq!(choice.best(), Stores::Cached);
        assert!(
            share(&used[..40], Stores::Cached) > 0.5,
            "cached stores found early"
        );
        // Each probe of the losing style costs its messages: they stay a few per cent.
        assert!(
            share(&used, Stores::Streaming) < 0.06,
            "{}",
            share(&used, Stores::Streaming)
        );
        assert!(share(&used[500..], Stores::Streaming) < 0.03);
    }

    #[test]
    fn a_second_message_dearer_after_each_change_does_not_hide_the_cheaper_style() {
        // Cached stores are 15% cheaper once settled, but the second message after a change
        // costs 30% more (the first, twice as much). A probe judged by the mean of messages
        // two and three puts them at 195.5 µs, within the margin of 200; the median of the
        // four after the settling ones, at 170.
        let mut choice = fresh();
        let used = run_with_changes(&mut choice, 1000, [200.0, 170.0], &[2.0, 1.3]);
        assert_eq!(choice.best(), Stores::Cached);
        assert!(share(&used[500..], Stores::Cached) > 0.9);
    }

    #[test]
    fn small_messages_do_not_settle_a_change() {
        let mut choice = fresh();
        // A change, then small messages, then a large one: still settling, not counted.
        choice.record(Stores::Cached, MIB, Duration::from_micros(100));
        for _ in 0..SETTLE {
            choice.record(Stores::Streaming, 4096, Duration::from_micros(1));
        }
        choice.record(Stores::Streaming, MIB, Duration::from_micros(100));
        assert_eq!(choice.cost, [None, None]);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn small_messages_and_idle_gaps_are_not_measured() {
        let mut choice = fresh();
        choice.record(Stores::Streaming, 4096, Duration::ZERO);
        assert_eq!(choice.cost, [None, None], "too small to tell");
        choice.record(Stores::Streaming, MIB, Duration::MAX);
        assert_eq!(choice.cost, [None, None], "an idle gap, not a copy");
        // Idle gaps in a probe leave it without a figure: the style in use stays.
        for _ in 0..FIRST_PROBE {
            assert_eq!(choice.next(), Stores::Streaming);
            choice.record(Stores::Streaming, MIB, Duration::from_micros(200));
        }
        for _ in 0..PROBE_RUN {
            assert_eq!(choice.next(), Stores::Cached);
            choice.record(Stores::Cached, MIB, Duration::MAX);
        }
        assert_eq!(choice.best(), Stores::Streaming);
        assert_eq!(choice.cost[Stores::Cached.index()], None);
        assert_eq!(
            choice.probe_every,
            2 * FIRST_PROBE,
            "an empty probe backs off as a losing one does"
        );
    }

    #[test]
    fn messages_too_small_to_measure_leave_the_style_alone() {
        let mut choice = fresh();
        let used = run_sized(&mut choice, 100, 32 * 1024, |_| 100);
        assert!(
            used.iter().all(|&s| s == Stores::Streaming),
            "no probe without a figure"
        );
    }

    #[test]
    fn one_slow_interval_does_not_flip_the_choice() {
        let mut choice = fresh();
        run(&mut choice, 50, |s| match s {
            Stores::Streaming => 300,
            Stores::Cached => 220,
        });
        assert_eq!(choice.best(), Stores::Cached);
        while choice.probing || choice.last_used != Some(Stores::Cached) || choice.settled < SETTLE
        {
            let used = choice.next();
            let micros = if used == Stores::Cached { 220 } else { 300 };
            choice.record(used, MIB, Duration::from_micros(micros));
        }
        // A single interval of more than three times the usual (a descheduled thread).
        choice.record(Stores::Cached, MIB, Duration::from_micros(800));
        assert_eq!(choice.best(), Stores::Cached);
    }
}
