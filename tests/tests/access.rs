//! Who may connect over local transports: by default only the server's own uid, checked with
//! the peer's credentials; `Server::allow_uids` widens it. Tested with a real client process
//! running as another user (uid 65534): this test binary, copied where that user may run it,
//! started as that user with `ACCESS_CHILD_ADDRESS` set. Needs a process allowed to switch
//! users (root, as in CI); says so loudly and skips otherwise.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rpc_core::Server;
use rpc_tests::stranger::{self, STRANGER, StrangerBinary, open_dir};
use rpc_tests::{ProbeBlockingClient, ProbeImpl, ProbeServer};

/// In the child: call the address given as the stranger (see `rpc_tests::stranger`).
#[test]
fn stranger_client() {
    stranger::stranger_client("ACCESS_CHILD_ADDRESS");
}

async fn serve(server: Server, address: &str) -> rpc_core::ServerHandle {
    server
        .start(ProbeServer::new(ProbeImpl::default()), &[address])
        .await
        .unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abstract_socket_refuses_other_users_by_their_credentials() {
    let Some(stranger) = StrangerBinary::new("access-child", "ACCESS_CHILD_ADDRESS") else {
        return;
    };
    let name = |n: u32| format!("unix:@rpc-access-{}-{n}", std::process::id());
    let (first, second, third) = (name(1), name(2), name(3));
    let handle = serve(Server::new(), &first).await;
    let outcome = stranger.call(&first).await;
    assert!(
        outcome.starts_with("denied") && outcome.contains(&format!("uid {STRANGER}")),
        "{outcome}"
    );
    // Our own user is served as ever, and the server goes on.
    let address = first.clone();
    let sum = tokio::task::spawn_blocking(move || {
        ProbeBlockingClient::connect(&address).unwrap().add(2, 3)
    })
    .await
    .unwrap();
    assert_eq!(sum.unwrap(), 5);
    handle.shutdown().await;

    // Admitted by uid, the stranger calls.
    let handle = serve(Server::new().allow_uids([STRANGER]), &second).await;
    assert_eq!(stranger.call(&second).await, "ok 5");
    handle.shutdown().await;
    // And by group.
    let handle = serve(Server::new().allow_gids([STRANGER]), &third).await;
    assert_eq!(stranger.call(&third).await, "ok 5");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_file_is_private_whatever_the_umask_and_checked_when_widened() {
    let Some(stranger) = StrangerBinary::new("access-child", "ACCESS_CHILD_ADDRESS") else {
        return;
    };
    let dir = open_dir();
    let path = dir.0.join("probe.sock");
    let address = format!("unix://{}", path.display());
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let handle = serve(Server::new(), &address).await;
    nix::sys::stat::umask(old);
    assert_eq!(mode(&path), 0o600, "the socket file under umask 000");
    let outcome = stranger.call(&address).await;
    assert!(
        outcome.starts_with("connect") && outcome.contains("Permission denied"),
        "{outcome}"
    );
    handle.shutdown().await;

    // Widened: the file is open to all, and only the admitted uid gets through.
    let handle = serve(Server::new().allow_uids([4242]), &address).await;
    assert_eq!(mode(&path), 0o666);
    let outcome = stranger.call(&address).await;
    assert!(
        outcome.starts_with("denied") && outcome.contains("uids 4242"),
        "{outcome}"
    );
    handle.shutdown().await;
    let handle = serve(Server::new().allow_uids([STRANGER]), &address).await;
    assert_eq!(stranger.call(&address).await, "ok 5");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_memory_refuses_other_users_and_admits_allowed_ones() {
    let Some(stranger) = StrangerBinary::new("access-child", "ACCESS_CHILD_ADDRESS") else {
        return;
    };
    let dir = open_dir();
    let path = dir.0.join("probe-shm.sock");
    let address = format!("shm://{}", path.display());
    let handle = serve(Server::new(), &address).await;
    assert_eq!(mode(&path), 0o600);
    let outcome = stranger.call(&address).await;
    assert!(outcome.starts_with("connect"), "{outcome}");
    handle.shutdown().await;

    let handle = serve(Server::new().allow_uids([4242]), &address).await;
    let outcome = stranger.call(&address).await;
    assert!(outcome.starts_with("denied"), "{outcome}");
    handle.shutdown().await;

    let handle = serve(Server::new().allow_uids([STRANGER]), &address).await;
    assert_eq!(stranger.call(&address).await, "ok 5");
    handle.shutdown().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
