//! `fifo://` between real processes: the directory's shape and permissions, cleanup on every
//! exit, a restart over a killed server's directory, and clients that die.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rpc_core::transport::TransportError;
use rpc_core::{RpcError, Server};
use rpc_tests::{
    Fixture, ProbeClient, ProbeImpl, ProbeProcess, ProbeServer, TempDir, Transport, bounded,
};

const LIMIT: Duration = Duration::from_secs(20);

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn fifo_dir(address: &str) -> &Path {
    Path::new(address.strip_prefix("fifo://").expect("a fifo address"))
}

#[tokio::test]
async fn the_directory_is_private_and_holds_only_the_request_fifo_and_lock() {
    let fixture = Fixture::start(Transport::Fifo, Server::new()).await;
    let dir = fifo_dir(&fixture.address).to_owned();
    let meta = std::fs::metadata(&dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
    assert!(
        std::fs::metadata(dir.join("requests"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    // A connected client's FIFO pair is unlinked once both ends hold it open.
    assert_eq!(listing(&dir), ["lock", "requests"]);
    drop(probe);
    bounded(LIMIT, "shutdown", fixture.handle.shutdown()).await;
    assert!(!dir.exists(), "{} outlived its server", dir.display());
}

#[tokio::test]
async fn a_second_server_on_a_live_directory_is_refused() {
    let fixture = Fixture::start(Transport::Fifo, Server::new()).await;
    let second = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&fixture.address])
        .await;
    assert!(
        matches!(
            second,
            Err(RpcError::Bind {
                source: TransportError::AddressInUse { .. },
                ..
            })
        ),
        "{second:?}"
    );
    // The refused server left the live one's files alone.
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    assert_eq!(probe.add(2, 2).await.unwrap(), 4);
}

#[tokio::test]
async fn no_server_is_a_quick_refusal_that_leaves_nothing() {
    let dir = TempDir::new();
    let missing = format!("fifo://{}/nobody", dir.0.display());
    let outcome = bounded(LIMIT, "connect", ProbeClient::connect(&missing)).await;
    assert!(
        matches!(outcome, Err(RpcError::Connect { .. })),
        "{outcome:?}"
    );
    // A directory whose request FIFO nobody reads (its server was killed): refused too.
    let stale = dir.0.join("stale");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&stale)
        .unwrap();
    nix::unistd::mkfifo(&stale.join("requests"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let address = format!("fifo://{}", stale.display());
    let outcome = bounded(LIMIT, "connect", ProbeClient::connect(&address)).await;
    match outcome {
        Err(RpcError::Connect { source, .. }) => {
            assert!(source.to_string().contains("no server listens"), "{source}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        listing(&stale),
        ["requests"],
        "the client left FIFOs behind"
    );
}

#[tokio::test]
async fn a_restart_over_a_killed_servers_directory_works() {
    let dir = TempDir::new();
    let address = format!("fifo://{}/calc", dir.0.display());
    let mut server = ProbeProcess::server(&address);
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    server.kill_9();
    let outcome = bounded(LIMIT, "a call to a dead server", probe.add(1, 1)).await;
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    let left = fifo_dir(&address);
    assert_eq!(
        listing(left),
        ["lock", "requests"],
        "what a killed server leaves"
    );
    // The next server sees the lock is free and takes the directory over.
    let restarted = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await
        .expect("restart over a stale directory");
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    drop(probe);
    bounded(LIMIT, "shutdown", restarted.shutdown()).await;
    assert!(!left.exists());
}

// Multi-threaded: the test blocks one worker reading the children's output while the other
// serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_frees_its_connection_and_leaves_no_fifo() {
    let fixture = Fixture::start(Transport::Fifo, Server::new()).await;
    let dir = fifo_dir(&fixture.address).to_owned();
    rpc_tests::kill_stalled_clients(&fixture, 3).await;
    assert_eq!(listing(&dir), ["lock", "requests"]);
}

#[tokio::test]
async fn a_directory_that_is_not_a_fifo_servers_is_left_alone() {
    let dir = TempDir::new();
    // A directory of documents: binding there must fail and delete nothing.
    let docs = dir.0.join("docs");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&docs)
        .unwrap();
    std::fs::write(docs.join("requests"), b"my notes").unwrap();
    std::fs::write(docs.join("lock"), b"my lock").unwrap();
    let address = format!("fifo://{}", docs.display());
    let outcome = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await;
    assert!(
        matches!(&outcome, Err(e) if e.to_string().contains("not a FIFO server's")),
        "{outcome:?}"
    );
    assert_eq!(std::fs::read(docs.join("requests")).unwrap(), b"my notes");
    assert_eq!(std::fs::read(docs.join("lock")).unwrap(), b"my lock");
    // A directory others can enter is neither adopted by a server nor used by a client.
    let open_dir = dir.0.join("open");
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&open_dir)
        .unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let address = format!("fifo://{}", open_dir.display());
    let outcome = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await;
    assert!(
        matches!(&outcome, Err(e) if e.to_string().contains("mode 0700")),
        "{outcome:?}"
    );
    let outcome = bounded(LIMIT, "connect", ProbeClient::connect(&address)).await;
    assert!(
        matches!(&outcome, Err(e) if e.to_string().contains("mode 0700")),
        "{outcome:?}"
    );
    assert!(
        listing(&open_dir).is_empty(),
        "the client made FIFOs in an open directory"
    );
}

#[tokio::test]
async fn fifos_of_a_client_that_died_before_announcing_are_swept() {
    let fixture = Fixture::start(Transport::Fifo, Server::new()).await;
    let dir = fifo_dir(&fixture.address).to_owned();
    // A pid that no process has: what a client killed between mkfifo and announce leaves.
    let dead = (100_000..4_000_000)
        .step_by(7919)
        .find(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), None)
                == Err(nix::errno::Errno::ESRCH)
        })
        .unwrap();
    for end in ["up", "down"] {
        let path = dir.join(format!("c{dead}-0.{end}"));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
    }
    // The server looks at most once a second, when clients come.
    let mut swept = false;
    for _ in 0..50 {
        let probe = ProbeClient::connect(&fixture.address).await.unwrap();
        assert_eq!(probe.add(1, 1).await.unwrap(), 2);
        if listing(&dir) == ["lock", "requests"] {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swept, "left: {:?}", listing(&dir));
}
