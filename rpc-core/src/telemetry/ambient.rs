//! [`Ambient`]: what a call made from inside a handler inherits from the call being served
//! (the server's `Context` of the running handler carries it).

use std::time::{Duration, Instant};

use super::TraceParent;

/// The call a task is serving, as far as the calls it makes need to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ambient {
    /// The served call's trace and its own (the server span's) span id.
    pub(crate) trace: TraceParent,
    /// When the served call's caller stops waiting, if it set a timeout.
    pub(crate) deadline: Option<Instant>,
}

impl Ambient {
    /// The ambient call of a handler serving a call with `metadata` and `deadline`, and the
    /// caller's trace parent if it sent a valid one (else the call starts a new trace).
    pub(crate) fn serving(
        metadata: &[(String, String)],
        deadline: Option<Instant>,
    ) -> (Ambient, Option<TraceParent>) {
        let parent = metadata
            .iter()
            .find(|(key, _)| key == super::TRACEPARENT)
            .and_then(|(_, value)| value.parse::<TraceParent>().ok());
        let trace = parent.map_or_else(TraceParent::new_trace, |parent| parent.new_span());
        (Ambient { trace, deadline }, parent)
    }

    /// `timeout` shortened to what is left at `now` of the served call's deadline, if that is
    /// sooner.
    pub(crate) fn limit(&self, timeout: Option<Duration>, now: Instant) -> Option<Duration> {
        let Some(deadline) = self.deadline else {
            return timeout;
        };
        let left = deadline.saturating_duration_since(now);
        Some(timeout.map_or(left, |own| own.min(left)))
    }
}
