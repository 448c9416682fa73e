//! Keepalive over a half-open connection: a TCP relay that goes silent keeps both sockets open
//! while no byte gets through, as a cut link does. Pending calls must fail within the
//! keepalive's bound, the server must free the connection within its own, and without a
//! keepalive the call would have waited on. (The cross-host suite repeats this across real
//! network namespaces with calc-server and calc-client.)

use std::time::{Duration, Instant};

use rpc_core::{ClientOptions, Keepalive, RpcError, Server};
use rpc_tests::relay::{RELAY_WAIT, Relay};
use rpc_tests::{ProbeBlockingClient, ProbeClient, ProbeImpl, ProbeServer, bounded, eventually};

const QUICK: Duration = Duration::from_millis(200);

async fn server(keepalive: Option<Keepalive>) -> rpc_core::ServerHandle {
    Server::new()
        .keepalive(keepalive)
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &["tcp://127.0.0.1:0"],
        )
        .await
        .expect("start the server")
}

fn target(handle: &rpc_core::ServerHandle) -> String {
    handle
        .local_address()
        .trim_start_matches("tcp://")
        .to_owned()
}

async fn client(address: &str, keepalive: Option<Keepalive>) -> ProbeClient {
    let options = ClientOptions::default()
        .keepalive(keepalive)
        .call_timeout(None);
    ProbeClient::connect_with(address, options)
        .await
        .expect("connect")
}

