//! A slow consumer bounds its producer's memory: a `probe-server` process streams 1 GiB in
//! 1 MiB items to a client that reads one item per millisecond, and the server's peak resident
//! memory stays within 64 MiB of where it started, on Unix sockets and on shared memory (each
//! served the two ways a shared-memory connection can be). Every item arrives, in order.

use std::time::Duration;

use rpc_core::{ClientOptions, StreamExt};
use rpc_tests::{ProbeClient, ProbeProcess, TempDir, status_kib, unique_name};

const ITEMS: u64 = 1024;
const ITEM_SIZE: u32 = 1 << 20;
/// How far the producer's peak resident memory may rise above its start.
const BOUND_KIB: u64 = 64 * 1024;

async fn slow_consumer(address: &str, server_options: &[&str]) {
    let server = ProbeProcess::spawn(&[server_options, &[address]].concat());
    server.expect_line("listening on");
    let options = ClientOptions::default()
        .max_frame_size(2 << 20)
        .call_timeout(Some(Duration::from_secs(300)));
    let probe = ProbeClient::connect_with(address, options).await.unwrap();
    // Warm up the connection (and the server's first allocations) before measuring.
    let mut warm = probe.items(4, ITEM_SIZE).await.unwrap();
    while let Some(item) = warm.next().await {
        item.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = status_kib(server.pid(), "VmRSS:").unwrap();

    let mut items = probe.items(ITEMS, ITEM_SIZE).await.unwrap();
    let mut received = 0u64;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(20), items.next())
        .await
        .unwrap_or_else(|_| panic!("{address}: item {received} took over 20 s"))
    {
        let item = item.unwrap();
        assert_eq!(item.len(), ITEM_SIZE as usize);
        assert_eq!(
            item[0],
            (received % 251) as u8,
            "{address}: item {received}"
        );
        received += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(received, ITEMS);
    let peak = status_kib(server.pid(), "VmHWM:").unwrap();
    eprintln!(
        "{address}: producer RSS {start} KiB at start, peak {peak} KiB (+{} KiB) over {} MiB streamed",
        peak.saturating_sub(start),
        (ITEMS * u64::from(ITEM_SIZE)) >> 20
    );
    assert!(
        peak.saturating_sub(start) < BOUND_KIB,
        "{address}: the producer's peak RSS rose {} KiB above its start ({start} KiB)",
        peak.saturating_sub(start)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix() {
    let dir = TempDir::new();
    slow_consumer(&format!("unix://{}/stream.sock", dir.0.display()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_dedicated_thread() {
    slow_consumer(&format!("shm://{}", unique_name("stream")), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_runtime_served() {
    slow_consumer(
        &format!("shm://{}", unique_name("stream")),
        &["--dedicated-threads", "0"],
    )
    .await;
}
