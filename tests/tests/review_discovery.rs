//! Review of `dns+tcp://`: `localhost` resolves (in hickory, RFC 6761) to 127.0.0.1 and ::1,
//! so two servers on one port, one on each, are two replicas of one name without touching
//! `/etc/hosts`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::{ClientOptions, Server, ServerHandle};
use rpc_tests::{bounded, eventually};

/// Counts the calls it serves.
#[rpc_core::service]
pub trait Tally {
    /// Waits `delay_ms`, then returns how many calls this replica has served.
    async fn hit(&self, delay_ms: u64) -> u64;
}

#[derive(Clone, Default)]
struct TallyImpl(Arc<AtomicU64>);

impl Tally for TallyImpl {
    async fn hit(&self, delay_ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Two servers on one port, on 127.0.0.1 and ::1, with their tallies; `None` where the
/// machine has no IPv6 loopback.
async fn two_replicas() -> Option<(u16, [(ServerHandle, Arc<AtomicU64>); 2])> {
    for _ in 0..20 {
        let v4 = TallyImpl::default();
        let first = Server::new()
            .start(TallyServer::new(v4.clone()), &["tcp://127.0.0.1:0"])
            .await
            .unwrap();
        let port: u16 = first.local_address().rsplit(':').next()?.parse().ok()?;
        let v6 = TallyImpl::default();
        match Server::new()
            .start(
                TallyServer::new(v6.clone()),
                &[&format!("tcp://[::1]:{port}")],
            )
            .await
        {
            Ok(second) => return Some((port, [(first, v4.0), (second, v6.0)])),
            Err(_) => first.abort().await,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_calls_spread_over_both_replicas_of_localhost() {
    let Some((port, replicas)) = two_replicas().await else {
        eprintln!("no ::1 here: skipped");
        return;
    };
    let client = TallyClient::connect_with(
        &format!("dns+tcp://localhost:{port}"),
        ClientOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || client
            .client()
            .connected_servers()
            == 2)
        .await
    );
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.hit(5).await })
        })
        .collect();
    for call in calls {
        bounded(Duration::from_secs(20), "a balanced call", call)
            .await
            .unwrap()
            .unwrap();
    }
    let served: Vec<u64> = replicas
        .iter()
        .map(|(_, n)| n.load(Ordering::SeqCst))
        .collect();
    assert_eq!(served.iter().sum::<u64>(), 200);
    assert!(served.iter().all(|&n| n >= 40), "unfair spread: {served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_one_replica_down_calls_go_to_the_other_and_dropping_closes_all() {
    let Some((port, [(first, _), (second, v6)])) = two_replicas().await else {
        eprintln!("no ::1 here: skipped");
        return;
    };
    let client = TallyClient::connect_with(
        &format!("dns+tcp://LOCALHOST.:{port}"),
        ClientOptions::default().call_timeout(Some(Duration::from_secs(5))),
    )
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || client
            .client()
            .connected_servers()
            == 2)
        .await
    );
    first.abort().await;
    assert!(
        eventually(Duration::from_secs(5), || client
            .client()
            .connected_servers()
            == 1)
        .await
    );
    for _ in 0..20 {
        bounded(Duration::from_secs(10), "a call", client.hit(0))
            .await
            .unwrap();
    }
    assert_eq!(v6.load(Ordering::SeqCst), 20);
    drop(client);
    assert!(
        eventually(Duration::from_secs(5), || second.connections() == 0).await,
        "a dropped dns+ client left {} connection(s) open",
        second.connections()
    );
}
