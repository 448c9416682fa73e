//! `spawn:` and `stdio` with real child processes: the child lives exactly as long as its
//! client, is always reaped, and its death fails pending calls at once.

use std::process::Command;
use std::time::{Duration, Instant};

use rpc_core::transport::{PeerInfo, TransportConfig};
use rpc_core::{ClientOptions, RpcError};
use rpc_tests::{
    ProbeBlockingClient, ProbeClient, bounded, eventually, probe_server_path, wait_until,
};

const LIMIT: Duration = Duration::from_secs(20);

fn probe_command() -> Command {
    let mut command = Command::new(probe_server_path());
    command.arg("stdio");
    command
}

/// Whether `pid` still exists, running or as a zombie nobody reaped.
fn exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Spawns a probe server and returns the client with the child's pid.
async fn spawn_probe() -> (ProbeClient, i32) {
    let connection = rpc_core::transport::spawn(probe_command(), &TransportConfig::default())
        .await
        .expect("spawn");
    let PeerInfo::Local { pid: Some(pid), .. } = connection.peer().clone() else {
        panic!("a spawned child's pid is known: {:?}", connection.peer());
    };
    let probe = bounded(LIMIT, "handshake", ProbeClient::from_connection(connection))
        .await
        .expect("handshake");
    (probe, pid)
}

#[tokio::test]
async fn dropping_the_client_ends_and_reaps_the_child() {
    let (probe, pid) = spawn_probe().await;
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    assert!(exists(pid));
    let dropped = Instant::now();
    drop(probe);
    // The child reads end-of-file and exits on its own, well before the reaper would kill it.
    assert!(
        eventually(
            rpc_core::transport::REAP_GRACE - Duration::from_secs(1),
            || !exists(pid)
        )
        .await,
        "child {pid} still exists (running or unreaped)"
    );
    println!(
        "child gone {:?} after the client was dropped",
        dropped.elapsed()
    );
}

#[tokio::test]
async fn the_childs_death_fails_pending_calls_at_once() {
    let (probe, pid) = spawn_probe().await;
    let stalled = tokio::spawn({
        let probe = probe.with_timeout(None);
        async move { probe.stall().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let outcome = bounded(LIMIT, "the pending call", stalled).await.unwrap();
    println!("pending call failed {:?} after kill -9", killed.elapsed());
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    assert!(probe.client().is_closed());
    // Reaped while the client still holds the dead connection: no zombie in between.
    assert!(
        eventually(LIMIT, || !exists(pid)).await,
        "child {pid} was not reaped"
    );
    drop(probe);
}

#[tokio::test]
async fn the_generated_client_spawns_from_a_command() {
    let probe = bounded(LIMIT, "spawn", ProbeClient::spawn(probe_command()))
        .await
        .unwrap();
    assert_eq!(
        probe.echo(vec![7; 100_000]).await.unwrap(),
        vec![7; 100_000]
    );
}

#[test]
fn the_blocking_client_spawns_and_reaps_too() {
    let probe = ProbeBlockingClient::spawn(probe_command()).unwrap();
    assert_eq!(probe.add(20, 22).unwrap(), 42);
    let connection =
        rpc_core::transport::spawn_blocking(probe_command(), &TransportConfig::default()).unwrap();
    let PeerInfo::Local { pid: Some(pid), .. } = connection.peer().clone() else {
        panic!("no pid");
    };
    let probe = ProbeBlockingClient::from_connection(connection).unwrap();
    assert_eq!(probe.add(1, 2).unwrap(), 3);
    drop(probe);
    assert!(
        wait_until(LIMIT, || !exists(pid)),
        "child {pid} was not reaped"
    );
}

#[tokio::test]
async fn a_program_that_does_not_exist_is_a_connect_error() {
    let outcome = ProbeClient::connect("spawn:/nonexistent/probe-server stdio").await;
    match outcome {
        Err(RpcError::Connect { address, source }) => {
            assert!(address.contains("/nonexistent/probe-server"), "{address}");
            assert!(source.to_string().contains("No such file"), "{source}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_child_that_is_no_server_fails_the_handshake() {
    // `cat` echoes our Hello back: a typed handshake error, never a hang or a garbled call.
    let options = ClientOptions::default().connect_timeout(Duration::from_secs(5));
    let outcome = bounded(
        LIMIT,
        "handshake with cat",
        ProbeClient::connect_with("spawn:cat", options),
    )
    .await;
    assert!(outcome.is_err(), "{outcome:?}");
    // `true` exits at once: the handshake sees the pipe close.
    let outcome = bounded(
        LIMIT,
        "handshake with true",
        ProbeClient::connect("spawn:true"),
    )
    .await;
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn stdio_and_spawn_are_each_one_sides_address() {
    let outcome = ProbeClient::connect("stdio").await;
    assert!(
        matches!(&outcome, Err(RpcError::Address(e)) if e.to_string().contains("server's address")),
        "{outcome:?}"
    );
    let outcome = rpc_core::Server::new()
        .start(
            rpc_tests::ProbeServer::new(rpc_tests::ProbeImpl::default()),
            &["spawn:probe-server stdio"],
        )
        .await;
    assert!(
        matches!(&outcome, Err(e) if e.to_string().contains("client's address")),
        "{outcome:?}"
    );
}
