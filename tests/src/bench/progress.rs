//! Progress lines on stderr, each with the time since the run started.

use std::time::Instant;

/// Prints progress to stderr.
#[derive(Debug)]
pub struct Progress {
    start: Instant,
}

impl Progress {
    /// Starts the clock.
    pub fn new() -> Progress {
        Progress {
            start: Instant::now(),
        }
    }

    /// Prints `message` with the elapsed time.
    pub fn note(&self, message: &str) {
        eprintln!("[{:6.1}s] {message}", self.start.elapsed().as_secs_f64());
    }

    /// Seconds since the start.
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}
