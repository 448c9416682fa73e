//! Timing loops and their summaries: [`Latency`] (median, p99) and calls per second.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The distribution of one latency measurement, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// The median.
    pub median_us: f64,
    /// The 99th percentile.
    pub p99_us: f64,
    /// Timed samples.
    pub samples: usize,
}

impl Latency {
    /// Summarises `samples` (in any order).
    pub fn from_samples(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        Latency {
            median_us: micros(percentile(&samples, 50.0)),
            p99_us: micros(percentile(&samples, 99.0)),
            samples: samples.len(),
        }
    }
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs `call(i)` `warmup` times untimed, then `samples` times timed one by one.
pub fn time_sync<E>(
    warmup: usize,
    samples: usize,
    mut call: impl FnMut(u64) -> Result<(), E>,
) -> Result<Latency, E> {
    for i in 0..warmup {
        call(i as u64)?;
    }
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let start = Instant::now();
        call((warmup + i) as u64)?;
        times.push(start.elapsed());
    }
    Ok(Latency::from_samples(times))
}

/// [`time_sync`] for async calls.
pub async fn time_async<E, F: Future<Output = Result<(), E>>>(
    warmup: usize,
    samples: usize,
    mut call: impl FnMut(u64) -> F,
) -> Result<Latency, E> {
    for i in 0..warmup {
        call(i as u64).await?;
    }
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let start = Instant::now();
        call((warmup + i) as u64).await?;
        times.push(start.elapsed());
    }
    Ok(Latency::from_samples(times))
}

/// Calls `call(i)` one after another for `time`; returns calls per second.
pub async fn rate_async<E, F: Future<Output = Result<(), E>>>(
    time: Duration,
    mut call: impl FnMut(u64) -> F,
) -> Result<f64, E> {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < time {
        call(calls).await?;
        calls += 1;
    }
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

/// Calls `call(buffer)` (which hands its buffer back) up to `iterations` times or until `time`
/// has passed, at least once; returns MiB/s of `size`-byte payloads.
/// A client whose `add(i, i)` the throughput loop calls, checking the sum.
pub trait CheckedAdd: Clone + Send + 'static {
    /// Calls `add(i, i)` and checks the result.
    fn checked_add(&self, i: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Calls per second of `tasks` tasks, each with a clone of `client`, calling `add` until `time`
/// has passed: the "calls in flight on one connection" figure.
pub async fn concurrent_rate<C: CheckedAdd>(
    client: &C,
    tasks: usize,
    time: Duration,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let client = client.clone();
        set.spawn(async move {
            let mut calls = 0u64;
            while start.elapsed() < time {
                client.checked_add(calls).await?;
                calls += 1;
            }
            anyhow::Ok(calls)
        });
    }
    let mut calls = 0;
    while let Some(done) = set.join_next().await {
        calls += done??;
    }
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

pub async fn bulk_async<E, F: Future<Output = Result<Vec<u8>, E>>>(
    size: usize,
    iterations: usize,
    time: Duration,
    mut buffer: Vec<u8>,
    mut call: impl FnMut(Vec<u8>) -> F,
) -> Result<Bulk, E> {
    let start = Instant::now();
    let mut done = 0;
    while done < iterations.max(1) && (done == 0 || start.elapsed() < time) {
        buffer = call(buffer).await?;
        done += 1;
    }
    Ok(Bulk::new(size, done, start.elapsed()))
}

/// One bulk transfer figure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bulk {
    /// Payload size in bytes.
    pub bytes: usize,
    /// Transfers timed.
    pub iterations: usize,
    /// `bytes * iterations / time`, in MiB/s.
    pub mib_per_s: f64,
}

impl Bulk {
    /// `iterations` transfers of `bytes` that took `elapsed` in all.
    pub fn new(bytes: usize, iterations: usize, elapsed: Duration) -> Bulk {
        let mib = (bytes * iterations) as f64 / super::MIB as f64;
        Bulk {
            bytes,
            iterations,
            mib_per_s: mib / elapsed.as_secs_f64().max(1e-9),
        }
    }
}

/// A payload of `len` bytes with a position-dependent pattern.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) + 7) as u8).collect()
}

/// Whether `data` looks like [`pattern`]`(len)`: its length and a few bytes.
pub fn check_pattern(data: &[u8], len: usize) -> bool {
    let at = |i: usize| (i.wrapping_mul(31) + 7) as u8;
    data.len() == len
        && [0, len / 3, len / 2, len.saturating_sub(1)]
            .iter()
            .all(|&i| len == 0 || data[i] == at(i))
}
