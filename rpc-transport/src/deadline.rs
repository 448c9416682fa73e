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
    /// The instant to give up at, reading the clock for `After` (`None` for a wait too long to
    /// be an instant).
    pub fn resolve(self) -> Option<Instant> {
        match self {
            Deadline::Never => None,
            Deadline::At(at) => Some(at),
            // A wait too long to be an instant is no deadline.
            Deadline::After(wait) => Instant::now().checked_add(wait),
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

/// The instant `wait` from now; a wait too long to be an instant (`Duration::MAX`, a spin
/// setting meaning "always") is a year, as good as never.
pub(crate) fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Deadline;
    use crate::{TransportConfig, TransportError};

    /// A wait too long to be an instant (`Duration::MAX`, a natural "as long as it takes")
    /// is no deadline, not a panic ("overflow when adding duration to instant").
    #[test]
    fn a_wait_past_the_end_of_time_is_no_deadline() {
        assert_eq!(Deadline::After(Duration::MAX).resolve(), None);
        assert!(Deadline::After(Duration::from_secs(1)).resolve().is_some());
    }

    /// The same for connect timeouts: a connect with `Duration::MAX` waits as long as it takes
    /// (here it is refused at once: no one listens).
    #[test]
    fn a_connect_timeout_past_the_end_of_time_is_no_limit() {
        let config = TransportConfig::default();
        for text in [
            "mem://no-one-listens-here",
            "mq://no-one-listens-here",
            "unix:@no-one-listens-here",
            "sysv-shm://no-one-listens-here",
        ] {
            let address = text.parse().unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::connect_blocking(&address, &config, Duration::MAX).map(drop)
            }));
            match outcome {
                Ok(Err(TransportError::Connect { .. })) => {}
                Ok(other) => panic!("{text}: {other:?}"),
                Err(_) => panic!("{text}: connecting with a timeout of Duration::MAX panicked"),
            }
        }
    }
}
