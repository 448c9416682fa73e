//! Shared pieces of the integration suite: the `Probe` test service (and `Greeter`, a second
//! one to serve beside it), the list of transports the conformance suite runs on,
//! bounded-wait helpers, [`TestPki`], certificates made at run time for `tls://`, and
//! [`netns`], test hosts in network namespaces for the cross-host suites, and [`FieldText`],
//! for tests that record what `tracing` sees.

pub mod bench;
pub mod conformance;
mod counter;
mod field_text;
mod fixture;
mod greeter;
pub mod netns;
pub mod pki;
mod process;
mod raw;
pub mod relay;
pub mod shapes;
mod spawned;
pub mod stranger;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use rpc_core::{Context, Streaming};
use serde::{Deserialize, Serialize};

/// An application error of the probe service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeError {
    /// The caller asked for a failure with this code.
    Requested(u32),
}

/// The service the conformance suite calls: each method exercises one behaviour.
#[rpc_core::service]
pub trait Probe {
    /// Returns `data` unchanged.
    async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    /// Returns `a + b`.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Waits `delay_ms`, then returns `id`: replies come back out of order.
    async fn tag(&self, id: u64, delay_ms: u64) -> u64;
    /// Returns `len` bytes (to make a response of a chosen size).
    async fn fill(&self, len: u64) -> Vec<u8>;
    /// Never returns on its own (for deadlines, cancellation and a server that dies mid-call).
    async fn stall(&self);
    /// Fails with an application error when `code` is non-zero.
    async fn fail(&self, code: u32) -> Result<u32, ProbeError>;
    /// The caller's metadata value for `key`.
    async fn metadata(&self, key: String) -> Option<String>;
    /// Panics.
    async fn explode(&self);
    /// Streams `count` items of `size` bytes; item `i` is filled with `i % 251`.
    async fn items(&self, count: u64, size: u32) -> Streaming<serde_bytes::ByteBuf>;
    /// Streams `0..count`, then fails with `reason`.
    async fn items_then_fail(&self, count: u64, reason: String) -> Streaming<u64>;
    /// Streams `0, 1, 2, ...` forever; counts as stalled while its producer lives.
    async fn endless(&self) -> Streaming<u64>;
    /// Computes for `ms` milliseconds without yielding (a CPU-bound handler), then returns
    /// how many rounds it ran.
    async fn spin(&self, ms: u64) -> u64;
    /// Streams items of `size` bytes forever, counting each one produced in `produced`.
    async fn produce(&self, size: u32) -> Streaming<serde_bytes::ByteBuf>;
    /// The sum of the client's stream of numbers.
    async fn total(&self, numbers: Streaming<u64>) -> u64;
    /// Answers each number of the client's stream with the running total so far, starting
    /// from `start`.
    async fn running_total(&self, start: u64, numbers: Streaming<u64>) -> Streaming<u64>;
}

/// The wire id of the probe's method `name`.
pub fn probe_method_id(name: &str) -> u32 {
    ProbeClient::schema()
        .methods
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("the probe has no method '{name}'"))
        .id
}

pub use counter::SharedCounter;
pub use field_text::FieldText;
pub use fixture::{CustomTransport, Fixture, FixtureServer, TempDir, Transport, unique_name};
pub use greeter::{Greeter, GreeterBlockingClient, GreeterClient, GreeterImpl, GreeterServer};
pub use pki::TestPki;
pub use process::{ProbeProcess, kill_stalled_clients, mappings_of};
pub use raw::{raw_probe_connection, rss_kib, status_kib};
pub use spawned::{SpawnedServers, probe_server_path};

