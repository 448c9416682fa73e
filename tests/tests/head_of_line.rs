//! No head-of-line blocking: while one call on a connection spends 1 s computing before its
//! first `.await`, fast calls on the same connection (a clone of the same client) are answered
//! at once; and while a call computes on one connection, calls on another connection are too.
//! The server is a `probe-server` process on its default multi-threaded runtime; the calls'
//! latencies are printed. The p99 asserted is ten times the 5 ms target, so a loaded machine
//! does not fail it, and no call may wait half the time a call held behind the computing one
//! used to wait.

use std::time::{Duration, Instant};

use rpc_tests::{ProbeClient, ProbeProcess, TempDir, unique_name};

const FAST_CALLS: usize = 300;
/// Ten times the 5 ms target, so a loaded machine does not fail it.
const P99_BOUND: Duration = Duration::from_millis(50);
/// Half the second a call held behind the computing one would wait.
const MAX_BOUND: Duration = Duration::from_millis(500);

/// Runs the tests one at a time: each keeps a CPU computing, and the bounds are for a
/// machine where only the test's own work competes for the other.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

async fn fast_calls_pass_a_computing_one(address: &str, server_options: &[&str]) {
    let _turn = one_at_a_time().await;
    let server = ProbeProcess::spawn(&[server_options, &[address]].concat());
    server.expect_line("listening on");
    let probe = ProbeClient::connect(address).await.unwrap();
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    let hog = tokio::spawn({
        let probe = probe.clone();
        async move { probe.spin(1000).await }
    });
    // Let the computing call start.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(FAST_CALLS);
    for i in 0..FAST_CALLS as i64 {
        let sent = Instant::now();
        assert_eq!(probe.add(i, 1).await.unwrap(), i + 1);
        latencies.push(sent.elapsed());
        // Spread the calls over the computing call's second.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let during = started.elapsed();
    let rounds = hog.await.unwrap().unwrap();
    assert!(rounds > 0);
    latencies.sort();
    let p50 = latencies[FAST_CALLS / 2];
    let p99 = latencies[FAST_CALLS * 99 / 100];
    let max = latencies[FAST_CALLS - 1];
    eprintln!(
        "{address} {server_options:?}: {FAST_CALLS} fast calls in {during:?} beside a 1 s computing call: p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    assert!(
        p99 < P99_BOUND && max < MAX_BOUND,
        "{address}: fast calls waited beside the computing one: p99 {p99:?}, max {max:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix() {
    let dir = TempDir::new();
    fast_calls_pass_a_computing_one(&format!("unix://{}/hol.sock", dir.0.display()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_dedicated_thread() {
    fast_calls_pass_a_computing_one(&format!("shm://{}", unique_name("hol")), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_runtime_served() {
    let address = format!("shm://{}", unique_name("hol"));
    fast_calls_pass_a_computing_one(&address, &["--dedicated-threads", "0"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fast_calls_pass_a_computing_one(&format!("tcp://127.0.0.1:{port}"), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo() {
    let dir = TempDir::new();
    fast_calls_pass_a_computing_one(&format!("fifo://{}/hol", dir.0.display()), &[]).await;
}

/// Before, the server's routing task (one per `mq://` server, every connection's frames
/// through it) spun with `tokio::task::yield_now`, which leaves a task in its worker's own
/// list of deferred tasks: once that worker polled the computing handler, routing stopped,
/// and a fast call waited up to the whole second (951 ms measured). One connection's queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mq() {
    fast_calls_pass_a_computing_one(&format!("mq://{}", unique_name("hol")), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysv_mq() {
    fast_calls_pass_a_computing_one(&format!("sysv-mq://{}", unique_name("hol")), &[]).await;
}

/// How long the computing call of [`other_connections_pass_a_computing_one`] computes.
const COMPUTING: Duration = Duration::from_millis(200);

/// While a call computes on connection A, connection B keeps calling, back to back. Before,
/// B's read loop, busy-polling its socket with `tokio::task::yield_now` between looks, sat in
/// its worker's list of deferred tasks whenever that worker went on to poll A's handler, and
/// B's call then waited out the handler (194-199 ms of 200, in about every other run of ten
/// rounds; a regression test that catches the old behaviour about that often). The bound is
/// three quarters of the handler's time.
async fn other_connections_pass_a_computing_one(address: &str) {
    let _turn = one_at_a_time().await;
    let server = ProbeProcess::spawn(&[address]);
    server.expect_line("listening on");
    let a = ProbeClient::connect(address).await.unwrap();
    let b = ProbeClient::connect(address).await.unwrap();
    assert_eq!(b.add(1, 1).await.unwrap(), 2);
    let mut worst = Duration::ZERO;
    let mut calls = 0u64;
    for _ in 0..10 {
        let computing = tokio::spawn({
            let a = a.clone();
            async move { a.spin(COMPUTING.as_millis() as u64).await }
        });
        let started = Instant::now();
        while started.elapsed() < COMPUTING + Duration::from_millis(50) {
            let sent = Instant::now();
            assert_eq!(b.add(1, 1).await.unwrap(), 2);
            worst = worst.max(sent.elapsed());
            calls += 1;
        }
        assert!(computing.await.unwrap().unwrap() > 0);
    }
    eprintln!(
        "{address}: {calls} calls on another connection beside 10 computing ones: worst {worst:?}"
    );
    assert!(
        worst < COMPUTING * 3 / 4,
        "{address}: a call on another connection waited {worst:?} beside a computing one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_connections_pass_a_computing_one_over_unix() {
    let dir = TempDir::new();
    other_connections_pass_a_computing_one(&format!("unix://{}/hol.sock", dir.0.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_connections_pass_a_computing_one_over_tcp() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    other_connections_pass_a_computing_one(&format!("tcp://127.0.0.1:{port}")).await;
}
