//! Streaming calls as they end: graceful shutdown mid-stream, deadlines, cancellation, and
//! panics on both sides. (Raw-protocol attacks: `streaming_attacks.rs`.)
//!
//! Every test runs a real server on a real socket (Unix domain sockets) in this process.
#![allow(unused_imports)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::transport::{Connection, FrameReceiver, FrameSender, TransportConfig};
use rpc_core::wire::{self, Extension, HEADER_LEN, Header, Hello, Kind, STREAM_WINDOW, WireError};
use rpc_core::{ClientOptions, Server, StreamExt, Streaming};
use rpc_tests::{
    ProbeBlockingClient, ProbeClient, ProbeImpl, ProbeServer, TempDir, bounded, eventually,
    probe_method_id,
};
use serde::{Deserialize, Serialize};

#[path = "support/stream_attack.rs"]
mod support;
#[allow(unused_imports)]
use support::*;

// ---------------------------------------------------------------------------------------------
// Graceful shutdown.
// ---------------------------------------------------------------------------------------------

/// A graceful shutdown lets running calls finish within the grace period; a server stream of
/// a few windows (4 MB) that the client reads at full speed is such a call.
/// The server keeps reading during the grace (credit, items, ends, cancels; new calls are
/// refused), so the stream goes on past its first window. (Found by review: the read loop used
/// to stop at once, and the stream stalled one window in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_a_stream_finish() {
    let dir = TempDir::new();
    let server = Server::new().shutdown_grace(Duration::from_secs(3));
    let (handle, _probe, address) = probe_server(server, &dir).await;
    let probe = ProbeClient::connect(&address).await.unwrap();
    let mut items = probe.items(400, 10_000).await.unwrap();
    assert!(items.next().await.unwrap().is_ok());
    let shutdown = tokio::spawn(handle.shutdown());
    let mut count = 1;
    let started = Instant::now();
    while let Some(item) = bounded(LIMIT, "an item", items.next()).await {
        if let Err(error) = item {
            panic!(
                "the stream failed after {count} items and {:?} of shutdown: {error}",
                started.elapsed()
            );
        }
        count += 1;
    }
    assert_eq!(count, 400);
    bounded(LIMIT, "the shutdown", shutdown).await.unwrap();
}

/// A graceful shutdown with server streams whose consumer never reads (one held back by
/// credit, one producing slowly) ends within the grace period and drops the producers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_is_not_held_by_an_unread_stream() {
    let dir = TempDir::new();
    let grace = Duration::from_millis(500);
    let (handle, probe_impl, address) =
        probe_server(Server::new().shutdown_grace(grace), &dir).await;
    let probe = ProbeClient::connect(&address).await.unwrap();
    let produced = probe.produce(64 * 1024).await.unwrap();
    let endless = probe.endless().await.unwrap();
    assert!(eventually(LIMIT, || probe_impl.stalled.load(Ordering::SeqCst) == 1).await);
    assert!(eventually(LIMIT, || probe_impl.produced.load(Ordering::SeqCst) >= 16).await);
    let started = Instant::now();
    bounded(LIMIT, "the shutdown", handle.shutdown()).await;
    assert!(
        started.elapsed() < grace + Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        eventually(LIMIT, || probe_impl.stalled.load(Ordering::SeqCst) == 0).await,
        "the producer outlived the server"
    );
    drop((produced, endless));
}

// ---------------------------------------------------------------------------------------------
// Deadlines and cancellation.
// ---------------------------------------------------------------------------------------------

/// A raw client sends a few items of a client stream and never its end: the call's deadline
/// fails it, and the connection serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_without_an_end_meets_its_deadline() {
    let dir = TempDir::new();
    let (_handle, _probe, address) = probe_server(Server::new(), &dir).await;
    let (mut tx, mut rx) = split(raw_connection(&address, ProbeClient::schema()).await);
    let total = probe_method_id("total");
    let started = Instant::now();
    tx.send(request_with_timeout(
        total,
        1,
        &(Placeholder::new(),),
        Duration::from_millis(300),
    ))
    .await
    .unwrap();
    for n in 0..10u64 {
        tx.send(frame(Kind::StreamItem, total, 1, &n))
            .await
            .unwrap();
    }
    match next_final(&mut rx, 1).await {
        Some((Kind::Error, 1, Some(WireError::DeadlineExceeded))) => {}
        other => panic!("expected the deadline, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Late items of that call are dropped; the connection goes on.
    tx.send(frame(Kind::StreamItem, total, 1, &1u64))
        .await
        .unwrap();
    tx.send(frame(
        Kind::Request,
        probe_method_id("add"),
        2,
        &(1i64, 1i64),
    ))
    .await
    .unwrap();
    assert!(matches!(
        next_final(&mut rx, 2).await,
        Some((Kind::Response, 2, None))
    ));
}

/// A raw client that never grants credit and never reads: the server's producer stays bounded
/// and a `Cancel` drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stream_is_bounded_and_cancellable() {
    let dir = TempDir::new();
    let (_handle, probe, address) = probe_server(Server::new(), &dir).await;
    let (mut tx, _rx) = split(raw_connection(&address, ProbeClient::schema()).await);
    let produce = probe_method_id("produce");
    tx.send(frame(Kind::Request, produce, 1, &(64u32 * 1024,)))
        .await
        .unwrap();
    let endless = probe_method_id("endless");
    tx.send(frame(Kind::Request, endless, 2, &()))
        .await
        .unwrap();
    assert!(eventually(LIMIT, || probe.stalled.load(Ordering::SeqCst) == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let produced = probe.produced.load(Ordering::SeqCst);
    let window_items = STREAM_WINDOW / (64 * 1024);
    assert!(
        produced <= window_items + 3,
        "{produced} items produced for a client that granted no credit"
    );
    tx.send(frame(Kind::Cancel, endless, 2, &())).await.unwrap();
    assert!(
        eventually(LIMIT, || probe.stalled.load(Ordering::SeqCst) == 0).await,
        "the cancelled producer lives on"
    );
}

/// `#[rpc(timeout = "none")]` on a streaming method: the client's default timeout does not cut
/// its stream short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_deadline_outlives_the_default_timeout() {
    let dir = TempDir::new();
    let (_handle, _hoard, address) = hoard_server(Server::new(), &dir).await;
    let options = ClientOptions::default().call_timeout(Some(Duration::from_millis(200)));
    let client = HoardClient::connect_with(&address, options).await.unwrap();
    let ticks: Vec<u64> = bounded(LIMIT, "the ticks", async {
        client
            .ticks(8, 100)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await
    })
    .await;
    assert_eq!(ticks, (0..8).collect::<Vec<_>>());
}

/// The blocking iterator dropped one item into a stream whose window is full of large items:
/// the next call on that client skips the late items and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_call_after_a_dropped_full_window() {
    let dir = TempDir::new();
    let (_handle, probe, address) = probe_server(Server::new(), &dir).await;
    let thread = std::thread::spawn(move || {
        let options = ClientOptions::default().call_timeout(Some(LIMIT));
        let client = ProbeBlockingClient::connect_with(&address, options).unwrap();
        for round in 0..3 {
            let mut items = client.produce(64 * 1024).unwrap();
            assert_eq!(items.next().unwrap().unwrap().len(), 64 * 1024);
            std::thread::sleep(Duration::from_millis(100));
            drop(items);
            assert_eq!(client.add(round, 1).unwrap(), round + 1);
        }
    });
    bounded(
        LIMIT,
        "the blocking client",
        tokio::task::spawn_blocking(move || thread.join()),
    )
    .await
    .unwrap()
    .unwrap();
    drop(probe);
}