/// The probe implementation; counts the `stall` calls still running.
#[derive(Debug, Clone)]
pub struct ProbeImpl {
    /// `stall` calls running now (their futures not yet dropped); shared with the test when
    /// the probe runs in a child process.
    pub stalled: Arc<SharedCounter>,
    /// Items `produce` streams have produced (in this process).
    pub produced: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for ProbeImpl {
    fn default() -> Self {
        ProbeImpl::counting_in(Arc::new(SharedCounter::anonymous()))
    }
}

impl ProbeImpl {
    /// A probe that counts its stalled calls in `stalled`.
    pub fn counting_in(stalled: Arc<SharedCounter>) -> ProbeImpl {
        ProbeImpl {
            stalled,
            produced: Arc::default(),
        }
    }
}

struct StallGuard(Arc<SharedCounter>);

impl Drop for StallGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Probe for ProbeImpl {
    async fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn tag(&self, id: u64, delay_ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        id
    }

    async fn fill(&self, len: u64) -> Vec<u8> {
        vec![0xAB; len as usize]
    }

    async fn stall(&self) {
        self.stalled.fetch_add(1, Ordering::SeqCst);
        let _guard = StallGuard(self.stalled.clone());
        std::future::pending::<()>().await;
    }

    async fn fail(&self, code: u32) -> Result<u32, ProbeError> {
        if code == 0 {
            Ok(0)
        } else {
            Err(ProbeError::Requested(code))
        }
    }

    async fn metadata(&self, key: String) -> Option<String> {
        let context = Context::current().expect("handlers run inside a context");
        context.metadata(&key).map(str::to_owned)
    }

    async fn explode(&self) {
        panic!("the probe exploded on purpose");
    }

    async fn items(&self, count: u64, size: u32) -> Streaming<serde_bytes::ByteBuf> {
        let item = move |i: u64| serde_bytes::ByteBuf::from(vec![(i % 251) as u8; size as usize]);
        Streaming::from_iter((0..count).map(item))
    }

    async fn items_then_fail(&self, count: u64, reason: String) -> Streaming<u64> {
        let items = (0..count).map(Ok).chain(std::iter::once(Err(reason)));
        Streaming::try_from_stream(futures::stream::iter(items))
    }

    async fn endless(&self) -> Streaming<u64> {
        self.stalled.fetch_add(1, Ordering::SeqCst);
        let guard = StallGuard(self.stalled.clone());
        let numbers = futures::stream::unfold((0u64, guard), |(i, guard)| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Some((i, (i + 1, guard)))
        });
        Streaming::from_stream(numbers)
    }

    async fn spin(&self, ms: u64) -> u64 {
        let until = std::time::Instant::now() + Duration::from_millis(ms);
        let mut rounds = 0u64;
        while std::time::Instant::now() < until {
            rounds = std::hint::black_box(rounds + 1);
        }
        rounds
    }

    async fn produce(&self, size: u32) -> Streaming<serde_bytes::ByteBuf> {
        let produced = self.produced.clone();
        Streaming::from_iter(std::iter::repeat_with(move || {
            produced.fetch_add(1, Ordering::SeqCst);
            serde_bytes::ByteBuf::from(vec![7u8; size as usize])
        }))
    }

    async fn total(&self, mut numbers: Streaming<u64>) -> u64 {
        let mut sum = 0u64;
        while let Some(number) = numbers.next().await {
            match number {
                Ok(number) => sum = sum.wrapping_add(number),
                Err(_) => return u64::MAX,
            }
        }
        sum
    }

    async fn running_total(&self, start: u64, numbers: Streaming<u64>) -> Streaming<u64> {
        let totals = numbers.scan(start, |total, number| {
            let next = number.map(|n| {
                *total = total.wrapping_add(n);
                *total
            });
            std::future::ready(Some(next))
        });
        Streaming::try_from_stream(totals)
    }
}

/// Waits until `condition` holds, checking every 10 ms for at most `limit`; returns whether it
/// held.
pub async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits on this thread until `condition` holds, checking every 10 ms for at most `limit`;
/// returns whether it held. The blocking twin of [`eventually`].
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Awaits `future` for at most `limit`, panicking with `what` if it takes longer: no test can
/// hang CI.
pub async fn bounded<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}
