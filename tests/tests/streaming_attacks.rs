//! Hostile clients (raw frames) and a hostile server against streaming calls: stream frames
//! that do not fit the call they name, items beyond the credit granted, and credit against the
//! connection's memory budget. (Shutdown, deadlines and panics: `streaming_lifecycle.rs`.)
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
// Stray stream frames.
// ---------------------------------------------------------------------------------------------

/// Stream frames naming no call, credit for calls that send no stream, absurd credit, a
/// stream's end twice: none of these hurts the server or the connection, which answers the
/// next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_stream_frames_are_harmless() {
    let dir = TempDir::new();
    let (_handle, _probe, address) = probe_server(Server::new(), &dir).await;
    let (mut tx, mut rx) = split(raw_connection(&address, ProbeClient::schema()).await);
    let add = probe_method_id("add");
    let total = probe_method_id("total");
    // Before any request: items, an end and credit for calls that never existed.
    tx.send(frame(Kind::StreamItem, total, 77, &5u64))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamEnd, total, 77, &None::<String>))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, total, 77, &u64::MAX))
        .await
        .unwrap();
    // Credit for a call that sends no stream while it runs, and huge credit twice.
    tx.send(frame(Kind::Request, add, 1, &(2i64, 3i64)))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, add, 1, &u64::MAX))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, add, 1, &u64::MAX))
        .await
        .unwrap();
    assert!(matches!(
        next_final(&mut rx, 1).await,
        Some((Kind::Response, 1, None))
    ));
    // A client stream ended twice, with items after its end.
    tx.send(frame(Kind::Request, total, 2, &(Placeholder::new(),)))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamItem, total, 2, &40u64))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamEnd, total, 2, &None::<String>))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamEnd, total, 2, &Some("again")))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamItem, total, 2, &1u64))
        .await
        .unwrap();
    let reply = bounded(LIMIT, "the reply", async {
        loop {
            let frame = rx.recv().await.unwrap().unwrap();
            let parsed = Header::parse(frame.payload()).unwrap();
            if parsed.header.call_id == 2 && parsed.header.kind == Kind::Response {
                return wire::decode::<u64>(parsed.body, "total").unwrap();
            }
        }
    })
    .await;
    assert_eq!(reply, 40);
    // Credit for a server stream overflowing the counter.
    let items = probe_method_id("items");
    tx.send(frame(Kind::Request, items, 3, &(3u64, 4u32)))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, items, 3, &u64::MAX))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, items, 3, &u64::MAX))
        .await
        .unwrap();
    assert!(matches!(
        next_final(&mut rx, 3).await,
        Some((Kind::Response, 3, None))
    ));
    tx.send(frame(Kind::Request, add, 4, &(20i64, 22i64)))
        .await
        .unwrap();
    assert!(matches!(
        next_final(&mut rx, 4).await,
        Some((Kind::Response, 4, None))
    ));
}

