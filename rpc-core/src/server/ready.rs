//! [`Ready`]: the answers of calls that completed at once in a connection's read loop, held
//! back to leave in one write.

use super::dispatch::Outgoing;

/// The most answers held back to leave in one write (see also `BATCH_BYTES`). Small on
/// purpose: with many calls in flight, the client works on the first answers while this loop
/// runs the next requests, so both sides' CPUs stay busy. Holding answers until every waiting
/// request was run makes the two take turns instead: with 32 calls in flight on one Unix
/// connection, 8 gave 600-700k calls/s against 450-520k for 64 (client and server pinned to
/// one CPU each), and 290-360k against 205-280k unpinned; 4 was no better than 8.
const BATCH: usize = 8;

/// The most bytes of answers held back to leave in one write.
const BATCH_BYTES: usize = 64 * 1024;

/// Answers of calls that completed at once, held back to leave in one write.
#[derive(Default)]
pub(crate) struct Ready {
    answers: Vec<Outgoing>,
    bytes: usize,
}

impl Ready {
    pub(crate) fn push(&mut self, answer: Outgoing) {
        self.bytes += answer.len();
        self.answers.push(answer);
    }

    pub(crate) fn take(&mut self) -> Vec<Outgoing> {
        self.bytes = 0;
        std::mem::take(&mut self.answers)
    }

    /// Whether to send now: a batch is full, or no further request is waiting.
    pub(crate) fn is_due(&self, more_waiting: bool) -> bool {
        !self.answers.is_empty()
            && (self.answers.len() >= BATCH || self.bytes >= BATCH_BYTES || !more_waiting)
    }
}
