//! Who may connect over `mq://`: the server hands each client's credentials (`SO_PEERCRED` on
//! the rendezvous socket) to rpc-core, which admits only its own uid by default and refuses
//! others in its handshake with `AccessDenied`; `Server::allow_uids` widens it. Nothing in the
//! transport stands in the way of an admitted user: both queues travel as descriptors over the
//! rendezvous socket, none is opened by name. Tested with a real client process running as
//! uid 65534: this test binary, copied where that user may run it. Needs a process allowed to
//! switch users (root, as in CI); says so loudly and skips otherwise.

use rpc_core::Server;
use rpc_tests::stranger::{self, STRANGER, StrangerBinary};
use rpc_tests::{ProbeBlockingClient, ProbeImpl, ProbeServer, unique_name};

/// In the child: call the address given as the stranger (see `rpc_tests::stranger`).
#[test]
fn stranger_client() {
    stranger::stranger_client("ACCESS_MQ_CHILD_ADDRESS");
}

async fn serve(server: Server, address: &str) -> rpc_core::ServerHandle {
    server
        .start(ProbeServer::new(ProbeImpl::default()), &[address])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_denied_by_default_and_served_once_admitted() {
    let Some(stranger) = StrangerBinary::new("access-mq-child", "ACCESS_MQ_CHILD_ADDRESS") else {
        return;
    };
    // By default: refused by its credentials, with a reason it can read.
    let address = format!("mq://{}", unique_name("access"));
    let handle = serve(Server::new(), &address).await;
    let outcome = stranger.call(&address).await;
    assert!(
        outcome.starts_with("denied") && outcome.contains(&format!("uid {STRANGER}")),
        "{outcome}"
    );
    // Our own user is served as ever, and the server goes on.
    let own = address.clone();
    let sum =
        tokio::task::spawn_blocking(move || ProbeBlockingClient::connect(&own).unwrap().add(2, 3))
            .await
            .unwrap();
    assert_eq!(sum.unwrap(), 5);
    handle.shutdown().await;

    // Another uid admitted: still refused.
    let address = format!("mq://{}", unique_name("access"));
    let handle = serve(Server::new().allow_uids([4242]), &address).await;
    let outcome = stranger.call(&address).await;
    assert!(
        outcome.starts_with("denied") && outcome.contains("uids 4242"),
        "{outcome}"
    );
    handle.shutdown().await;

    // Admitted by uid, and by group: the stranger calls.
    let address = format!("mq://{}", unique_name("access"));
    let handle = serve(Server::new().allow_uids([STRANGER]), &address).await;
    assert_eq!(stranger.call(&address).await, "ok 5");
    handle.shutdown().await;
    let address = format!("mq://{}", unique_name("access"));
    let handle = serve(Server::new().allow_gids([STRANGER]), &address).await;
    assert_eq!(stranger.call(&address).await, "ok 5");
    handle.shutdown().await;
}
