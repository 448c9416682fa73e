//! A client learns in the handshake how many calls the server runs at once on its connection
//! (`max_in_flight`, 4096 by default) and queues the rest on its side, each within its own
//! deadline: 10,000 concurrent calls to a 300 ms handler all succeed. The server's limit
//! stays as protection against clients that ignore it (see `conformance`'s raw-frame tests).

use std::time::Duration;

use rpc_core::{RpcError, Server};
use rpc_tests::{ProbeClient, ProbeImpl, ProbeServer, TempDir, unique_name};

async fn ten_thousand_calls(address: &str) {
    let handle = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[address])
        .await
        .unwrap();
    let probe = ProbeClient::connect(&handle.local_address()).await.unwrap();
    let tasks: Vec<_> = (0..10_000u64)
        .map(|i| {
            let probe = probe.clone();
            tokio::spawn(async move { (i, probe.tag(i, 300).await) })
        })
        .collect();
    let mut failed = Vec::new();
    for task in tasks {
        let (i, tagged) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("every call ends within 60 s")
            .unwrap();
        match tagged {
            Ok(tag) => assert_eq!(tag, i),
            Err(error) => failed.push((i, error)),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of 10,000 calls failed, first {:?}",
        failed.len(),
        failed.first()
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_to_a_slow_handler_all_succeed_over_unix() {
    let dir = TempDir::new();
    ten_thousand_calls(&format!("unix://{}/bp.sock", dir.0.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_to_a_slow_handler_all_succeed_over_shm() {
    ten_thousand_calls(&format!("shm://{}", unique_name("bp"))).await;
}

/// A call that waits for a place still keeps its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_call_keeps_its_deadline() {
    let dir = TempDir::new();
    let handle = Server::new()
        .max_in_flight(1)
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &[&format!("unix://{}/d.sock", dir.0.display())],
        )
        .await
        .unwrap();
    let probe = ProbeClient::connect(&handle.local_address()).await.unwrap();
    let busy = tokio::spawn({
        let probe = probe.clone();
        async move { probe.tag(1, 2000).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let queued = probe
        .with_timeout(Some(Duration::from_millis(200)))
        .tag(2, 0)
        .await;
    assert!(
        matches!(queued, Err(RpcError::DeadlineExceeded { .. })),
        "{queued:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(busy.await.unwrap().unwrap(), 1);
    handle.shutdown().await;
}
