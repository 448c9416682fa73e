//! Review of reconnecting clients and the server's idle timeout next to the keepalive: a
//! call's deadline bounds the reconnect it waits for, and keepalive pings are not activity.

use std::time::{Duration, Instant};

use rpc_core::{ClientOptions, Keepalive, ReconnectPolicy, RpcError, Server, ServerHandle};
use rpc_tests::relay::{RELAY_WAIT, Relay};
use rpc_tests::{ProbeClient, ProbeImpl, ProbeServer, bounded, eventually};

async fn server(idle_timeout: Option<Duration>) -> ServerHandle {
    Server::new()
        .idle_timeout(idle_timeout)
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &["tcp://127.0.0.1:0"],
        )
        .await
        .expect("start the server")
}

fn target(handle: &ServerHandle) -> String {
    handle
        .local_address()
        .trim_start_matches("tcp://")
        .to_owned()
}

/// The connection breaks, and the next connection is accepted but its handshake never
/// answered (a server stuck starting, a black-holing middlebox): each call gives up at its
/// own deadline, not at the connect timeout, and many calls at once do too.
#[tokio::test]
async fn review_a_reconnect_is_bounded_by_the_calls_deadline() {
    let handle = server(None).await;
    let relay = Relay::start(&target(&handle)).await;
    let deadline = Duration::from_millis(300);
    let options = ClientOptions::default()
        .reconnect(Some(ReconnectPolicy::new()))
        .connect_timeout(Duration::from_secs(30))
        .call_timeout(Some(deadline));
    let probe = ProbeClient::connect_with(relay.address(), options)
        .await
        .unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    relay.go_silent();
    relay.close_all();
    assert!(eventually(RELAY_WAIT, || probe.client().connected_servers() == 0).await);
    let started = Instant::now();
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let probe = probe.clone();
            tokio::spawn(async move { probe.add(i, 1).await })
        })
        .collect();
    for call in calls {
        let outcome = bounded(RELAY_WAIT * 4, "a call during a reconnect", call)
            .await
            .unwrap();
        assert!(outcome.is_err(), "{outcome:?}");
    }
    let took = started.elapsed();
    assert!(
        took < deadline * 5,
        "calls with a {deadline:?} deadline took {took:?} to fail (the connect timeout is 30 s)"
    );
    // One connection attempt at a time: not one per call.
    assert!(relay.accepted() <= 3, "{} connections", relay.accepted());
}

/// A deadline that passes while the client reconnects is reported as such.
#[tokio::test]
async fn review_a_reconnect_past_the_deadline_says_deadline_exceeded() {
    let handle = server(None).await;
    let relay = Relay::start(&target(&handle)).await;
    let options = ClientOptions::default()
        .reconnect(Some(ReconnectPolicy::new()))
        .connect_timeout(Duration::from_secs(30))
        .call_timeout(Some(Duration::from_millis(200)));
    let probe = ProbeClient::connect_with(relay.address(), options)
        .await
        .unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    relay.go_silent();
    relay.close_all();
    assert!(eventually(RELAY_WAIT, || probe.client().connected_servers() == 0).await);
    let outcome = bounded(RELAY_WAIT * 4, "a call during a reconnect", probe.add(1, 1)).await;
    assert!(
        matches!(outcome, Err(RpcError::DeadlineExceeded { .. })),
        "{outcome:?}"
    );
}

/// A client whose keepalive pings an idle connection must not keep it open against the
/// server's idle timeout: a ping is not a call.
#[tokio::test]
async fn review_keepalive_pings_do_not_defeat_the_idle_timeout() {
    let handle = server(Some(Duration::from_millis(300))).await;
    let options = ClientOptions::default().keepalive(Some(Keepalive::new(
        Duration::from_millis(50),
        Duration::from_secs(5),
    )));
    let probe = ProbeClient::connect_with(&handle.local_address(), options)
        .await
        .unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    assert!(
        eventually(RELAY_WAIT, || handle.connections() == 0).await,
        "an idle client that only pings kept its connection past the idle timeout"
    );
    assert!(matches!(
        probe.add(1, 1).await,
        Err(RpcError::Disconnected { .. })
    ));
}