#[tokio::test]
async fn a_pending_call_fails_within_the_bound_when_the_link_goes_silent() {
    let handle = server(None).await;
    let relay = Relay::start(&target(&handle)).await;
    let keepalive = Keepalive::new(QUICK, QUICK);
    let probe = client(relay.address(), Some(keepalive)).await;
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    let stalled = tokio::spawn({
        let probe = probe.clone();
        async move { probe.stall().await }
    });
    assert!(eventually(RELAY_WAIT, || probe.client().pending_calls() == 1).await);
    relay.go_silent();
    let cut = Instant::now();
    let outcome = bounded(RELAY_WAIT, "the stalled call", stalled)
        .await
        .unwrap();
    let took = cut.elapsed();
    match outcome {
        Err(RpcError::Disconnected { reason }) => {
            assert!(reason.contains("keepalive"), "{reason}")
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
    // Silent since the cut: a ping after at most `interval`, given up `timeout` later.
    assert!(
        took >= QUICK,
        "gave up after {took:?}, before a ping could go unanswered"
    );
    assert!(
        took < keepalive.bound() * 4,
        "gave up after {took:?}: the bound is {:?}",
        keepalive.bound()
    );
    assert!(matches!(
        probe.add(1, 1).await,
        Err(RpcError::Disconnected { .. })
    ));
}

#[tokio::test]
async fn the_server_frees_a_silent_clients_connection_within_its_bound() {
    let keepalive = Keepalive::new(QUICK, QUICK);
    let handle = server(Some(keepalive)).await;
    let relay = Relay::start(&target(&handle)).await;
    // The client answers pings but would not give up on its own for a minute.
    let probe = client(
        relay.address(),
        Some(Keepalive::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        )),
    )
    .await;
    let _stalled = tokio::spawn({
        let probe = probe.clone();
        async move { probe.stall().await }
    });
    assert!(eventually(RELAY_WAIT, || handle.connections() == 1).await);
    // Several of the server's intervals pass while the client answers: the connection stays.
    tokio::time::sleep(QUICK * 4).await;
    assert_eq!(
        handle.connections(),
        1,
        "a client that answers pings was dropped"
    );
    relay.go_silent();
    let cut = Instant::now();
    assert!(
        eventually(RELAY_WAIT, || handle.connections() == 0).await,
        "the server kept the silent client's connection"
    );
    let took = cut.elapsed();
    assert!(
        took < keepalive.bound() * 4,
        "freed after {took:?}: the bound is {:?}",
        keepalive.bound()
    );
}

#[tokio::test]
async fn without_keepalive_a_call_on_a_silent_link_waits_on() {
    let handle = server(None).await;
    let relay = Relay::start(&target(&handle)).await;
    let probe = client(relay.address(), None).await;
    let stalled = tokio::spawn({
        let probe = probe.clone();
        async move { probe.stall().await }
    });
    assert!(eventually(RELAY_WAIT, || probe.client().pending_calls() == 1).await);
    relay.go_silent();
    // Well past the bound the keepalive tests use: nothing notices the dead link.
    tokio::time::sleep(Keepalive::new(QUICK, QUICK).bound() * 4).await;
    assert!(
        !stalled.is_finished(),
        "the call ended: {:?}",
        stalled.await
    );
    assert_eq!(handle.connections(), 1);
}

#[tokio::test]
async fn an_idle_connection_with_keepalive_stays_up_and_serves() {
    let keepalive = Keepalive::new(Duration::from_millis(50), Duration::from_millis(200));
    let handle = server(Some(keepalive)).await;
    let probe = client(&handle.local_address(), Some(keepalive)).await;
    // Twenty intervals of silence, both sides pinging.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(probe.add(20, 22).await.unwrap(), 42);
    assert_eq!(handle.connections(), 1);
}

#[tokio::test]
async fn a_blocking_client_is_never_pinged_away() {
    let keepalive = Keepalive::new(Duration::from_millis(50), Duration::from_millis(50));
    let handle = server(Some(keepalive)).await;
    let address = handle.local_address();
    let result = tokio::task::spawn_blocking(move || {
        let probe = ProbeBlockingClient::connect(&address).expect("connect");
        // Many times the server's bound without reading: it must not have been dropped.
        std::thread::sleep(Duration::from_millis(600));
        probe.add(1, 2)
    })
    .await
    .unwrap();
    assert_eq!(result.unwrap(), 3);
}

/// A hostile server floods pings and reads nothing: the client answers one at a time, so what
/// it queues for such a server stays bounded (found by the review).
#[tokio::test]
async fn a_server_flooding_pings_gets_one_pong_at_a_time() {
    use rpc_core::transport::{Listener, TransportConfig};
    use rpc_core::wire::{self, Header, Kind, Welcome};

    const PINGS: u64 = 200_000;
    let config = TransportConfig::default();
    let listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap(), &config)
        .await
        .unwrap();
    let address = listener.local_address().to_string();
    let server = tokio::spawn(async move {
        let mut connection = listener.accept().await.unwrap();
        let _hello = connection.recv().await.unwrap();
        let welcome = Welcome {
            max_frame_size: 16 << 20,
            max_in_flight: 16,
            schema_json: ProbeClient::schema().to_json(),
        };
        let header = |kind, call_id| Header {
            kind,
            method: 0,
            call_id,
        };
        let frame = wire::message_frame(header(Kind::Welcome, 0), None, &welcome).unwrap();
        connection.send(frame).await.unwrap();
        for nonce in 1..=PINGS {
            let ping = wire::message_frame(header(Kind::Ping, nonce), None, &()).unwrap();
            connection.send(ping).await.unwrap();
        }
        // Now read what the client answered, until it has been quiet for a while.
        let mut pongs = 0u64;
        while let Ok(Ok(Some(frame))) =
            tokio::time::timeout(Duration::from_millis(500), connection.recv()).await
        {
            let kind = wire::Header::parse(frame.payload()).unwrap().header.kind;
            if kind == Kind::Pong {
                pongs += 1;
            }
        }
        pongs
    });
    let probe = client(&address, None).await;
    let pongs = bounded(RELAY_WAIT * 3, "the ping flood", server)
        .await
        .unwrap();
    assert!(pongs >= 1, "the client never answered");
    assert!(
        pongs < PINGS,
        "{pongs} pongs for {PINGS} pings: every ping got its own queued answer"
    );
    drop(probe);
}
