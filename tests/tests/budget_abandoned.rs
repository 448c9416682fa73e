//! A connection the server has stopped reading (its requests' budget is spent by calls that
//! never finish) still notices when its peer leaves: its calls are aborted, its admission and
//! its bytes of the connection's and the server's budget come back, and a few such attackers
//! cannot drain the server-wide pool for good. Checked in this process with small budgets and
//! against `probe-server` with the defaults, on unix and on shm (dedicated thread and runtime).
//! (Found by a hostile review; these failed before `FrameReceiver::peer_gone`.)

use std::time::Duration;

use rpc_core::Server;
use rpc_core::transport::Frame;
use rpc_core::wire::{self, Extension, Header, Kind};
use rpc_tests::{
    ProbeClient, ProbeImpl, ProbeProcess, ProbeServer, TempDir, eventually, probe_method_id,
    raw_probe_connection, unique_name,
};

/// A `stall()` call whose frame carries `padding` bytes of metadata (any client may attach
/// metadata; the request's size is what the budget counts).
fn padded_stall(call_id: u64, padding: usize) -> Frame {
    let header = Header {
        kind: Kind::Request,
        method: probe_method_id("stall"),
        call_id,
    };
    let extension = Extension {
        timeout_micros: None,
        metadata: vec![("pad".to_owned(), "x".repeat(padding))],
    };
    wire::message_frame(header, Some(&extension), &()).unwrap()
}

/// One attacker: a first stalled call of `padding` bytes, then a second one that does not fit
/// the budget left, so the read loop waits; then the client goes away.
async fn abandon(address: &str, padding: usize) {
    let mut connection = raw_probe_connection(address, 128 << 20).await;
    connection.send(padded_stall(1, padding)).await.unwrap();
    // Small enough to go through whatever the server reads; too big for the budget left.
    connection.send(padded_stall(2, 32 << 10)).await.unwrap();
    // Let the server read both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(connection);
}

/// In this process, with small budgets (64 KiB a connection, 256 KiB the server): the same
/// logic as the defaults, scaled down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_connections_drain_the_server_for_good_unix() {
    let dir = TempDir::new();
    let probe = ProbeImpl::default();
    let server = Server::new()
        .max_connection_memory(64 << 10)
        .max_server_memory(256 << 10)
        .start(
            ProbeServer::new(probe.clone()),
            &[&format!("unix://{}/a.sock", dir.0.display())],
        )
        .await
        .unwrap();
    let address = server.local_address();

    // One attacker: one call stalls, the read loop waits for budget, the client leaves.
    abandon(&address, 60 << 10).await;
    let gone = eventually(Duration::from_secs(5), || server.connections() == 0).await;
    eprintln!(
        "after the first attacker left: connections {}, stalled calls {}",
        server.connections(),
        probe.stalled.load(std::sync::atomic::Ordering::SeqCst)
    );

    // Four more: together they hold 300 KiB of the server's 256 KiB requests pool.
    for _ in 0..4 {
        abandon(&address, 60 << 10).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connections = server.connections();
    let stalled = probe.stalled.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("all five attackers gone: connections {connections}, stalled calls {stalled}");

    // A new, well-behaved client: an inline call works, one that runs as a task never does.
    let bystander = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(bystander.add(1, 2).await.unwrap(), 3);
    let tagged = tokio::time::timeout(Duration::from_secs(5), bystander.tag(7, 1)).await;
    eprintln!("bystander's tag(7, 1): {tagged:?}");

    let shutdown = std::time::Instant::now();
    server.shutdown().await;
    eprintln!("shutdown took {:?}", shutdown.elapsed());

    assert!(
        gone,
        "a connection whose peer left still counts after 5 s (its calls never aborted)"
    );
    assert_eq!(connections, 0, "connections of departed peers still held");
    assert_eq!(stalled, 0, "calls of departed peers still running");
    assert!(
        matches!(tagged, Ok(Ok(7))),
        "a new client's task call is never served after the attackers left: {tagged:?}"
    );
}

/// The same against a `probe-server` process with the default budgets (8 MiB a connection,
/// 256 MiB the server) and its 128 MiB frame limit: three connections suffice.
async fn against_process(address: &str, options: &[&str]) {
    let server = ProbeProcess::spawn(&[options, &[address]].concat());
    server.expect_line("listening on");
    // 100 MiB each: the first two take 200 MiB of the server's requests pool, the third's
    // first call waits for the server's pool, first in line; all three leave.
    for _ in 0..3 {
        abandon(address, 100 << 20).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bystander = ProbeClient::connect(address).await.unwrap();
    assert_eq!(bystander.add(1, 2).await.unwrap(), 3);
    let tagged = tokio::time::timeout(Duration::from_secs(5), bystander.tag(7, 1)).await;
    let rss = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(str::to_owned);
    eprintln!("{address}: bystander's tag(7, 1) after the attackers left: {tagged:?}; {rss:?}");
    assert!(
        matches!(tagged, Ok(Ok(7))),
        "{address}: a task call is never served once three clients came and went: {tagged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_connections_drain_a_default_server_unix() {
    let dir = TempDir::new();
    against_process(&format!("unix://{}/a.sock", dir.0.display()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_connections_drain_a_default_server_shm_dedicated() {
    against_process(&format!("shm://{}", unique_name("abandon")), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_connections_drain_a_default_server_shm_runtime() {
    against_process(
        &format!("shm://{}", unique_name("abandon")),
        &["--dedicated-threads", "0"],
    )
    .await;
}
