//! The generated async client as a `tower::Service`: tower's own layers (timeout, rate limit,
//! retry, load shedding, concurrency limit, buffer) stacked in one `ServiceBuilder` over real
//! servers on `tcp://`, each layer's effect seen at the caller or at the server; tower's p2c
//! balancer over three servers; and getting the `RpcError` back out of tower's `BoxError`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use rpc_core::tower::balance::p2c::Balance;
use rpc_core::tower::buffer::Buffer;
use rpc_core::tower::discover::{Change, ServiceList};
use rpc_core::tower::load::{CompleteOnResponse, PendingRequestsDiscover};
use rpc_core::tower::load_shed::error::Overloaded;
use rpc_core::tower::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
use rpc_core::tower::timeout::error::Elapsed;
use rpc_core::tower::util::BoxCloneService;
use rpc_core::tower::util::rng::HasherRng;
use rpc_core::tower::{BoxError, RetryIdempotent, Service, ServiceBuilder, ServiceExt};
use rpc_core::{RpcError, Server, ServerHandle, Streaming};
use rpc_tests::{bounded, eventually};

const LIMIT: Duration = Duration::from_secs(20);

/// A service whose server counts what reaches it.
#[rpc_core::service]
pub trait Ledger {
    /// The balance of `account` (always 100), answered after `hold_ms`.
    #[rpc(idempotent)]
    async fn balance(&self, account: &str, hold_ms: u64) -> u64;
    /// Adds `amount` to the server's total and returns the new total, after `hold_ms`: calling
    /// it twice adds twice, so it is not idempotent.
    async fn deposit(&self, account: String, amount: u64, hold_ms: u64) -> u64;
    /// The name of the server answering.
    #[rpc(idempotent)]
    async fn whoami(&self) -> String;
    /// Streams `0..count`: no request variant (called on the client only).
    async fn history(&self, count: u64) -> Streaming<u64>;
}

/// What reached one server.
#[derive(Debug, Default)]
struct Stats {
    balance_calls: AtomicUsize,
    deposit_calls: AtomicUsize,
    whoami_calls: AtomicUsize,
    total: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    arrivals: Mutex<Vec<Instant>>,
}

/// Counts a handler as running while it lives.
struct Running(Arc<Stats>);

