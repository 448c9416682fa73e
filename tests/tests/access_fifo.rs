//! Who may connect over `fifo://`: by default the server's directory is 0700 and only its own
//! user gets in; `Server::allow_uids` shares the directory (01733, `requests` 0622) so another
//! user can make and announce its FIFO pair, and the server's access check, which takes the
//! FIFOs' owner as the peer's uid, decides. Tested with a real client process running as uid
//! 65534: this test binary, copied where that user may run it, started as that user. Needs a
//! process allowed to switch users (root, as in CI); says so loudly and skips otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rpc_core::Server;
use rpc_tests::stranger::{self, STRANGER, StrangerBinary, open_dir};
use rpc_tests::{ProbeBlockingClient, ProbeImpl, ProbeServer};

/// A third user, owner of the victim FIFOs the stranger tries to remove.
const VICTIM: u32 = 65533;

/// In the child: call the address given as the stranger (see `rpc_tests::stranger`).
#[test]
fn stranger_client() {
    stranger::stranger_client("ACCESS_FIFO_CHILD_ADDRESS");
}

/// In the child: try to list the directory given and to remove or rename files in it that are
/// not ours; print what happened to each.
#[test]
fn stranger_meddles() {
    let Ok(dir) = std::env::var("ACCESS_FIFO_CHILD_MEDDLE") else {
        return; // Not a child: nothing to do.
    };
    let dir = PathBuf::from(dir);
    let victim = std::env::var("ACCESS_FIFO_CHILD_VICTIM").unwrap();
    let report = |what: &str, outcome: std::io::Result<()>| match outcome {
        Ok(()) => println!("MEDDLE {what} done"),
        Err(e) => println!("MEDDLE {what} refused {:?}", e.kind()),
    };
    report("list", std::fs::read_dir(&dir).map(drop));
    for name in ["requests", "lock", &victim] {
        report(
            &format!("rename {name}"),
            std::fs::rename(dir.join(name), dir.join("mine")),
        );
        report(
            &format!("remove {name}"),
            std::fs::remove_file(dir.join(name)),
        );
    }
}

async fn serve(server: Server, address: &str) -> rpc_core::ServerHandle {
    server
        .start(ProbeServer::new(ProbeImpl::default()), &[address])
        .await
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_fifo_server_refuses_other_users_and_a_shared_one_asks_its_access_check() {
    let Some(stranger) = StrangerBinary::new("access-fifo-child", "ACCESS_FIFO_CHILD_ADDRESS")
    else {
        return;
    };
    let parent = open_dir();
    let dir = parent.0.join("fifo");
    let address = format!("fifo://{}", dir.display());

    // The default: private, and a stranger is told so.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let handle = serve(Server::new(), &address).await;
    nix::sys::stat::umask(old);
    assert_eq!(mode(&dir), 0o700, "the directory under umask 000");
    assert_eq!(mode(&dir.join("requests")), 0o600);
    let outcome = stranger.call(&address).await;
    assert!(
        outcome.starts_with("connect")
            && outcome.contains("admits no other user")
            && outcome.contains("allow_uids"),
        "{outcome}"
    );
    // Our own user is served as ever.
    let own = address.clone();
    let sum = tokio::task::spawn_blocking(move || ProbeBlockingClient::connect(&own)?.add(2, 3))
        .await
        .unwrap();
    assert_eq!(sum.unwrap(), 5);
    handle.shutdown().await;

    // Shared, but the stranger is not among the admitted: the server's access check says no,
    // naming the stranger's uid, which it read from the owner of the stranger's FIFOs.
    let handle = serve(Server::new().allow_uids([4242]), &address).await;
    assert_eq!(mode(&dir), 0o1733);
    assert_eq!(mode(&dir.join("requests")), 0o622);
    let outcome = stranger.call(&address).await;
    assert!(
        outcome.starts_with("denied")
            && outcome.contains(&format!("uid {STRANGER}"))
            && outcome.contains("4242"),
        "{outcome}"
    );
    handle.shutdown().await;

    // Admitted, the stranger calls; our own user still can.
    let handle = serve(Server::new().allow_uids([STRANGER]), &address).await;
    assert_eq!(stranger.call(&address).await, "ok 5");
    let own = address.clone();
    let sum = tokio::task::spawn_blocking(move || ProbeBlockingClient::connect(&own)?.add(2, 3))
        .await
        .unwrap();
    assert_eq!(sum.unwrap(), 5);
    handle.shutdown().await;

    // A default server over the directory a shared one left makes it private again.
    let handle = serve(Server::new(), &address).await;
    assert_eq!(mode(&dir), 0o700);
    let outcome = stranger.call(&address).await;
    assert!(outcome.starts_with("connect"), "{outcome}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_shared_fifo_directory_a_stranger_cannot_list_or_remove_what_is_not_its_own() {
    let Some(stranger) = StrangerBinary::new("access-fifo-child", "ACCESS_FIFO_CHILD_ADDRESS")
    else {
        return;
    };
    let parent = open_dir();
    let dir = parent.0.join("fifo");
    let address = format!("fifo://{}", dir.display());
    let handle = serve(Server::new().allow_uids([STRANGER]), &address).await;
    // Another client's FIFO pair, of a third user, as it stands while that client connects
    // (named for pid 1, which lives, so the server's sweep leaves it alone).
    let victim = "c1-0-00000000deadbeef";
    for end in ["up", "down"] {
        let path = dir.join(format!("{victim}.{end}"));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(VICTIM), Some(VICTIM)).unwrap();
    }
    let victim_up = format!("{victim}.up");
    let dir_text = dir.display().to_string();
    let env = [
        ("ACCESS_FIFO_CHILD_MEDDLE", dir_text.as_str()),
        ("ACCESS_FIFO_CHILD_VICTIM", victim_up.as_str()),
    ];
    let report = stranger.run("stranger_meddles", &env, "MEDDLE").await;
    eprintln!("{report:#?}");
    assert_eq!(report.len(), 7, "{report:?}");
    for line in &report {
        assert!(line.contains("refused PermissionDenied"), "{report:#?}");
    }
    for name in ["requests", "lock", &victim_up, &format!("{victim}.down")] {
        assert!(dir.join(name).exists(), "{name} is gone");
    }
    // The server still serves the stranger (and so everyone).
    assert_eq!(stranger.call(&address).await, "ok 5");
    handle.shutdown().await;
}
