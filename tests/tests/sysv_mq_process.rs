//! `sysv-mq://` between real processes: a server killed mid-call fails the call at once and
//! its client removes the connection's queues; a server and its client killed together
//! leave queues that the next server reclaims from the ledger; a clean exit leaves nothing;
//! clients killed with -9 free their connections and queues.
//!
//! A server's queues are found in its ledger records (files `PID-START-TOKEN` in the user's
//! runtime directory, one line `ID CTIME` per queue). The tests run one at a time: every
//! `bind` reclaims the queues of dead servers, which would blur what each test shows.

use std::time::{Duration, Instant};

use rpc_core::{RpcError, Server};
use rpc_tests::{
    Fixture, ProbeClient, ProbeImpl, ProbeProcess, ProbeServer, Transport, bounded, eventually,
    unique_name,
};

const LIMIT: Duration = Duration::from_secs(20);

/// The ledger's directory, as `sysv-mq` chooses it.
fn ledger_dir() -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base)
            if std::fs::metadata(&base)
                .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0) =>
        {
            std::path::Path::new(&base).join("rpc-sysv-mq")
        }
        _ => std::env::temp_dir().join(format!("rpc-sysv-mq-{uid}")),
    }
}

/// The ids of the System V queues the server process `pid` recorded in the ledger.
fn queues_of_server(pid: u32) -> Vec<i32> {
    queues_in(&ledger_dir(), pid)
}

/// The ids of the queues the server process `pid` recorded in the ledger in `dir`.
fn queues_in(dir: &std::path::Path, pid: u32) -> Vec<i32> {
    let prefix = format!("{pid}-");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .flat_map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| line.split_once(' ')?.0.parse().ok())
        .collect()
}

