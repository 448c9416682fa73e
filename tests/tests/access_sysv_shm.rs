//! Who may use `sysv-shm://`: the segment is mode 0600, owned by the server's uid, so only the
//! server's own user (and root) can attach it. The transport says so before anyone tries: the
//! server refuses another user's client by its credentials (even one rpc-core would admit with
//! `Server::allow_uids`), naming both uids, and creates no segment for it; a client refuses a
//! server of another user that is not root. Tested with real processes running as uid 65534
//! (this test binary, copied where that user may run it). Needs a process allowed to switch
//! users (root, as in CI); says so loudly and skips otherwise.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rpc_core::{ClientOptions, Server};
use rpc_tests::stranger::{self, STRANGER, StrangerBinary, open_dir};
use rpc_tests::{ProbeBlockingClient, ProbeImpl, ProbeServer, TempDir};

const CLIENT_ADDRESS: &str = "ACCESS_SYSV_SHM_CHILD_ADDRESS";
const SERVER_ADDRESS: &str = "ACCESS_SYSV_SHM_SERVE";

/// In the child: call the address given as the stranger (see `rpc_tests::stranger`).
#[test]
fn stranger_client() {
    stranger::stranger_client(CLIENT_ADDRESS);
}

/// In the child: serve the address given as the stranger until the file `ADDRESS.done` exists
/// (at most 30 s), then print `OUTCOME served`.
#[test]
fn stranger_server() {
    let Ok(path) = std::env::var(SERVER_ADDRESS) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let handle = Server::new()
            .allow_uids([0])
            .start(
                ProbeServer::new(ProbeImpl::default()),
                &[&format!("sysv-shm://{path}")],
            )
            .await
            .unwrap();
        let done = std::path::PathBuf::from(format!("{path}.done"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done.exists() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        handle.shutdown().await;
    });
    println!("OUTCOME served");
}

/// The ids of the System V segments this process has attached.
fn attached_here() -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains("/SYSV"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_client_is_refused_by_its_credentials() {
    let Some(stranger) = StrangerBinary::new("access-sysv-shm-child", CLIENT_ADDRESS) else {
        return;
    };
    let dir = open_dir();
    // Admitted by rpc-core and able to reach the socket (0666): the transport refuses it,
    // since it could not attach the segment anyway.
    let address = format!("sysv-shm://{}/admitted.sock", dir.0.display());
    let handle = Server::new()
        .allow_uids([STRANGER])
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await
        .unwrap();
    let before = attached_here();
    let outcome = stranger.call(&address).await;
    eprintln!("the stranger's client: {outcome}");
    assert!(
        outcome.starts_with("connect")
            && outcome.contains("only with its own user")
            && outcome.contains(&format!("uid {STRANGER}")),
        "{outcome}"
    );
    assert_eq!(
        attached_here(),
        before,
        "a segment was made for the stranger"
    );
    // Our own user is served as ever, and the server goes on.
    let own = address.clone();
    let sum = tokio::task::spawn_blocking(move || ProbeBlockingClient::connect(&own)?.add(2, 3))
        .await
        .unwrap();
    assert_eq!(sum.unwrap(), 5);
    handle.shutdown().await;

    // By default the socket itself is closed to others.
    let address = format!("sysv-shm://{}/default.sock", dir.0.display());
    let handle = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await
        .unwrap();
    let outcome = stranger.call(&address).await;
    eprintln!("the stranger's client, socket 0600: {outcome}");
    assert!(outcome.starts_with("connect"), "{outcome}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_another_user_is_refused_by_the_client() {
    let Some(stranger) = StrangerBinary::new("access-sysv-shm-server", CLIENT_ADDRESS) else {
        return;
    };
    // A directory the stranger may create its socket in.
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.0.join("stranger.sock");
    let path_text = path.display().to_string();
    let serving = tokio::spawn({
        let path_text = path_text.clone();
        async move {
            stranger
                .run(
                    "stranger_server",
                    &[(SERVER_ADDRESS, &path_text)],
                    "OUTCOME",
                )
                .await
        }
    });
    assert!(
        rpc_tests::eventually(Duration::from_secs(20), || path.exists()).await,
        "the stranger's server never listened"
    );
    let address = format!("sysv-shm://{path_text}");
    let outcome = tokio::task::spawn_blocking(move || {
        ProbeBlockingClient::connect_with(
            &address,
            ClientOptions::default().call_timeout(Some(Duration::from_secs(10))),
        )
        .map(drop)
    })
    .await
    .unwrap();
    std::fs::write(format!("{path_text}.done"), b"").unwrap();
    let error = outcome
        .expect_err("a client trusted a server of another user")
        .to_string();
    eprintln!("our client of the stranger's server: {error}");
    assert!(
        error.contains(&format!("the server runs as uid {STRANGER}")),
        "{error}"
    );
    assert_eq!(serving.await.unwrap(), ["served"]);
}
