//! What `rpc-demo` does: serve the calculator on every transport, call each one, time the calls.

use std::time::{Duration, Instant};

use crate::calculator::{Calc, CalculatorClient, CalculatorServer};

/// Latency figures of one transport.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// The address served and called.
    pub address: String,
    /// Calls timed.
    pub calls: usize,
    /// Median latency.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
}

/// The `p`-th percentile (0..=100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Serves `Calc` on `address`, connects a client, checks it answers correctly, then times
/// `calls` sequential `add` calls after a warm-up.
pub async fn measure(address: &str, calls: usize) -> Result<LatencyRow, rpc_core::RpcError> {
    let server = rpc_core::Server::new()
        .start(CalculatorServer::new(Calc), &[address])
        .await?;
    let bound = server.local_address();
    let client = CalculatorClient::connect(&bound).await?;
    for i in 0..(calls / 10).max(10) as i64 {
        let sum = client.add(i, 1).await?;
        assert_eq!(sum, i + 1, "{bound} answered add({i}, 1) wrongly");
    }
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls as i64 {
        let start = Instant::now();
        let sum = client.add(i, i).await?;
        samples.push(start.elapsed());
        assert_eq!(sum, 2 * i, "{bound} answered add({i}, {i}) wrongly");
    }
    drop(client);
    server.shutdown().await;
    samples.sort_unstable();
    Ok(LatencyRow {
        address: bound,
        calls,
        p50: percentile(&samples, 50.0),
        p99: percentile(&samples, 99.0),
    })
}

/// Formats a duration in microseconds with one decimal.
pub fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}
