//! Admission beyond the handshake: idle connections are closed when asked, one peer can be
//! held to a number of connections, and a server out of descriptors refuses new clients at
//! once instead of leaving them in its backlog.

use std::time::{Duration, Instant};

use rpc_core::{ClientOptions, RpcError, Server};
use rpc_tests::{ProbeClient, ProbeImpl, ProbeProcess, ProbeServer, TempDir};

async fn serve(server: Server, address: &str) -> rpc_core::ServerHandle {
    server
        .start(ProbeServer::new(ProbeImpl::default()), &[address])
        .await
        .unwrap()
}

/// An idle connection is closed after the idle timeout; a busy one, or one running a long
/// call, is not.
async fn idle_connections_are_closed(address: &str) {
    let handle = serve(
        Server::new().idle_timeout(Some(Duration::from_millis(300))),
        address,
    )
    .await;
    let bound = handle.local_address();
    // Busy: a call every 50 ms for over a second keeps the connection.
    let busy = ProbeClient::connect(&bound).await.unwrap();
    for i in 0..25 {
        assert_eq!(busy.add(i, 1).await.unwrap(), i + 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A call running longer than the timeout keeps it too.
    assert_eq!(busy.tag(7, 800).await.unwrap(), 7);
    assert_eq!(busy.add(1, 1).await.unwrap(), 2);
    // Idle: closed.
    let idle = ProbeClient::connect(&bound).await.unwrap();
    assert_eq!(idle.add(1, 2).await.unwrap(), 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !idle.client().is_closed() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        idle.client().is_closed(),
        "{bound}: the idle connection stayed"
    );
    let error = idle.add(1, 2).await.unwrap_err();
    assert!(matches!(error, RpcError::Disconnected { .. }), "{error:?}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_over_unix() {
    let dir = TempDir::new();
    idle_connections_are_closed(&format!("unix://{}/idle.sock", dir.0.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_over_shm() {
    let dir = TempDir::new();
    idle_connections_are_closed(&format!("shm://{}/idle.sock", dir.0.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_idle_timeout_connections_stay() {
    let handle = serve(Server::new(), "tcp://127.0.0.1:0").await;
    let client = ProbeClient::connect(&handle.local_address()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(client.add(1, 2).await.unwrap(), 3);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holds_at_most_its_limit() {
    let handle = serve(
        Server::new().max_connections_per_peer(Some(2)),
        "tcp://127.0.0.1:0",
    )
    .await;
    let address = handle.local_address();
    let first = ProbeClient::connect(&address).await.unwrap();
    let second = ProbeClient::connect(&address).await.unwrap();
    let error = ProbeClient::connect(&address).await.unwrap_err();
    assert!(
        matches!(error, RpcError::TooManyConnectionsFromPeer { limit: 2 }),
        "{error:?}"
    );
    assert!(error.to_string().contains("2 connections"), "{error}");
    assert_eq!(second.add(1, 1).await.unwrap(), 2);
    // A place given back is taken again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let third = loop {
        match ProbeClient::connect(&address).await {
            Ok(client) => break client,
            Err(RpcError::TooManyConnectionsFromPeer { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    };
    assert_eq!(third.add(2, 2).await.unwrap(), 4);
    handle.shutdown().await;
}

/// A `probe-server` allowed 64 descriptors is filled with connections; the next client is
/// refused at once (the server gives back a reserve descriptor, accepts and closes), not left
/// waiting in the backlog until its connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_descriptors_refuses_new_clients_promptly() {
    let mut server = ProbeProcess::spawn(&["--nofile", "64", "tcp://127.0.0.1:0"]);
    let line = server.expect_line("listening on ");
    let address = line.trim_start_matches("listening on ").trim().to_owned();
    let options = || ClientOptions::default().connect_timeout(Duration::from_secs(10));
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..80 {
        let started = Instant::now();
        match ProbeClient::connect_with(&address, options()).await {
            Ok(client) => held.push(client),
            Err(error) => {
                refused = Some((error, started.elapsed()));
                break;
            }
        }
    }
    let (error, took) = refused.expect("64 descriptors held 80 connections");
    assert!(
        took < Duration::from_secs(3),
        "refused after {took:?} ({error}); the connect timeout is 10 s"
    );
    assert!(
        matches!(
            error,
            RpcError::Disconnected { .. } | RpcError::Connect { .. }
        ),
        "{error:?}"
    );
    // The connections already in are served.
    assert_eq!(held[0].add(2, 3).await.unwrap(), 5);
    // And once some leave, new clients get in again.
    held.truncate(held.len() / 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ProbeClient::connect_with(&address, options()).await {
            Ok(client) => {
                assert_eq!(client.add(1, 1).await.unwrap(), 2);
                break;
            }
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("no client got in after connections left: {error:?}"),
        }
    }
    server.kill_9();
}
