//! Who may connect over `mq://`: the server hands each client's credentials (`SO_PEERCRED` on
//! the rendezvous socket) to rpc-core, which admits only its own uid by default and refuses
//! others in its handshake with `AccessDenied`; `Server::allow_uids` widens it. Nothing in the
//! transport stands in the way of an admitted user: both queues travel as descriptors over the
//! rendezvous socket, none is opened by name. Tested with a real client process running as
//! uid 65534: this test binary, copied where that user may run it. Needs a process allowed to
//! switch users (root, as in CI); says so loudly and skips otherwise.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rpc_core::{RpcError, Server};
use rpc_tests::{ProbeBlockingClient, ProbeImpl, ProbeServer, TempDir, unique_name};
use tokio::process::Command;

/// The user the stranger client runs as.
const STRANGER: u32 = 65534;

/// In the child: connect to the address given, call `add(2, 3)`, print the outcome.
#[test]
fn stranger_client() {
    let Ok(address) = std::env::var("ACCESS_MQ_CHILD_ADDRESS") else {
        return; // Not a child: nothing to do.
    };
    let outcome = ProbeBlockingClient::connect(&address).and_then(|probe| probe.add(2, 3));
    match outcome {
        Ok(sum) => println!("OUTCOME ok {sum}"),
        Err(RpcError::AccessDenied { reason }) => println!("OUTCOME denied {reason}"),
        Err(RpcError::Connect { source, .. }) => println!("OUTCOME connect {source}"),
        Err(other) => println!("OUTCOME other {other}"),
    }
}

/// A copy of this test binary that the stranger may execute, or `None` if we cannot switch
/// users.
fn stranger_binary() -> Option<(TempDir, std::path::PathBuf)> {
    if nix::unistd::geteuid().as_raw() != 0 {
        eprintln!("SKIPPED: not root, cannot run a client as uid {STRANGER}");
        return None;
    }
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.0.join("access-mq-child");
    std::fs::copy(std::env::current_exe().unwrap(), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some((dir, path))
}

/// What the stranger's `add(2, 3)` against `address` came to.
async fn call_as_stranger(binary: &std::path::Path, address: &str) -> String {
    // A copy just written may be briefly busy ("text file busy") while a child forked by
    // another test still holds its descriptor: retry for a bounded time.
    let mut tries = 0;
    let output = loop {
        let run = tokio::time::timeout(
            Duration::from_secs(60),
            Command::new(binary)
                .args([
                    "stranger_client",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("ACCESS_MQ_CHILD_ADDRESS", address)
                .uid(STRANGER)
                .gid(STRANGER)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the stranger client finished");
        match run {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other.expect("run the stranger client"),
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.split_once("OUTCOME ").map(|(_, outcome)| outcome))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "the stranger printed no outcome:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

async fn serve(server: Server, address: &str) -> rpc_core::ServerHandle {
    server
        .start(ProbeServer::new(ProbeImpl::default()), &[address])
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_denied_by_default_and_served_once_admitted() {
    let Some((_dir, binary)) = stranger_binary() else {
        return;
    };
    // By default: refused by its credentials, with a reason it can read.
    let address = format!("mq://{}", unique_name("access"));
    let handle = serve(Server::new(), &address).await;
    let outcome = call_as_stranger(&binary, &address).await;
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
    let outcome = call_as_stranger(&binary, &address).await;
    assert!(
        outcome.starts_with("denied") && outcome.contains("uids 4242"),
        "{outcome}"
    );
    handle.shutdown().await;

    // Admitted by uid, and by group: the stranger calls.
    let address = format!("mq://{}", unique_name("access"));
    let handle = serve(Server::new().allow_uids([STRANGER]), &address).await;
    assert_eq!(call_as_stranger(&binary, &address).await, "ok 5");
    handle.shutdown().await;
    let address = format!("mq://{}", unique_name("access"));
    let handle = serve(Server::new().allow_gids([STRANGER]), &address).await;
    assert_eq!(call_as_stranger(&binary, &address).await, "ok 5");
    handle.shutdown().await;
}
