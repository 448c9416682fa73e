//! Misuse that explains itself: a blocking client where it would deadlock fails at once with
//! `BlockingInAsyncContext` (and works from `spawn_blocking`), and an async client whose
//! runtime has shut down fails with `RuntimeShutDown`, not with tokio's internal message.

use std::time::{Duration, Instant};

use rpc_core::{RpcError, Server};
use rpc_tests::{Fixture, ProbeBlockingClient, ProbeClient, Transport, bounded};

/// Nothing in this file waits longer than this.
const LIMIT: Duration = Duration::from_secs(20);

fn assert_refused_blocking(result: Result<impl std::fmt::Debug, RpcError>, started: Instant) {
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(1),
        "refused only after {elapsed:?}"
    );
    match result {
        Err(error @ RpcError::BlockingInAsyncContext { .. }) => {
            let message = error.to_string();
            assert!(message.contains("ProbeClient"), "{message}");
        }
        other => panic!("expected BlockingInAsyncContext, got {other:?}"),
    }
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_blocking_client_on_a_current_thread_runtime_fails_at_once_and_works_from_spawn_blocking()
{
    let fixture = Fixture::start(Transport::Unix, Server::new()).await;
    let address = fixture.address.clone();

    let started = Instant::now();
    assert_refused_blocking(ProbeBlockingClient::connect(&address), started);

    // Connected where blocking is fine, then called from the runtime's own thread.
    let at = address.clone();
    let probe = bounded(
        LIMIT,
        "connecting from spawn_blocking",
        tokio::task::spawn_blocking(move || ProbeBlockingClient::connect(&at)),
    )
    .await
    .unwrap()
    .expect("a spawn_blocking thread of a current-thread runtime may block");
    let started = Instant::now();
    assert_refused_blocking(probe.add(2, 3), started);

    // The same client from spawn_blocking: the runtime's thread is free to serve it.
    let from_pool = probe.clone();
    let sum = bounded(
        LIMIT,
        "a call from spawn_blocking",
        tokio::task::spawn_blocking(move || from_pool.add(2, 3)),
    )
    .await
    .unwrap();
    assert_eq!(sum.unwrap(), 5);

    // A spawned task of the current-thread runtime is refused too.
    let in_task = probe.clone();
    let started = Instant::now();
    let refused = tokio::spawn(async move { in_task.add(2, 3) })
        .await
        .unwrap();
    assert_refused_blocking(refused, started);
    fixture.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_client_on_a_multi_thread_worker_keeps_working() {
    let fixture = Fixture::start(Transport::Unix, Server::new()).await;
    let probe = ProbeBlockingClient::connect(&fixture.address).expect("connect on a worker");
    assert_eq!(probe.add(2, 3).unwrap(), 5);
    fixture.handle.shutdown().await;
}

#[tokio::test]
async fn a_mem_blocking_client_inside_a_runtime_fails_with_the_typed_error() {
    let fixture = Fixture::start(Transport::Mem, Server::new()).await;
    let started = Instant::now();
    assert_refused_blocking(ProbeBlockingClient::connect(&fixture.address), started);
    let at = fixture.address.clone();
    let started = Instant::now();
    let refused = bounded(
        LIMIT,
        "connecting from spawn_blocking",
        tokio::task::spawn_blocking(move || ProbeBlockingClient::connect(&at)),
    )
    .await
    .unwrap();
    assert_refused_blocking(refused, started);
    fixture.handle.shutdown().await;
}

#[test]
fn a_mem_blocking_client_from_a_plain_thread_is_refused_once_called_inside_a_runtime() {
    let server_runtime = multi_thread_runtime();
    let fixture = server_runtime.block_on(Fixture::start(Transport::Mem, Server::new()));
    let probe = ProbeBlockingClient::connect(&fixture.address).expect("a plain thread may connect");
    assert_eq!(probe.add(2, 3).unwrap(), 5);
    let other = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let refused = other.block_on(async { probe.add(2, 3) });
    assert_refused_blocking(refused, started);
    drop(other);
    assert_eq!(
        probe.add(4, 5).unwrap(),
        9,
        "still usable from a plain thread"
    );
    server_runtime.block_on(fixture.handle.shutdown());
}

#[test]
fn an_async_client_whose_runtime_shut_down_says_so() {
    let server_runtime = multi_thread_runtime();
    let fixture = server_runtime.block_on(Fixture::start(Transport::Unix, Server::new()));
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let probe = first
        .block_on(ProbeClient::connect(&fixture.address))
        .unwrap();
    assert_eq!(first.block_on(probe.add(2, 3)).unwrap(), 5);
    drop(first);

    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let outcome = second.block_on(bounded(LIMIT, "a call after shutdown", probe.add(2, 3)));
    assert!(started.elapsed() < Duration::from_secs(1));
    match outcome {
        Err(error @ RpcError::RuntimeShutDown) => {
            assert!(error.to_string().contains("runtime"), "{error}");
        }
        other => panic!("expected RuntimeShutDown, got {other:?}"),
    }
    assert!(probe.client().is_closed());
    drop(second);
    server_runtime.block_on(fixture.handle.shutdown());
}

#[test]
fn a_call_in_flight_when_the_clients_runtime_shuts_down_fails_with_runtime_shut_down() {
    let server_runtime = multi_thread_runtime();
    let fixture = server_runtime.block_on(Fixture::start(Transport::Unix, Server::new()));
    let home = multi_thread_runtime();
    let probe = home
        .block_on(ProbeClient::connect(&fixture.address))
        .unwrap();

    // The call runs on another runtime and waits for a reply that will not come.
    let caller = multi_thread_runtime();
    let waiting = probe.clone();
    let call = caller.spawn(async move { waiting.stall().await });
    let started = Instant::now();
    while probe.client().pending_calls() == 0 {
        assert!(started.elapsed() < LIMIT, "the call never left");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(home);
    let outcome = caller
        .block_on(bounded(LIMIT, "the pending call", call))
        .unwrap();
    match outcome {
        Err(RpcError::RuntimeShutDown) => {}
        other => panic!("expected RuntimeShutDown, got {other:?}"),
    }
    drop(caller);
    server_runtime.block_on(fixture.handle.shutdown());
}