/// Items for a running call that takes no stream: a protocol error closes that connection
/// only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_for_a_call_without_a_stream_close_only_that_connection() {
    let dir = TempDir::new();
    let (_handle, probe, address) = probe_server(Server::new(), &dir).await;
    let bystander = ProbeClient::connect(&address).await.unwrap();
    let (mut tx, mut rx) = split(raw_connection(&address, ProbeClient::schema()).await);
    let stall = probe_method_id("stall");
    tx.send(frame(Kind::Request, stall, 1, &())).await.unwrap();
    assert!(eventually(LIMIT, || probe.stalled.load(Ordering::SeqCst) == 1).await);
    tx.send(frame(Kind::StreamItem, stall, 1, &1u64))
        .await
        .unwrap();
    let reason = expect_protocol_error(&mut rx).await;
    assert!(reason.contains("takes no stream"), "{reason}");
    assert!(
        bounded(LIMIT, "the close", rx.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        eventually(LIMIT, || probe.stalled.load(Ordering::SeqCst) == 0).await,
        "the closed connection's call was not dropped"
    );
    assert_eq!(bystander.add(1, 2).await.unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// Credit.
// ---------------------------------------------------------------------------------------------

/// Sends `count` items of `size` bytes for call 1 of `hoard` (which never reads them), then
/// looks whether the server named a protocol violation.
async fn flood_hoard(server: Server, size: usize, count: usize) -> Option<String> {
    let dir = TempDir::new();
    let (_handle, hoard, address) = hoard_server(server, &dir).await;
    let bystander = HoardClient::connect(&address).await.unwrap();
    let (mut tx, mut rx) = split(raw_connection(&address, HoardClient::schema()).await);
    let method = hoard_method_id("hoard");
    tx.send(frame(Kind::Request, method, 1, &(Placeholder::new(),)))
        .await
        .unwrap();
    assert!(eventually(LIMIT, || hoard.hoarding.load(Ordering::SeqCst) == 1).await);
    let item = serde_bytes::ByteBuf::from(vec![7u8; size]);
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            if tx
                .send(frame(Kind::StreamItem, method, 1, &item))
                .await
                .is_err()
            {
                return;
            }
        }
        // Keep our direction open.
        std::future::pending::<()>().await;
    });
    let outcome = tokio::time::timeout(Duration::from_secs(3), next_final(&mut rx, 0)).await;
    sender.abort();
    // Whatever happened, the server still serves others.
    let ticks: Vec<u64> = bystander
        .ticks(2, 1)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(ticks, vec![0, 1]);
    match outcome {
        Ok(Some((Kind::Error, 0, Some(WireError::Protocol(reason))))) => Some(reason),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(_) => None,
    }
}

/// A client that sends well beyond its credit (to a handler that never reads) is told so and
/// closed, once it is more than one frame beyond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_beyond_credit_are_a_protocol_error() {
    // 32 KiB items: 40 of them are 1.25 MiB, beyond the window plus one 64 KiB frame.
    let reason = flood_hoard(Server::new().max_frame_size(64 * 1024), 32 * 1024, 40).await;
    let reason = reason.expect("the server named no violation");
    assert!(reason.contains("beyond"), "{reason}");
}

/// A sender may overdraw its credit by the one item it sends while it has any credit left.
/// The server tolerated an overdraw of a whole maximum-size frame (16 MiB by default) in any
/// number of frames instead, so a hostile client could send 17 MiB per stream: 1.5 MiB (the
/// window and 16 further items of 32 KiB) went unnoticed.
///
/// Was a bug: `Inbox::deliver` (rpc-core/src/stream/inbox.rs) checked `received > granted +
/// max_frame`; it now refuses a frame that *starts* beyond the credit, the sender's rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdrawing_by_more_than_one_item_is_a_protocol_error() {
    let window_items = (STREAM_WINDOW as usize) / (32 * 1024);
    let reason = flood_hoard(Server::new(), 32 * 1024, window_items + 16).await;
    assert!(
        reason.is_some(),
        "the server accepted 16 items beyond the window and one overdrawing item"
    );
}

