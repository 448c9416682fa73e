//! What `rpc-demo` does: serve the calculator on every transport, call each one, time the calls.

use std::time::{Duration, Instant};

use crate::calculator::{Calc, CalculatorBlockingClient, CalculatorClient, CalculatorServer};

/// Which generated client a measurement uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// `CalculatorClient`, on the caller's runtime.
    Async,
    /// `CalculatorBlockingClient`, on a thread of its own.
    Blocking,
}

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

/// Times `calls` sequential `add` calls of `call` after a warm-up, checking every answer.
fn time_calls(
    bound: &str,
    calls: usize,
    mut call: impl FnMut(i64) -> Result<i64, rpc_core::RpcError>,
) -> Result<Vec<Duration>, rpc_core::RpcError> {
    for i in 0..(calls / 10).max(10) as i64 {
        let sum = call(i)?;
        assert_eq!(sum, 2 * i, "{bound} answered add({i}, {i}) wrongly");
    }
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls as i64 {
        let start = Instant::now();
        let sum = call(i)?;
        samples.push(start.elapsed());
        assert_eq!(sum, 2 * i, "{bound} answered add({i}, {i}) wrongly");
    }
    samples.sort_unstable();
    Ok(samples)
}

/// Serves `Calc` on `address`, connects a client of `kind`, then times `calls` sequential
/// `add` calls after a warm-up, checking every answer. A `spawn:` address names a server the
/// client starts itself, so nothing is served here.
pub async fn measure(
    address: &str,
    kind: ClientKind,
    calls: usize,
) -> Result<LatencyRow, rpc_core::RpcError> {
    let defaults = (rpc_core::Server::new(), rpc_core::ClientOptions::default());
    measure_with(address, kind, calls, defaults).await
}

/// [`measure`] with this server and these client options (`tls://`'s certificates, say).
pub async fn measure_with(
    address: &str,
    kind: ClientKind,
    calls: usize,
    (server, options): (rpc_core::Server, rpc_core::ClientOptions),
) -> Result<LatencyRow, rpc_core::RpcError> {
    let server = if address.starts_with("spawn:") {
        None
    } else {
        Some(
            server
                .start(CalculatorServer::new(Calc), &[address])
                .await?,
        )
    };
    let bound = server
        .as_ref()
        .map_or_else(|| address.to_owned(), |s| s.local_address());
    let samples = match kind {
        ClientKind::Async => {
            let client = CalculatorClient::connect_with(&bound, options).await?;
            let mut samples = Vec::with_capacity(calls);
            for i in 0..(calls / 10).max(10) as i64 + calls as i64 {
                let start = Instant::now();
                let sum = client.add(i, i).await?;
                samples.push(start.elapsed());
                assert_eq!(sum, 2 * i, "{bound} answered add({i}, {i}) wrongly");
            }
            let mut timed = samples.split_off(samples.len() - calls);
            timed.sort_unstable();
            timed
        }
        ClientKind::Blocking => {
            let at = bound.clone();
            tokio::task::spawn_blocking(move || {
                let client = CalculatorBlockingClient::connect_with(&at, options)?;
                time_calls(&at, calls, |i| client.add(i, i))
            })
            .await
            .expect("the blocking client's thread")?
        }
    };
    if let Some(server) = server {
        server.shutdown().await;
    }
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