/// Runs the tests one at a time.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// The ids of every System V queue.
fn listed() -> Vec<i32> {
    std::fs::read_to_string("/proc/sysvipc/msg")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Waits (at most [`LIMIT`]) until none of `ids` is listed.
async fn assert_gone(ids: &[i32], what: &str) {
    let gone = eventually(LIMIT, || listed().iter().all(|id| !ids.contains(id))).await;
    assert!(gone, "{what}: queues {ids:?} still listed");
}

/// Whether every thread of process `pid` is stopped (state `T` in its `stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.filter_map(Result::ok).all(|thread| {
        std::fs::read_to_string(thread.path().join("stat")).is_ok_and(|stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('T') || rest.starts_with('t'))
        })
    })
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_calls_at_once_and_its_client_removes_the_queues() {
    let _serial = serial().await;
    let address = format!("sysv-mq://{}", unique_name("killed"));
    let mut server = ProbeProcess::server(&address);
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    let queues = queues_of_server(server.pid());
    assert_eq!(queues.len(), 2, "one queue each way: {queues:?}");
    let stalled = tokio::spawn({
        let probe = probe.with_timeout(None);
        async move { probe.stall().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let killed = Instant::now();
    server.kill_9();
    let outcome = bounded(LIMIT, "the pending call", stalled).await.unwrap();
    println!("pending call failed {:?} after kill -9", killed.elapsed());
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    assert!(killed.elapsed() < Duration::from_secs(2));
    // The client, the survivor, removed both queues, though it still holds its connection.
    assert_gone(&queues, "after the server's death").await;
    let later = bounded(LIMIT, "a call after the death", probe.add(1, 2)).await;
    assert!(
        matches!(later, Err(RpcError::Disconnected { .. })),
        "{later:?}"
    );
    drop(probe);
    // A new server takes the name over.
    let restarted = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await
        .expect("restart");
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    drop(probe);
    bounded(LIMIT, "shutdown", restarted.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_with_its_client_leaves_queues_the_next_server_reclaims() {
    use nix::sys::signal::Signal;
    let _serial = serial().await;
    let address = format!("sysv-mq://{}", unique_name("both-killed"));
    // A ledger of this test's own: a sysv-mq server that another program of this user starts
    // meanwhile reclaims from the shared ledger, and would take these queues first.
    let runtime_dir = rpc_tests::TempDir::new();
    let env = [("XDG_RUNTIME_DIR", runtime_dir.0.as_os_str())];
    let mut server = ProbeProcess::server_with_env(&address, &env);
    let mut client = ProbeProcess::spawn_with_env(&["--stall", &address], &env);
    client.expect_line("stalling");
    let queues = queues_in(&runtime_dir.0.join("rpc-sysv-mq"), server.pid());
    assert_eq!(queues.len(), 2, "one queue each way: {queues:?}");
    // Stopped first, so that neither sees the other die: nobody removes anything. Only once
    // every thread of both has stopped: `kill` returns before a thread running on the other
    // CPU stops, and a server still running saw its client die and removed both queues (CI
    // failed this test so: none listed 100 ms after the kills).
    signal(client.pid(), Signal::SIGSTOP);
    signal(server.pid(), Signal::SIGSTOP);
    for pid in [client.pid(), server.pid()] {
        assert!(
            eventually(LIMIT, || all_threads_stopped(pid)).await,
            "process {pid} did not stop"
        );
    }
    client.kill_9();
    server.kill_9();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let listed_now = listed();
    assert!(
        queues.iter().all(|id| listed_now.contains(id)),
        "the killed processes' queues {queues:?} should still be there: {listed_now:?}"
    );
    // The next server (of any name) reclaims them as it binds.
    let next = ProbeProcess::server_with_env(&format!("sysv-mq://{}", unique_name("next")), &env);
    let listed_now = listed();
    assert!(
        queues.iter().all(|id| !listed_now.contains(id)),
        "queues {queues:?} left after the next server bound"
    );
    drop(next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_process_that_exits_normally_leaves_no_queue() {
    let _serial = serial().await;
    let address = format!("sysv-mq://{}", unique_name("clean"));
    let mut server = ProbeProcess::server(&address);
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.echo(vec![5; 50_000]).await.unwrap(), vec![5; 50_000]);
    let queues = queues_of_server(server.pid());
    assert_eq!(queues.len(), 2, "one queue each way: {queues:?}");
    assert!(server.terminate().success());
    let after = bounded(LIMIT, "a call after the exit", probe.add(1, 1)).await;
    assert!(
        matches!(after, Err(RpcError::Disconnected { .. })),
        "{after:?}"
    );
    assert_gone(&queues, "after the server's exit").await;
    drop(probe);
}

// Multi-threaded: the test blocks one worker reading the children's output while the other
// serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_clients_free_their_connections_and_queues() {
    use std::sync::atomic::Ordering::SeqCst;
    let _serial = serial().await;
    let fixture = Fixture::start(Transport::SysvMq, Server::new()).await;
    let before = queues_of_server(std::process::id());
    let mut clients: Vec<ProbeProcess> = (0..3)
        .map(|_| {
            let client = ProbeProcess::spawn(&["--stall", &fixture.address]);
            client.expect_line("stalling");
            client
        })
        .collect();
    let stalled = fixture.probe.stalled.clone();
    assert!(eventually(LIMIT, || stalled.load(SeqCst) == 3).await);
    let queues: Vec<i32> = queues_of_server(std::process::id())
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(queues.len(), 6, "two queues per client: {queues:?}");
    for client in &mut clients {
        client.kill_9();
    }
    assert!(
        eventually(LIMIT, || fixture.handle.connections() == 0).await,
        "the server still holds {} connections of killed clients",
        fixture.handle.connections()
    );
    assert_eq!(stalled.load(SeqCst), 0, "calls of killed clients still run");
    assert_gone(&queues, "after the clients' deaths").await;
    // The server goes on serving.
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    assert_eq!(probe.add(4, 4).await.unwrap(), 8);
}
