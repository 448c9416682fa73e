//! Shared memory costs no thread per connection for liveness: one `rpc-shm-watch` thread per
//! process reads the rendezvous socket of every link. Measured with 200 connections from this
//! process (half async, half blocking) to a server in a child process; then the child is
//! killed with SIGKILL and every pending call must fail at once.
//!
//! The server serves only its first `dedicated_threads` (CPUs, at least 4) shm connections from a
//! thread of their own (`rpc-shm-conn`); the rest run on the runtime's workers, so its threads
//! stay bounded too.

use std::time::{Duration, Instant};

use rpc_core::RpcError;
use rpc_tests::{ProbeBlockingClient, ProbeClient, ProbeProcess as Process, TempDir};

const CONNECTIONS: usize = 200;
/// How many threads this process may grow by while it opens the connections: the runtime's
/// blocking pool may add one or two for the async connects; a thread per link would be 200.
const GROWTH_LIMIT: usize = 8;
/// How soon after the kill every pending call must have failed.
const NOTICE_LIMIT: Duration = Duration::from_secs(2);
const LIMIT: Duration = Duration::from_secs(20);

/// `Threads:` of `/proc/PID/status` (`self` for this process).
fn threads(pid: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .expect("a Threads: line")
        .trim()
        .parse()
        .unwrap()
}

/// How many threads of `pid` are called `name`.
fn threads_named(pid: &str, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Raises this process's descriptor limit to its hard limit: 200 connections take about a
/// thousand descriptors here.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

#[test]
fn two_hundred_connections_share_one_watcher_and_a_killed_server_is_noticed_at_once() {
    raise_nofile();
    let dir = TempDir::new();
    let address = format!("shm://{}/probe.sock", dir.0.display());
    let mut server = Process::server(&address);
    let server_pid = server.pid().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // One connection of each kind first: the watcher, the runtime's workers and its blocking
    // pool are there before the count starts.
    let first_async = runtime.block_on(ProbeClient::connect(&address)).unwrap();
    assert_eq!(runtime.block_on(first_async.add(1, 1)).unwrap(), 2);
    let first_blocking = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(first_blocking.add(1, 1).unwrap(), 2);
    let before = threads("self");
    assert_eq!(threads_named("self", "rpc-shm-watch"), 1);

    let mut asynchronous = Vec::new();
    let mut blocking = Vec::new();
    for i in 0..CONNECTIONS {
        if i % 2 == 0 {
            let client = runtime.block_on(ProbeClient::connect(&address)).unwrap();
            assert_eq!(runtime.block_on(client.add(2, 3)).unwrap(), 5);
            asynchronous.push(client);
        } else {
            let client = ProbeBlockingClient::connect(&address).unwrap();
            assert_eq!(client.add(2, 3).unwrap(), 5);
            blocking.push(client);
        }
    }
    let after = threads("self");
    let (server_watchers, server_total) = (
        threads_named(&server_pid, "rpc-shm-watch"),
        threads(&server_pid),
    );
    eprintln!(
        "{} connections: this process {before} -> {after} threads ({} rpc-shm-watch); \
         the server {server_total} threads, {server_watchers} rpc-shm-watch, {} rpc-shm-conn",
        CONNECTIONS + 2,
        threads_named("self", "rpc-shm-watch"),
        threads_named(&server_pid, "rpc-shm-conn"),
    );
    assert!(
        after <= before + GROWTH_LIMIT,
        "{CONNECTIONS} connections grew this process from {before} to {after} threads"
    );
    assert_eq!(threads_named("self", "rpc-shm-watch"), 1);
    assert_eq!(server_watchers, 1, "the server's watcher threads");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dedicated = cpus.max(4);
    assert!(
        threads_named(&server_pid, "rpc-shm-conn") <= dedicated,
        "the server serves at most max(CPUs, 4) shm connections from a thread of their own"
    );
    // Runtime workers (one per CPU), its blocking pool, the watcher, the dedicated threads.
    let server_bound = 2 * cpus + dedicated + 16;
    assert!(
        server_total <= server_bound,
        "{CONNECTIONS} connections gave the server {server_total} threads (bound {server_bound})"
    );

    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let with_connections = fds();

    // Pending calls on an async and a blocking connection, then kill -9.
    let pending_async = runtime.spawn({
        let probe = asynchronous[CONNECTIONS / 4].with_timeout(None);
        async move {
            let outcome = probe.stall().await;
            (outcome, Instant::now())
        }
    });
    let pending_blocking = std::thread::spawn({
        let probe = blocking[CONNECTIONS / 4].with_timeout(None);
        move || (probe.stall(), Instant::now())
    });
    std::thread::sleep(Duration::from_millis(200));
    let killed_at = Instant::now();
    server.kill_9();
    let (outcome, failed_at) = pending_blocking.join().unwrap();
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    let blocking_after = failed_at.duration_since(killed_at);
    let (outcome, failed_at) = runtime
        .block_on(async { tokio::time::timeout(LIMIT, pending_async).await })
        .expect("the async call ended")
        .unwrap();
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    let async_after = failed_at.duration_since(killed_at);
    eprintln!(
        "after kill -9: blocking call failed in {blocking_after:?}, async in {async_after:?}"
    );
    assert!(blocking_after < NOTICE_LIMIT, "{blocking_after:?}");
    assert!(async_after < NOTICE_LIMIT, "{async_after:?}");
    // Every other connection knows too: a call fails without waiting for any timeout.
    let started = Instant::now();
    for client in &blocking {
        assert!(client.add(1, 1).is_err());
    }
    runtime.block_on(async {
        for client in &asynchronous {
            assert!(client.add(1, 1).await.is_err());
        }
    });
    assert!(
        started.elapsed() < NOTICE_LIMIT,
        "{CONNECTIONS} calls on dead connections took {:?}",
        started.elapsed()
    );

    // An async client gives its connection's descriptors back once it finds the connection
    // ended, while it is still held.
    assert!(
        rpc_tests::wait_until(LIMIT, || fds() + 3 * (CONNECTIONS / 2) < with_connections),
        "the dead async clients keep their descriptors: {with_connections} -> {}",
        fds()
    );
    // The watcher lets go of dead links: the blocking clients' descriptors close once they are
    // dropped.
    drop((asynchronous, blocking, first_async, first_blocking));
    assert!(
        rpc_tests::wait_until(LIMIT, || fds() + 3 * CONNECTIONS < with_connections),
        "descriptors stay open after the connections are gone: {with_connections} -> {}",
        fds()
    );
    assert_eq!(threads_named("self", "rpc-shm-watch"), 1);
}
