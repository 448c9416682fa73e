//! Streaming conformance: server, client and bidirectional streams, their ends (clean, with an
//! error, cancelled from either side, past the deadline), with the async client and the
//! blocking one.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::{Fixture, ProbeBlockingClient, ProbeClient, Transport, bounded, eventually};
use rpc_core::{RpcError, Server, StreamExt, Streaming};

const LIMIT: Duration = Duration::from_secs(20);

async fn client(fixture: &Fixture) -> ProbeClient {
    bounded(LIMIT, "connect", fixture.client())
        .await
        .expect("connect")
}

/// Conformance: server stream arrives whole and in order.
pub async fn server_stream_arrives_whole_and_in_order(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    // 300 items of 10 KB: about three credit windows.
    let mut items = probe.items(300, 10_000).await.unwrap();
    let mut count = 0u64;
    while let Some(item) = bounded(LIMIT, "an item", items.next()).await {
        let item = item.unwrap();
        assert_eq!(item.len(), 10_000);
        assert!(
            item.iter().all(|b| *b == (count % 251) as u8),
            "item {count}"
        );
        count += 1;
    }
    assert_eq!(count, 300);
    drop(items);
    assert_eq!(probe.client().pending_calls(), 0);
    // An empty stream ends at once.
    let mut none = probe.items(0, 1).await.unwrap();
    assert!(bounded(LIMIT, "the end", none.next()).await.is_none());
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
}

/// Conformance: client stream is summed.
pub async fn client_stream_is_summed(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let numbers = Streaming::from_iter(1..=20_000u64);
    let total = bounded(LIMIT, "total", probe.total(numbers)).await.unwrap();
    assert_eq!(total, 20_000 * 20_001 / 2);
    let empty = bounded(LIMIT, "total", probe.total(Streaming::empty())).await;
    assert_eq!(empty.unwrap(), 0);
    // Items sent from another task through a channel.
    let (sender, numbers) = Streaming::channel(4);
    let feeder = tokio::spawn(async move {
        for n in 0..100u64 {
            sender.send(n).await.unwrap();
        }
    });
    let total = bounded(LIMIT, "total", probe.total(numbers)).await.unwrap();
    assert_eq!(total, 99 * 100 / 2);
    feeder.await.unwrap();
}

/// Conformance: bidirectional stream answers as it goes.
pub async fn bidirectional_stream_answers_as_it_goes(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let (sender, numbers) = Streaming::channel(1);
    let mut totals = probe.running_total(100, numbers).await.unwrap();
    // Each answer comes before the next number is sent: the stream is live both ways.
    let mut expected = 100u64;
    for n in 1..=50u64 {
        bounded(LIMIT, "send", sender.send(n)).await.unwrap();
        expected += n;
        let total = bounded(LIMIT, "an answer", totals.next()).await;
        assert_eq!(total.unwrap().unwrap(), expected);
    }
    drop(sender);
    assert!(bounded(LIMIT, "the end", totals.next()).await.is_none());
}

/// Conformance: a stream ends with the producers error.
pub async fn a_stream_ends_with_the_producers_error(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let mut items = probe
        .items_then_fail(5, "disk on fire".into())
        .await
        .unwrap();
    for expected in 0..5u64 {
        let item = bounded(LIMIT, "an item", items.next()).await;
        assert_eq!(item.unwrap().unwrap(), expected);
    }
    match bounded(LIMIT, "the error", items.next()).await {
        Some(Err(RpcError::StreamFailed { method, reason })) => {
            assert_eq!(method, "items_then_fail");
            assert_eq!(reason, "disk on fire");
        }
        other => panic!("expected the producer's error, got {other:?}"),
    }
    assert!(items.next().await.is_none());
    // The client's own stream failing reaches the server's handler as an error.
    let numbers = Streaming::try_from_stream(futures::stream::iter(vec![
        Ok(1u64),
        Err("sensor unplugged"),
    ]));
    let total = bounded(LIMIT, "total", probe.total(numbers)).await.unwrap();
    assert_eq!(total, u64::MAX, "the handler saw its stream fail");
}

/// Conformance: dropping the stream cancels the producer.
pub async fn dropping_the_stream_cancels_the_producer(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let mut numbers = probe.endless().await.unwrap();
    for expected in 0..3u64 {
        let n = bounded(LIMIT, "an item", numbers.next()).await;
        assert_eq!(n.unwrap().unwrap(), expected);
    }
    assert_eq!(fixture.probe.stalled.load(Ordering::SeqCst), 1);
    drop(numbers);
    assert!(
        eventually(LIMIT, || fixture.probe.stalled.load(Ordering::SeqCst) == 0).await,
        "the server's producer outlived its cancelled call"
    );
    assert!(eventually(LIMIT, || probe.client().pending_calls() == 0).await);
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
}

