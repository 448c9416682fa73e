//! [`Plan`]: how many iterations and how much time each measurement gets, per mode.

use std::time::Duration;

/// Iteration counts and time budgets of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The mode's name: `full`, `quick` or `tiny`.
    pub mode: &'static str,
    /// Untimed calls (or round trips) before every latency measurement.
    pub warmup: usize,
    /// Timed sequential calls for the framework's and tarpc's small-call latency.
    pub latency_calls: usize,
    /// Timed round trips of each raw ping-pong baseline.
    pub raw_round_trips: usize,
    /// Duration of each in-process throughput measurement (1 and 32 in flight).
    pub throughput_time: Duration,
    /// Duration of the calls each of the client processes makes.
    pub processes_time: Duration,
    /// Client processes calling at once.
    pub client_processes: usize,
    /// Calls in flight on one connection for the concurrent throughput figure.
    pub in_flight: usize,
    /// Most 1 MiB echo calls (fewer if [`Plan::bulk_time`] runs out first).
    pub echo_small_iterations: usize,
    /// 64 MiB echo calls; 0 skips the 64 MiB echo.
    pub echo_large_iterations: usize,
    /// Time cap of each bulk measurement.
    pub bulk_time: Duration,
    /// Idle connections opened for the memory figure.
    pub idle_connections: usize,
    /// Copies of 1 MiB for the memcpy ceiling.
    pub memcpy_small_iterations: usize,
    /// Copies of 64 MiB for the memcpy ceiling.
    pub memcpy_large_iterations: usize,
    /// The longest any one phase (and so any wait on a child) may take.
    pub phase_limit: Duration,
}

impl Plan {
    /// The full run: stable figures, a few minutes on 2 cores.
    pub fn full() -> Plan {
        Plan {
            mode: "full",
            warmup: 2_000,
            latency_calls: 50_000,
            raw_round_trips: 50_000,
            throughput_time: Duration::from_secs(2),
            processes_time: Duration::from_secs(3),
            client_processes: 4,
            in_flight: 32,
            echo_small_iterations: 1_000,
            echo_large_iterations: 10,
            bulk_time: Duration::from_secs(4),
            idle_connections: 100,
            memcpy_small_iterations: 2_000,
            memcpy_large_iterations: 20,
            phase_limit: Duration::from_secs(120),
        }
    }

    /// `--quick`: the same figures, noisier, well under a minute.
    pub fn quick() -> Plan {
        Plan {
            mode: "quick",
            warmup: 200,
            latency_calls: 2_000,
            raw_round_trips: 5_000,
            throughput_time: Duration::from_millis(300),
            processes_time: Duration::from_millis(500),
            echo_small_iterations: 30,
            echo_large_iterations: 1,
            bulk_time: Duration::from_secs(1),
            memcpy_small_iterations: 200,
            memcpy_large_iterations: 2,
            phase_limit: Duration::from_secs(30),
            ..Plan::full()
        }
    }

    /// `--tiny` (hidden): just enough to see every path work, for the smoke test.
    pub fn tiny() -> Plan {
        Plan {
            mode: "tiny",
            warmup: 20,
            latency_calls: 200,
            raw_round_trips: 500,
            throughput_time: Duration::from_millis(100),
            processes_time: Duration::from_millis(100),
            echo_small_iterations: 3,
            echo_large_iterations: 0,
            bulk_time: Duration::from_millis(500),
            idle_connections: 20,
            memcpy_small_iterations: 10,
            memcpy_large_iterations: 0,
            ..Plan::quick()
        }
    }
}
