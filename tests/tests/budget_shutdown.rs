//! A graceful shutdown gives the running calls of a connection whose read loop waits for the
//! requests' budget their grace period: they finish and their client reads the answers.
//! (Found by a hostile review: they used to be aborted at once.)

use std::time::{Duration, Instant};

use rpc_core::Server;
use rpc_core::transport::Frame;
use rpc_core::wire::{self, Extension, Header, Kind};
use rpc_tests::{ProbeImpl, ProbeServer, TempDir, probe_method_id, raw_probe_connection};

/// `tag(call_id, 500)` with 8 KiB of metadata.
fn padded_tag(call_id: u64) -> Frame {
    let header = Header {
        kind: Kind::Request,
        method: probe_method_id("tag"),
        call_id,
    };
    let extension = Extension {
        timeout_micros: None,
        metadata: vec![("pad".to_owned(), "x".repeat(8 << 10))],
    };
    wire::message_frame(header, Some(&extension), &(call_id, 500u64)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_the_running_calls_of_a_connection_at_its_budget() {
    let dir = TempDir::new();
    let server = Server::new()
        .max_connection_memory(64 << 10)
        .shutdown_grace(Duration::from_secs(5))
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &[&format!("unix://{}/s.sock", dir.0.display())],
        )
        .await
        .unwrap();
    let mut connection = raw_probe_connection(&server.local_address(), 16 << 20).await;
    // About 7 fit the 64 KiB budget and run; the read loop waits for the rest.
    for call_id in 1..=20 {
        connection.send(padded_tag(call_id)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.shutdown().await;
    eprintln!("shutdown took {:?}", started.elapsed());
    let mut answered = Vec::new();
    while let Ok(Ok(Some(frame))) =
        tokio::time::timeout(Duration::from_secs(3), connection.recv()).await
    {
        let header = Header::parse(frame.payload()).unwrap().header;
        answered.push((header.call_id, header.kind));
    }
    eprintln!("answers read after the shutdown: {answered:?}");
    assert!(
        answered.len() >= 7,
        "the calls running at shutdown (each 500 ms, grace 5 s) got {} answers",
        answered.len()
    );
}

/// A grace of `Duration::MAX` ("let running calls take as long as they need") is a grace, not
/// a panic ("overflow when adding durations"), on a socket and on a shared-memory connection
/// served from a dedicated thread: a call running when the shutdown starts is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_grace_is_not_a_panic() {
    use rpc_tests::{Fixture, Transport};
    for transport in [Transport::Unix, Transport::ShmNamed] {
        let fixture = Fixture::start(
            transport,
            Server::new()
                .shutdown_grace(Duration::MAX)
                .dedicated_threads(4),
        )
        .await;
        let probe = fixture.client().await.unwrap();
        assert_eq!(probe.add(1, 2).await.unwrap(), 3);
        let running = tokio::spawn({
            let probe = probe.clone();
            async move { probe.tag(7, 300).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let rpc_tests::FixtureServer::InProcess(handle) = fixture.handle else {
            unreachable!("an in-process server")
        };
        let shutdown = tokio::spawn(handle.shutdown());
        let outcome = tokio::time::timeout(Duration::from_secs(20), shutdown).await;
        assert!(
            matches!(outcome, Ok(Ok(()))),
            "{transport:?}: shutdown with an endless grace: {outcome:?}"
        );
        let answered = tokio::time::timeout(Duration::from_secs(20), running).await;
        assert!(
            matches!(answered, Ok(Ok(Ok(7)))),
            "{transport:?}: the call running at shutdown: {answered:?}"
        );
        drop(probe);
    }
}