impl Running {
    fn new(stats: &Arc<Stats>) -> Running {
        stats.arrivals.lock().unwrap().push(Instant::now());
        let now = stats.running.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_running.fetch_max(now, Ordering::SeqCst);
        Running(stats.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct LedgerImpl {
    name: String,
    stats: Arc<Stats>,
}

impl Ledger for LedgerImpl {
    async fn balance(&self, _account: &str, hold_ms: u64) -> u64 {
        self.stats.balance_calls.fetch_add(1, Ordering::SeqCst);
        let _running = Running::new(&self.stats);
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        100
    }

    async fn deposit(&self, _account: String, amount: u64, hold_ms: u64) -> u64 {
        self.stats.deposit_calls.fetch_add(1, Ordering::SeqCst);
        let _running = Running::new(&self.stats);
        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
        (self
            .stats
            .total
            .fetch_add(amount as usize, Ordering::SeqCst)
            + amount as usize) as u64
    }

    async fn whoami(&self) -> String {
        self.stats.whoami_calls.fetch_add(1, Ordering::SeqCst);
        self.name.clone()
    }

    async fn history(&self, count: u64) -> Streaming<u64> {
        Streaming::from_iter(0..count)
    }
}

/// A ledger server and its counters.
struct Replica {
    handle: ServerHandle,
    address: String,
    stats: Arc<Stats>,
}

impl Replica {
    /// Serves a ledger named `name` on `address` (such as `tcp://127.0.0.1:0`).
    async fn start(name: &str, address: &str) -> Replica {
        let stats = Arc::new(Stats::default());
        let ledger = LedgerImpl {
            name: name.to_owned(),
            stats: stats.clone(),
        };
        let handle = Server::new()
            .start(LedgerServer::new(ledger), &[address])
            .await
            .expect("start a ledger server");
        Replica {
            address: handle.local_address(),
            handle,
            stats,
        }
    }

    async fn client(&self) -> LedgerClient {
        bounded(LIMIT, "connecting", LedgerClient::connect(&self.address))
            .await
            .expect("connect to the ledger")
    }
}

/// The parameters of [`stack`].
struct Limits {
    timeout: Duration,
    rate: u64,
    per: Duration,
    concurrency: usize,
}

impl Default for Limits {
    /// Limits no test reaches unless it means to.
    fn default() -> Self {
        Limits {
            timeout: LIMIT,
            rate: 10_000,
            per: Duration::from_secs(1),
            concurrency: 64,
        }
    }
}

type Stack = BoxCloneService<LedgerRequest, LedgerResponse, BoxError>;

/// The stack every test runs through: tower's layers only, none of them written here.
fn stack<S>(inner: S, limits: &Limits) -> Stack
where
    S: Service<LedgerRequest, Response = LedgerResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let backoff = ExponentialBackoffMaker::new(
        Duration::from_millis(20),
        Duration::from_millis(200),
        0.0,
        HasherRng::default(),
    )
    .expect("valid backoff")
    .make_backoff();
    let service = ServiceBuilder::new()
        // One shared, cloneable handle (rate_limit's service is not `Clone`).
        .buffer(256)
        .timeout(limits.timeout)
        .rate_limit(limits.rate, limits.per)
        .retry(RetryIdempotent::new(3).backoff(backoff))
        .load_shed()
        .concurrency_limit(limits.concurrency)
        .service(inner);
    BoxCloneService::new(service)
}

fn balance(hold_ms: u64) -> LedgerRequest {
    LedgerRequest::Balance {
        account: "alice".to_owned(),
        hold_ms,
    }
}

fn deposit(amount: u64, hold_ms: u64) -> LedgerRequest {
    LedgerRequest::Deposit {
        account: "alice".to_owned(),
        amount,
        hold_ms,
    }
}

/// The `RpcError` inside `error`, which must be one.
fn rpc_error(error: BoxError) -> RpcError {
    match error.downcast::<RpcError>() {
        Ok(rpc) => *rpc,
        Err(other) => panic!("expected an RpcError, got {other:?}"),
    }
}

#[tokio::test]
async fn the_client_is_a_tower_service() {
    let replica = Replica::start("solo", "tcp://127.0.0.1:0").await;
    let mut client = replica.client().await;

    let request = balance(0);
    assert!(request.is_idempotent());
    assert_eq!(request.method_name(), "balance");
    assert!(!deposit(1, 0).is_idempotent());
    assert_eq!(
        format!("{:?}", deposit(5, 0)),
        r#"Deposit { account: "alice", amount: 5, hold_ms: 0 }"#
    );

    let ready = bounded(LIMIT, "ready", client.ready()).await.unwrap();
    let reply = bounded(LIMIT, "balance", Service::call(ready, request.clone())).await;
    assert!(
        matches!(reply, Ok(LedgerResponse::Balance(100))),
        "{reply:?}"
    );
    let reply = bounded(
        LIMIT,
        "whoami",
        client.clone().oneshot(LedgerRequest::Whoami {}),
    )
    .await;
    assert!(
        matches!(&reply, Ok(LedgerResponse::Whoami(name)) if name == "solo"),
        "{reply:?}"
    );
    assert_eq!(replica.stats.balance_calls.load(Ordering::SeqCst), 1);
    // The streaming method is still the client's own.
    let mut history = bounded(LIMIT, "history", client.history(3)).await.unwrap();
    let mut items = Vec::new();
    while let Some(item) = bounded(LIMIT, "an item", futures::StreamExt::next(&mut history)).await {
        items.push(item.unwrap());
    }
    assert_eq!(items, [0, 1, 2]);
}

#[tokio::test]
async fn the_timeout_layer_fires_as_elapsed() {
    let replica = Replica::start("slow", "tcp://127.0.0.1:0").await;
    let limits = Limits {
        timeout: Duration::from_millis(150),
        ..Limits::default()
    };
    let service = stack(replica.client().await, &limits);
    let started = Instant::now();
    let error = bounded(LIMIT, "a slow call", service.oneshot(balance(5_000)))
        .await
        .expect_err("the call outlives its timeout");
    let took = started.elapsed();
    assert!(error.is::<Elapsed>(), "expected Elapsed, got {error:?}");
    assert!(took >= Duration::from_millis(150), "fired early: {took:?}");
    assert!(took < Duration::from_secs(3), "fired late: {took:?}");
    // The call reached the server, and dropping it there ends the handler.
    assert_eq!(replica.stats.balance_calls.load(Ordering::SeqCst), 1);
    assert!(
        eventually(LIMIT, || replica.stats.running.load(Ordering::SeqCst) == 0).await,
        "the timed-out call is still running on the server"
    );
}

#[tokio::test]
async fn the_concurrency_limit_holds_at_the_server_and_load_shed_refuses_the_rest() {
    let replica = Replica::start("busy", "tcp://127.0.0.1:0").await;
    let limits = Limits {
        concurrency: 2,
        ..Limits::default()
    };
    let service = stack(replica.client().await, &limits);

    // Two long calls take both slots...
    let long: Vec<_> = (0..2)
        .map(|_| tokio::spawn(service.clone().oneshot(balance(1_000))))
        .collect();
    assert!(
        eventually(LIMIT, || replica.stats.running.load(Ordering::SeqCst) == 2).await,
        "the two calls did not reach the server"
    );
    // ... so further ones are shed at once rather than queued.
    for _ in 0..4 {
        let started = Instant::now();
        let error = bounded(LIMIT, "a shed call", service.clone().oneshot(balance(0)))
            .await
            .expect_err("no slot is free");
        assert!(
            error.is::<Overloaded>(),
            "expected Overloaded, got {error:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    for call in long {
        let reply = bounded(LIMIT, "a long call", call).await.unwrap();
        assert!(
            matches!(reply, Ok(LedgerResponse::Balance(100))),
            "{reply:?}"
        );
    }
    assert_eq!(replica.stats.max_running.load(Ordering::SeqCst), 2);
    assert_eq!(replica.stats.balance_calls.load(Ordering::SeqCst), 2);

    // Eight calls at once: never more than two run on the server; with their slots taken
    // the rest are shed, and a shed call never reaches the server.
    let calls: Vec<_> = (0..8)
        .map(|_| tokio::spawn(service.clone().oneshot(balance(300))))
        .collect();
    let mut served = 0;
    for call in calls {
        match bounded(LIMIT, "a call", call).await.unwrap() {
            Ok(LedgerResponse::Balance(100)) => served += 1,
            Ok(other) => panic!("unexpected reply {other:?}"),
            Err(error) => assert!(error.is::<Overloaded>(), "{error:?}"),
        }
    }
    assert!(served >= 2, "only {served} calls were served");
    assert_eq!(replica.stats.max_running.load(Ordering::SeqCst), 2);
    assert_eq!(
        replica.stats.balance_calls.load(Ordering::SeqCst),
        2 + served
    );
}

#[tokio::test]
async fn the_rate_limit_spreads_calls_over_time() {
    let replica = Replica::start("metered", "tcp://127.0.0.1:0").await;
    let per = Duration::from_millis(250);
    let limits = Limits {
        rate: 4,
        per,
        ..Limits::default()
    };
    let service = stack(replica.client().await, &limits);
    let started = Instant::now();
    let calls: Vec<_> = (0..12)
        .map(|_| tokio::spawn(service.clone().oneshot(balance(0))))
        .collect();
    for call in calls {
        let reply = bounded(LIMIT, "a call", call).await.unwrap();
        assert!(
            matches!(reply, Ok(LedgerResponse::Balance(100))),
            "{reply:?}"
        );
    }
    // Four calls per window: the fifth call arrives a window after the first, the ninth two.
    let mut arrivals = replica.stats.arrivals.lock().unwrap().clone();
    arrivals.sort();
    assert_eq!(arrivals.len(), 12);
    for (i, arrival) in arrivals.iter().enumerate() {
        let earliest = per * (i as u32 / 4);
        let at = arrival.duration_since(started);
        assert!(
            at >= earliest,
            "call {i} arrived at {at:?}, before {earliest:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "far slower than the rate"
    );
}

/// A balancer whose endpoints the test changes through discovery, behind the stack.
struct Discovered {
    service: Stack,
    changes: mpsc::UnboundedSender<Result<Change<usize, LedgerClient>, Infallible>>,
}

impl Discovered {
    fn new(first: LedgerClient) -> Discovered {
        let (changes, discover) = mpsc::unbounded();
        changes
            .unbounded_send(Ok(Change::Insert(0, first)))
            .unwrap();
        let balancer = Balance::new(PendingRequestsDiscover::new(
            discover,
            CompleteOnResponse::default(),
        ));
        Discovered {
            service: stack(Buffer::new(balancer, 64), &Limits::default()),
            changes,
        }
    }

    fn change(&self, change: Change<usize, LedgerClient>) {
        self.changes.unbounded_send(Ok(change)).unwrap();
    }
}

/// Starts `request` (which holds 500 ms on the server) through a balancer over `first`'s
/// server, then, once it runs there: takes that endpoint out of discovery, kills the server
/// (the call fails `Disconnected`), restarts it on the same address and puts the new
/// connection in. Returns the call's result and the restarted server.
async fn call_across_a_restart(
    first: Replica,
    request: LedgerRequest,
    running: impl Fn(&Stats) -> usize,
) -> (Result<LedgerResponse, BoxError>, Replica) {
    let discovered = Discovered::new(first.client().await);
    let call = tokio::spawn(discovered.service.clone().oneshot(request));
    assert!(
        eventually(LIMIT, || running(&first.stats) == 1).await,
        "the call did not reach the first server"
    );
    discovered.change(Change::Remove(0));
    let address = first.address.clone();
    bounded(LIMIT, "aborting", first.handle.abort()).await;
    let restarted = Replica::start("restarted", &address).await;
    assert_eq!(restarted.address, address);
    discovered.change(Change::Insert(1, restarted.client().await));
    let result = bounded(LIMIT, "the call", call).await.unwrap();
    (result, restarted)
}

#[tokio::test]
async fn retry_sends_an_idempotent_call_again_after_its_server_restarts() {
    let first = Replica::start("first", "tcp://127.0.0.1:0").await;
    let first_stats = first.stats.clone();
    let (result, restarted) = call_across_a_restart(first, balance(500), |stats| {
        stats.balance_calls.load(Ordering::SeqCst)
    })
    .await;
    assert!(
        matches!(result, Ok(LedgerResponse::Balance(100))),
        "{result:?}"
    );
    assert_eq!(first_stats.balance_calls.load(Ordering::SeqCst), 1);
    assert_eq!(restarted.stats.balance_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn retry_never_sends_a_non_idempotent_call_twice() {
    let first = Replica::start("first", "tcp://127.0.0.1:0").await;
    let first_stats = first.stats.clone();
    let (result, restarted) = call_across_a_restart(first, deposit(7, 500), |stats| {
        stats.deposit_calls.load(Ordering::SeqCst)
    })
    .await;
    // The caller gets the client's own error back out of tower's `BoxError`.
    let error = rpc_error(result.expect_err("a deposit cut off is not sent again"));
    assert!(matches!(error, RpcError::Disconnected { .. }), "{error:?}");
    assert_eq!(first_stats.deposit_calls.load(Ordering::SeqCst), 1);
    // The restarted server works (an idempotent call through it succeeds), yet it never saw
    // the deposit.
    let client = restarted.client().await;
    let reply = bounded(LIMIT, "balance", client.oneshot(balance(0))).await;
    assert!(
        matches!(reply, Ok(LedgerResponse::Balance(100))),
        "{reply:?}"
    );
    assert_eq!(restarted.stats.deposit_calls.load(Ordering::SeqCst), 0);
    assert_eq!(restarted.stats.total.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_layer_error_is_not_an_rpc_error_and_is_not_retried() {
    let replica = Replica::start("strict", "tcp://127.0.0.1:0").await;
    let limits = Limits {
        timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let service = stack(replica.client().await, &limits);
    // A layer's error is not an `RpcError`: `downcast` hands it back.
    let error = bounded(
        LIMIT,
        "a slow call",
        service.clone().oneshot(balance(2_000)),
    )
    .await
    .expect_err("times out");
    let error = error
        .downcast::<RpcError>()
        .expect_err("Elapsed is tower's");
    assert!(error.is::<Elapsed>(), "{error:?}");
    // The idempotent call that timed out was not sent again (Elapsed is not retryable).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(replica.stats.balance_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn p2c_balances_over_every_server() {
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(Replica::start(name, "tcp://127.0.0.1:0").await);
    }
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(replica.client().await);
    }
    let balancer = Balance::new(PendingRequestsDiscover::new(
        ServiceList::new(clients),
        CompleteOnResponse::default(),
    ));
    let service = stack(Buffer::new(balancer, 64), &Limits::default());
    // Thirty calls at once, each holding its server a moment: the least loaded of two
    // random servers gets each one.
    let calls: Vec<_> = (0..30)
        .map(|_| tokio::spawn(service.clone().oneshot(balance(50))))
        .collect();
    for call in calls {
        let reply = bounded(LIMIT, "a call", call).await.unwrap();
        assert!(
            matches!(reply, Ok(LedgerResponse::Balance(100))),
            "{reply:?}"
        );
    }
    let counts: Vec<usize> = replicas
        .iter()
        .map(|r| r.stats.balance_calls.load(Ordering::SeqCst))
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 30, "{counts:?}");
    assert!(
        counts.iter().all(|&n| n > 0),
        "a server got no call: {counts:?}"
    );
    // Sequential calls too reach every server, as its own name says.
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let reply = bounded(
            LIMIT,
            "whoami",
            service.clone().oneshot(LedgerRequest::Whoami {}),
        )
        .await;
        match reply {
            Ok(LedgerResponse::Whoami(name)) => names.insert(name),
            other => panic!("unexpected reply {other:?}"),
        };
    }
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
}