/// A fake server that sends a server stream's items far beyond the client's credit, in tiny
/// frames, to a consumer that does not read: the client must refuse (close the connection)
/// rather than queue them all.
///
/// Was a bug: the client's reader tolerated `STREAM_WINDOW + max_frame_size` = 17 MiB per
/// stream (rpc-core/src/stream/inbox.rs `deliver`), which in 17-byte frames is over a million
/// entries of an unbounded channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_beyond_credit_is_refused_by_the_client() {
    let dir = TempDir::new();
    let address = unix_address(&dir, "fake");
    let parsed: rpc_core::Address = address.parse().unwrap();
    let listener = rpc_core::transport::Listener::bind(&parsed, &TransportConfig::default())
        .await
        .unwrap();
    // 3 MiB of one-byte items: three windows.
    let frames = 3 * STREAM_WINDOW as usize / (HEADER_LEN + 1);
    let fake = tokio::spawn(async move {
        let connection = listener.accept().await.unwrap();
        let (mut tx, mut rx) = split(connection);
        let _hello = rx.recv().await.unwrap().unwrap();
        let welcome = wire::Welcome {
            max_frame_size: TransportConfig::default().max_frame_size as u64,
            max_in_flight: 100,
            schema_json: ProbeClient::schema().to_json(),
        };
        tx.send(frame(Kind::Welcome, 0, 0, &welcome)).await.unwrap();
        // The request (after the client's keepalive ping, which announces it answers pings).
        let h = loop {
            let frame = rx.recv().await.unwrap().unwrap();
            let header = Header::parse(frame.payload()).unwrap().header;
            if header.kind == Kind::Request {
                break header;
            }
        };
        let mut sent = 0;
        for i in 0..frames {
            let item = frame(Kind::StreamItem, h.method, h.call_id, &(i as u8 % 100));
            // A client that stopped reading (it refused the flood) fills the socket.
            match tokio::time::timeout(Duration::from_secs(1), tx.send(item)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
            sent += 1;
        }
        (sent, tx, rx)
    });
    let probe = ProbeClient::connect(&address).await.unwrap();
    let before = rpc_tests::status_kib(std::process::id(), "VmRSS:").unwrap();
    let items = probe.items(1, 1).await.unwrap();
    let (sent, _tx, _rx) = bounded(LIMIT, "the flood", fake).await.unwrap();
    let after = rpc_tests::status_kib(std::process::id(), "VmRSS:").unwrap();
    eprintln!(
        "the fake server sent {sent} frames ({} KiB); client RSS {before} -> {after} KiB",
        sent * (HEADER_LEN + 1) / 1024
    );
    let closed = eventually(Duration::from_secs(2), || probe.client().is_closed()).await;
    drop(items);
    assert!(
        closed,
        "the client queued three windows of items without complaint"
    );
}

// ---------------------------------------------------------------------------------------------
// Credit against the connection's memory budget.
// ---------------------------------------------------------------------------------------------

/// An honest client: three bidirectional calls with small items, whose answers it starts
/// reading a second later. Every call must complete.
///
/// SUSPECTED BUG (deadlock, not reliably reproduced): in one run of the whole file (CPU
/// contended), a call stopped after 43 answers and met its 15 s deadline; five later runs of
/// this test alone passed (in ~10 s). Suspected cause: client-stream items count against the
/// connection's request budget with 64 bytes of overhead per frame, but credit counts only
/// frame bytes, so a window of 17-byte items may cost ~4.8 MiB of budget (over the default
/// 4 MiB), and concurrent windows add up; while the budget is spent the read loop
/// (server/session.rs `reserve`, threaded.rs `take_waiting`) reads nothing, including the
/// `Credit` frames a handler blocked on its output credit waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "suspected deadlock between stream credit and the request budget; flaky, slow"]
async fn bidirectional_streams_with_small_items_do_not_deadlock() {
    let dir = TempDir::new();
    let (_handle, _probe, address) = probe_server(Server::new(), &dir).await;
    let options = ClientOptions::default().call_timeout(Some(Duration::from_secs(10)));
    let probe = ProbeClient::connect_with(&address, options).await.unwrap();
    const N: u64 = 200_000;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let numbers = Streaming::from_iter(std::iter::repeat_n(1u64, N as usize));
        streams.push(probe.running_total(0, numbers).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let results = futures::future::join_all(streams.into_iter().map(|mut totals| async move {
        let mut last = 0;
        let mut count = 0u64;
        while let Some(total) = totals.next().await {
            match total {
                Ok(total) => {
                    last = total;
                    count += 1;
                }
                Err(error) => return Err((count, error)),
            }
        }
        Ok((count, last))
    }))
    .await;
    for result in results {
        match result {
            Ok((count, last)) => assert_eq!((count, last), (N, N)),
            Err((count, error)) => panic!(
                "a bidirectional call failed after {count} answers and {:?}: {error}",
                started.elapsed()
            ),
        }
    }
}
