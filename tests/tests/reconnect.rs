//! The reconnect policy: a client whose connection breaks connects again by itself, with
//! backoff; calls in flight when it breaks fail with `Disconnected`, except that an
//! `#[rpc(idempotent)]` method is called again within its deadline; a non-idempotent method
//! is never sent twice. Servers are real (TCP), and the connection is broken by a relay that
//! closes it or by stopping the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{ClientOptions, ReconnectPolicy, RpcError, Server, ServerHandle};
use rpc_tests::relay::{RELAY_WAIT, Relay};
use rpc_tests::{bounded, eventually};
use tokio::sync::Notify;

/// A service whose calls can be held until the test lets them go.
#[rpc_core::service]
pub trait Ledger {
    /// Reads the balance (idempotent). The first call is held until released.
    #[rpc(idempotent)]
    async fn read(&self) -> u64;
    /// Adds one to the balance (not idempotent). Every call is held until released.
    async fn bump(&self) -> u64;
}

#[derive(Clone, Default)]
struct LedgerImpl {
    reads: Arc<AtomicU64>,
    bumps: Arc<AtomicU64>,
    balance: Arc<AtomicU64>,
    release: Arc<Notify>,
    hold_bumps: Arc<std::sync::atomic::AtomicBool>,
}

impl Ledger for LedgerImpl {
    async fn read(&self) -> u64 {
        if self.reads.fetch_add(1, Ordering::SeqCst) == 0 {
            self.release.notified().await;
        }
        self.balance.load(Ordering::SeqCst)
    }

    async fn bump(&self) -> u64 {
        self.bumps.fetch_add(1, Ordering::SeqCst);
        if self.hold_bumps.load(Ordering::SeqCst) {
            self.release.notified().await;
        }
        self.balance.fetch_add(1, Ordering::SeqCst) + 1
    }
}

async fn serve(ledger: &LedgerImpl, address: &str) -> ServerHandle {
    Server::new()
        .start(LedgerServer::new(ledger.clone()), &[address])
        .await
        .expect("start the ledger")
}

fn quick_policy() -> ReconnectPolicy {
    ReconnectPolicy::new().backoff(Duration::from_millis(20), Duration::from_millis(200))
}

async fn client(address: &str, policy: Option<ReconnectPolicy>) -> LedgerClient {
    let options = ClientOptions::default()
        .reconnect(policy)
        .call_timeout(Some(Duration::from_secs(10)));
    LedgerClient::connect_with(address, options)
        .await
        .expect("connect")
}

fn target(handle: &ServerHandle) -> String {
    handle
        .local_address()
        .trim_start_matches("tcp://")
        .to_owned()
}