/// Conformance: the deadline covers the whole stream.
pub async fn the_deadline_covers_the_whole_stream(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture)
        .await
        .with_timeout(Some(Duration::from_millis(300)));
    let started = Instant::now();
    let mut numbers = probe.endless().await.unwrap();
    let mut received = 0;
    let error = loop {
        match bounded(LIMIT, "an item", numbers.next()).await {
            Some(Ok(_)) => received += 1,
            Some(Err(error)) => break error,
            None => panic!("an endless stream ended"),
        }
    };
    assert!(received > 0, "items flowed before the deadline");
    assert!(
        matches!(error, RpcError::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        eventually(LIMIT, || fixture.probe.stalled.load(Ordering::SeqCst) == 0).await,
        "the producer outlived the deadline"
    );
}

/// A consumer that does not read holds the producer back: the server produces the stream's
/// credit window (1 MiB) and a little more, then waits; once the consumer reads, it goes on.
pub async fn a_slow_consumer_holds_the_producer_back(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let mut items = probe.produce(64 * 1024).await.unwrap();
    let first = bounded(LIMIT, "an item", items.next()).await;
    assert_eq!(first.unwrap().unwrap().len(), 64 * 1024);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 16 items fill the window; one more may overdraw it, and one waits in the producer.
    let window_items = rpc_core::wire::STREAM_WINDOW / (64 * 1024);
    // A `spawn:` server is another process: its counter is not ours to read.
    let produced = || fixture.probe.produced.load(Ordering::SeqCst);
    if transport != Transport::Spawn {
        assert!(
            produced() <= window_items + 3,
            "the producer ran {} items ahead of a consumer that read 1",
            produced()
        );
    }
    for _ in 0..100 {
        let item = bounded(LIMIT, "an item", items.next()).await;
        assert_eq!(item.unwrap().unwrap().len(), 64 * 1024);
    }
    if transport != Transport::Spawn {
        assert!(produced() >= 101 && produced() <= 101 + window_items + 3);
    }
    drop(items);
    assert_eq!(bounded(LIMIT, "a call", probe.add(1, 2)).await.unwrap(), 3);
}

/// The blocking client: an iterator for the server's items, a `Streaming` sent from the
/// calling thread, both at once, and a call after a stream dropped half-way.
pub async fn blocking_client_streams(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let address = fixture.address.clone();
    let options = fixture.options.clone().call_timeout(Some(LIMIT));
    // A plain thread, outside the runtime, as code without one would call.
    let thread = std::thread::spawn(move || {
        let fixture_address = address;
        let probe = ProbeBlockingClient::connect_with(&fixture_address, options).unwrap();
        let items: Vec<serde_bytes::ByteBuf> = probe
            .items(200, 10_000)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(items.len(), 200);
        assert!(items[199].iter().all(|b| *b == 199));
        let total = probe.total(Streaming::from_iter(1..=10_000u64)).unwrap();
        assert_eq!(total, 10_000 * 10_001 / 2);
        let totals: Vec<u64> = probe
            .running_total(0, Streaming::from_iter(1..=100u64))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(totals.len(), 100);
        assert_eq!(totals[99], 5050);
        let mut failing = probe.items_then_fail(2, "nope".into()).unwrap();
        assert_eq!(failing.next().unwrap().unwrap(), 0);
        assert_eq!(failing.next().unwrap().unwrap(), 1);
        assert!(matches!(
            failing.next(),
            Some(Err(RpcError::StreamFailed { .. }))
        ));
        assert!(failing.next().is_none());
        drop(failing);
        // Dropped half-way: the call is cancelled and the connection serves the next call.
        let mut endless = probe.endless().unwrap();
        assert_eq!(endless.next().unwrap().unwrap(), 0);
        drop(endless);
        assert_eq!(probe.add(2, 2).unwrap(), 4);
    });
    let outcome = tokio::task::spawn_blocking(move || thread.join());
    let joined = bounded(LIMIT * 2, "the blocking client", outcome).await;
    if let Err(panic) = joined.unwrap() {
        std::panic::resume_unwind(panic);
    }
    assert!(
        eventually(LIMIT, || fixture.probe.stalled.load(Ordering::SeqCst) == 0).await,
        "the producer outlived the blocking stream dropped half-way"
    );
}