// ---------------------------------------------------------------------------------------------
// Panics.
// ---------------------------------------------------------------------------------------------

/// The client's stream panics: the handler sees its stream fail, and the call ends at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_client_stream_fails_the_handlers_stream() {
    let dir = TempDir::new();
    let (_handle, _probe, address) = probe_server(Server::new(), &dir).await;
    let probe = ProbeClient::connect(&address).await.unwrap();
    let numbers = Streaming::from_stream(futures::stream::iter(0..10u64).map(|n| {
        assert!(n < 3, "the client's producer panicked on purpose");
        n
    }));
    let total = bounded(LIMIT, "total", probe.total(numbers)).await.unwrap();
    assert_eq!(total, u64::MAX, "the handler saw its stream fail");
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
}

/// A server stream's item whose `Serialize` panics: the call ends with an error at once (as a
/// panicking handler does), not at its deadline, and leaves nothing behind.
///
/// Was a bug: items were sized in `streaming::send_items` (server/streaming.rs, via
/// `ReplySink::prepare` -> `Answer::outgoing` -> `Reply::encoded_len`) outside the
/// `catch_unwind` that guards the handler and `items.next()`: the panic killed the call's task
/// before `Calls::finish`, so no final frame was sent and the call stayed in the connection's
/// table for good (counting against `max_in_flight`, holding graceful shutdown for its whole
/// grace, keeping the idle timeout from firing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_item_that_panics_in_serialize_fails_the_call() {
    let dir = TempDir::new();
    let grace = Duration::from_millis(300);
    let (handle, _hoard, address) = hoard_server(Server::new().shutdown_grace(grace), &dir).await;
    let options = ClientOptions::default().call_timeout(Some(Duration::from_secs(10)));
    let client = HoardClient::connect_with(&address, options).await.unwrap();
    let started = Instant::now();
    let mut bombs = client.bombs(3).await.unwrap();
    for expected in 0..3 {
        assert_eq!(bombs.next().await.unwrap().unwrap(), Bomb(expected));
    }
    let last = bounded(LIMIT, "the end", bombs.next()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call ended only at its deadline ({:?}): {last:?}",
        started.elapsed()
    );
    assert!(matches!(last, Some(Err(_))), "{last:?}");
    let shutdown = Instant::now();
    handle.shutdown().await;
    assert!(shutdown.elapsed() < grace + Duration::from_millis(500));
}

/// A client stream's item whose `Serialize` panics: the call fails at once, not at its
/// deadline.
///
/// Was a bug: the client's pump (client/streaming.rs `send_items`) encoded items in
/// `frames::item` outside its `catch_unwind`: the panic killed the pump task, no `StreamEnd`
/// was ever sent, and both the handler and the caller waited for the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_item_that_panics_in_serialize_fails_the_call() {
    let dir = TempDir::new();
    let (_handle, _hoard, address) = hoard_server(Server::new(), &dir).await;
    let options = ClientOptions::default().call_timeout(Some(Duration::from_secs(10)));
    let client = HoardClient::connect_with(&address, options).await.unwrap();
    let started = Instant::now();
    let items = Streaming::from_iter([Bomb(1), Bomb(2), Bomb(Bomb::ARMED)]);
    let outcome = bounded(LIMIT, "the call", client.count_bombs(items)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call ended only at its deadline ({:?}): {outcome:?}",
        started.elapsed()
    );
    assert_eq!(
        outcome.unwrap(),
        u64::MAX,
        "the handler saw its stream fail"
    );
}