#[tokio::test]
async fn a_restarted_server_is_called_again_by_the_same_client() {
    let ledger = LedgerImpl::default();
    let handle = serve(&ledger, "tcp://127.0.0.1:0").await;
    let address = handle.local_address();
    let ledger_client = client(&address, Some(quick_policy())).await;
    assert_eq!(ledger_client.bump().await.unwrap(), 1);
    handle.abort().await;
    // While it is down: a non-idempotent call fails (it is not retried), quickly.
    let started = Instant::now();
    let down = ledger_client.bump().await;
    assert!(
        matches!(
            down,
            Err(RpcError::Disconnected { .. } | RpcError::Connect { .. })
        ),
        "{down:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Back on the same address: the same client object calls it.
    let handle = serve(&ledger, &address).await;
    let back = async {
        loop {
            if let Ok(n) = ledger_client.bump().await {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(
        bounded(RELAY_WAIT, "a call after the restart", back).await,
        2
    );
    assert!(!ledger_client.client().is_closed());
    assert_eq!(ledger_client.client().connected_servers(), 1);
    handle.shutdown().await;
}

#[tokio::test]
async fn without_a_policy_the_client_stays_disconnected() {
    let ledger = LedgerImpl::default();
    let handle = serve(&ledger, "tcp://127.0.0.1:0").await;
    let address = handle.local_address();
    let ledger_client = client(&address, None).await;
    handle.abort().await;
    let handle = serve(&ledger, &address).await;
    assert!(eventually(RELAY_WAIT, || ledger_client.client().is_closed()).await);
    assert!(matches!(
        ledger_client.bump().await,
        Err(RpcError::Disconnected { .. })
    ));
    handle.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_call_in_flight_is_made_again_a_non_idempotent_one_never() {
    let ledger = LedgerImpl::default();
    let handle = serve(&ledger, "tcp://127.0.0.1:0").await;
    let relay = Relay::start(&target(&handle)).await;
    let ledger_client = client(relay.address(), Some(quick_policy())).await;

    // Idempotent: the first `read` is held, its connection closed under it; the client calls
    // again on a new connection and gets the answer.
    let read = tokio::spawn({
        let c = ledger_client.clone();
        async move { c.read().await }
    });
    assert!(eventually(RELAY_WAIT, || ledger.reads.load(Ordering::SeqCst) == 1).await);
    relay.close_all();
    let read = bounded(RELAY_WAIT, "the retried read", read).await.unwrap();
    assert_eq!(read.unwrap(), 0);
    assert_eq!(
        ledger.reads.load(Ordering::SeqCst),
        2,
        "read is made exactly twice"
    );
    assert!(relay.accepted() >= 2, "a second connection was made");

    // Not idempotent: the held `bump` fails with Disconnected and is not sent again.
    ledger.hold_bumps.store(true, Ordering::SeqCst);
    let bump = tokio::spawn({
        let c = ledger_client.clone();
        async move { c.bump().await }
    });
    assert!(eventually(RELAY_WAIT, || ledger.bumps.load(Ordering::SeqCst) == 1).await);
    relay.close_all();
    let bump = bounded(RELAY_WAIT, "the broken bump", bump).await.unwrap();
    assert!(
        matches!(bump, Err(RpcError::Disconnected { .. })),
        "{bump:?}"
    );
    ledger.hold_bumps.store(false, Ordering::SeqCst);
    // Its handler was dropped with the connection; a later call works, and bump ran once more
    // only because it was called once more.
    let later = async {
        loop {
            if let Ok(n) = ledger_client.bump().await {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert_eq!(bounded(RELAY_WAIT, "a later bump", later).await, 1);
    assert_eq!(ledger.bumps.load(Ordering::SeqCst), 2);
    ledger.release.notify_waiters();
    handle.shutdown().await;
}

#[tokio::test]
async fn an_idempotent_call_waits_out_a_restart_within_its_deadline() {
    let ledger = LedgerImpl::default();
    ledger.reads.store(1, Ordering::SeqCst); // no read is held
    let handle = serve(&ledger, "tcp://127.0.0.1:0").await;
    let address = handle.local_address();
    let ledger_client = client(&address, Some(quick_policy())).await;
    handle.abort().await;
    let restart = tokio::spawn({
        let (ledger, address) = (ledger.clone(), address.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            serve(&ledger, &address).await
        }
    });
    // Idempotent, 5 s deadline: retried with backoff until the server is back.
    let read = ledger_client
        .with_timeout(Some(Duration::from_secs(5)))
        .read()
        .await;
    assert_eq!(read.unwrap(), 0);
    restart.await.unwrap().shutdown().await;
}

#[tokio::test]
async fn retries_stop_at_the_deadline_and_attempts_back_off() {
    let ledger = LedgerImpl::default();
    let handle = serve(&ledger, "tcp://127.0.0.1:0").await;
    let relay = Relay::start(&target(&handle)).await;
    let policy = ReconnectPolicy::new()
        .backoff(Duration::from_millis(50), Duration::from_secs(1))
        .jitter(0.0);
    let ledger_client = client(relay.address(), Some(policy)).await;
    // Nothing answers any more: every attempt to connect fails.
    drop(relay);
    handle.abort().await;
    let started = Instant::now();
    let read = ledger_client
        .with_timeout(Some(Duration::from_millis(600)))
        .read()
        .await;
    let took = started.elapsed();
    assert!(read.is_err(), "{read:?}");
    // It gave up by its deadline (plus one attempt's worth), not before trying again.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        took >= Duration::from_millis(50),
        "took {took:?}: no backoff at all"
    );
}

#[tokio::test]
async fn a_policy_that_cannot_work_is_refused_when_connecting() {
    let ledger = LedgerImpl::default();
    let handle = serve(&ledger, "tcp://127.0.0.1:0").await;
    let bad = ReconnectPolicy::new().backoff(Duration::from_secs(2), Duration::from_secs(1));
    let options = ClientOptions::default().reconnect(Some(bad));
    let refused = LedgerClient::connect_with(&handle.local_address(), options).await;
    assert!(
        matches!(&refused, Err(RpcError::InvalidOptions { reason }) if reason.contains("minimum")),
        "{refused:?}"
    );
    handle.shutdown().await;
}
