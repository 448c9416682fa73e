//! [`Deadline`]: when a blocking operation gives up.

use std::time::{Duration, Instant};

/// When a blocking operation gives up. `After` is turned into an instant only if the operation
/// has to wait, so the fast path reads no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Wait as long as it takes.
    Never,
    /// Give up at this instant.
    At(Instant),
    /// Give up this long after the operation starts waiting.
    After(Duration),
}

impl Deadline {
    /// The instant to give up at, reading the clock for `After`.
    pub fn resolve(self) -> Option<Instant> {
        match self {
            Deadline::Never => None,
            Deadline::At(at) => Some(at),
            Deadline::After(wait) => Some(Instant::now() + wait),
        }
    }
}

impl From<Option<Instant>> for Deadline {
    fn from(deadline: Option<Instant>) -> Self {
        deadline.map_or(Deadline::Never, Deadline::At)
    }
}

impl From<Instant> for Deadline {
    fn from(deadline: Instant) -> Self {
        Deadline::At(deadline)
    }
}
