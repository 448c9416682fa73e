//! `mq://` between real processes: a server killed mid-call leaves no queue and a restart
//! takes the name over, a clean exit leaves nothing, clients killed with -9 leave nothing, a
//! client stopped (SIGSTOP) with thousands of calls in flight stalls nobody else, and hellos
//! over the handshake's limit are refused without growing the server.
//!
//! Budget: `RLIMIT_MSGQUEUE` is per user, and other processes of ours may hold most of it, so
//! each test runs under a uid of its own when we are root (`own_uid.rs`, shared with
//! rpc-transport's tests), its children too; otherwise on what our uid has left.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rpc_core::{RpcError, Server};
use rpc_tests::{
    Fixture, ProbeBlockingClient, ProbeClient, ProbeImpl, ProbeProcess, ProbeServer, Transport,
    bounded, rss_kib, unique_name,
};

const LIMIT: Duration = Duration::from_secs(20);

#[path = "../../rpc-transport/src/mq/tests/own_uid.rs"]
mod own_uid;

/// Runs the calling test under a uid of its own if we may (see `own_uid.rs`): `true` once it
/// passed there.
fn delegated(name: &str) -> bool {
    own_uid::delegated(&own_uid::test_path(module_path!(), name))
}

/// Asserts that no queue of `mq://NAME` (`/NAME`, or a reply queue `/NAME.*`) has a name.
fn assert_no_queue_of(address: &str) {
    own_uid::assert_no_queue_of(address.strip_prefix("mq://").unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_calls_at_once_and_a_restart_cleans_up() {
    if delegated("a_killed_server_fails_calls_at_once_and_a_restart_cleans_up") {
        return;
    }
    let address = format!("mq://{}", unique_name("killed"));
    let mut server = ProbeProcess::server(&address);
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    let blocking = {
        let address = address.clone();
        tokio::task::spawn_blocking(move || ProbeBlockingClient::connect(&address))
            .await
            .unwrap()
            .unwrap()
    };
    let blocking = tokio::task::spawn_blocking(move || {
        assert_eq!(blocking.add(2, 2).unwrap(), 4);
        blocking
    })
    .await
    .unwrap();
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
    // Nothing of the killed server keeps a name.
    assert_no_queue_of(&address);
    // The blocking client learns of the death on its next call, and gives its queues back
    // then, though it is still held.
    let (blocking, failed) = tokio::task::spawn_blocking(move || {
        let failed = blocking.add(3, 3);
        (blocking, failed)
    })
    .await
    .unwrap();
    assert!(
        matches!(failed, Err(RpcError::Disconnected { .. })),
        "{failed:?}"
    );
    // Nor does the client, still held, keep the connection's queues open (each counts against
    // its creator's RLIMIT_MSGQUEUE until its last descriptor closes): its reader task gives
    // the transport back as it ends the connection.
    let me = std::process::id();
    let released = Instant::now();
    while queue_fds_of(me, &address) > 0 && released.elapsed() < LIMIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(queue_fds_of(me, &address), 0, "the dead clients' queues");
    let after = probe.add(1, 1).await;
    assert!(
        matches!(after, Err(RpcError::Disconnected { .. })),
        "{after:?}"
    );
    let (blocking, after) = tokio::task::spawn_blocking(move || {
        let after = blocking.add(1, 1);
        (blocking, after)
    })
    .await
    .unwrap();
    assert!(
        matches!(after, Err(RpcError::Disconnected { .. })),
        "a later blocking call: {after:?}"
    );
    assert!(blocking.client().is_closed());
    drop((probe, blocking));
    // A new server takes the name over (the old server's lock died with it).
    let restarted = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await
        .expect("restart over a leftover queue");
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    drop(probe);
    bounded(LIMIT, "shutdown", restarted.shutdown()).await;
    assert_no_queue_of(&address);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_process_that_exits_normally_leaves_no_queue() {
    if delegated("a_server_process_that_exits_normally_leaves_no_queue") {
        return;
    }
    let address = format!("mq://{}", unique_name("clean"));
    let mut server = ProbeProcess::server(&address);
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.echo(vec![5; 50_000]).await.unwrap(), vec![5; 50_000]);
    // The queues lost their names as soon as they were made.
    assert_no_queue_of(&address);
    assert!(server.terminate().success());
    assert_no_queue_of(&address);
    let after = bounded(LIMIT, "a call after the exit", probe.add(1, 1)).await;
    assert!(
        matches!(after, Err(RpcError::Disconnected { .. })),
        "{after:?}"
    );
}

// Multi-threaded: the test blocks one worker reading the children's output while the other
// serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_clients_free_their_connections() {
    if delegated("killed_clients_free_their_connections") {
        return;
    }
    let fixture = Fixture::start(Transport::Mq, Server::new()).await;
    rpc_tests::kill_stalled_clients(&fixture, 3).await;
    assert_no_queue_of(&fixture.address);
    // The server goes on serving.
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    assert_eq!(probe.add(4, 4).await.unwrap(), 8);
}

/// The part a child plays when this binary runs with it set: the address of a server to
/// flood with [`STALLED_CALLS`] echo calls.
const CHILD_ENV: &str = "RPC_MQ_PROCESS_CHILD";
/// Calls the stalled client has in flight.
const STALLED_CALLS: usize = 4000;
/// Bytes each of them sends and gets back: four or five messages of a reply queue, so its
/// replies back up as soon as the client stops reading.
const STALLED_CALL_BYTES: usize = 4096;

/// Not a test of its own: the client a test stops with SIGSTOP (a no-op when run normally).
/// Starts [`STALLED_CALLS`] calls at once, says "in flight" once replies flow (with thousands
/// still pending), and at the end how many came back right.
#[test]
fn child() {
    let Ok(address) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let probe = ProbeClient::connect(&address).await.unwrap();
        let completed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls: Vec<_> = (0..STALLED_CALLS)
            .map(|i| {
                let probe = probe.with_timeout(None);
                let payload = vec![i as u8; STALLED_CALL_BYTES];
                let completed = completed.clone();
                tokio::spawn(async move {
                    let right =
                        matches!(probe.echo(payload.clone()).await, Ok(back) if back == payload);
                    completed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    right
                })
            })
            .collect();
        // Replies flowing while thousands of calls are still pending: the server is behind by
        // about as many calls as it holds for one connection.
        let started = Instant::now();
        while completed.load(std::sync::atomic::Ordering::SeqCst) < 200 {
            assert!(started.elapsed() < LIMIT, "the calls never got going");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        println!("in flight {}", probe.client().pending_calls());
        let mut ok = 0;
        for call in calls {
            ok += usize::from(call.await.unwrap());
        }
        println!("done {ok} of {STALLED_CALLS}");
    });
}

/// A child running [`child`] against `address`, with its stdout lines collected.
struct StalledClient {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl StalledClient {
    /// Starts it and waits until its calls are in flight.
    fn start(address: &str) -> StalledClient {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, address)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let client = StalledClient { child, lines };
        client.expect("in flight");
        client
    }

    /// Waits (at most `LIMIT`) for a line with `prefix`, skipping others; returns the line from
    /// `prefix` on.
    fn expect(&self, prefix: &str) -> String {
        let give_up = Instant::now() + LIMIT;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // libtest may print "test child ... " before it on the same line.
                Ok(line) if line.contains(prefix) => {
                    return line[line.find(prefix).unwrap()..].to_owned();
                }
                Ok(_) => {}
                Err(_) => panic!("the stalled client never printed {prefix:?}"),
            }
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }
}

impl Drop for StalledClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Descriptors of `pid` open on queues of `mq://NAME` (named or not).
fn queue_fds_of(pid: u32, address: &str) -> usize {
    let name = format!("/{}", address.strip_prefix("mq://").unwrap());
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            let target = target.trim_end_matches(" (deleted)");
            target == name || target.starts_with(&format!("{name}."))
        })
        .count()
}

/// A good client's calls while another client of the server is stopped: each must come back
/// within two seconds, for three seconds.
async fn keeps_serving(good: &ProbeClient, round: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(3);
    let mut calls = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let sum = bounded(
            Duration::from_secs(2),
            &format!("round {round}: a good client's call beside a stopped one"),
            good.add(calls, 1),
        )
        .await;
        assert_eq!(sum.unwrap(), calls + 1);
        assert!(started.elapsed() < Duration::from_secs(2));
        calls += 1;
    }
    calls as usize
}

/// The reported stall: a client stopped with thousands of calls in flight (its reply queue
/// fills, so the server's replies to it wait, and so does the server's reading of its calls)
/// froze every mq connection of the server. Now it pauses only its own: a good client keeps
/// completing calls, a new one connects, and on SIGCONT every stalled call gets its reply;
/// after SIGKILL the server lets go of everything of the dead client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_client_with_calls_in_flight_stalls_nobody_else() {
    if delegated("a_stopped_client_with_calls_in_flight_stalls_nobody_else") {
        return;
    }
    use nix::sys::signal::Signal;
    let address = format!("mq://{}", unique_name("stopped"));
    let server = ProbeProcess::server(&address);
    let good = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(good.add(1, 1).await.unwrap(), 2);
    let baseline = queue_fds_of(server.pid(), &address);
    for round in 0..3 {
        let stalled = {
            let address = address.clone();
            tokio::task::spawn_blocking(move || StalledClient::start(&address))
                .await
                .unwrap()
        };
        stalled.signal(Signal::SIGSTOP);
        // Long enough for the stalled calls' replies to fill its reply queue, and the
        // server's reading of its calls to stop in turn.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let calls = keeps_serving(&good, round).await;
        println!("round {round}: {calls} calls of the good client while the other was stopped");
        let newcomer = bounded(
            LIMIT,
            "a new client's connect",
            ProbeClient::connect(&address),
        )
        .await
        .unwrap();
        assert_eq!(newcomer.add(2, 2).await.unwrap(), 4);
        drop(newcomer);
        if round < 2 {
            // Resumed, it gets every reply: none was dropped while it was stopped.
            stalled.signal(Signal::SIGCONT);
            let done = tokio::task::spawn_blocking(move || stalled.expect("done"))
                .await
                .unwrap();
            assert_eq!(done, format!("done {STALLED_CALLS} of {STALLED_CALLS}"));
        } else {
            drop(stalled); // SIGKILL, still stopped
        }
        assert_eq!(good.add(3, 4).await.unwrap(), 7);
        // The server lets go of the gone client's reply queue.
        assert!(
            rpc_tests::eventually(LIMIT, || queue_fds_of(server.pid(), &address) == baseline).await,
            "round {round}: the server holds {} queue descriptors, {baseline} before",
            queue_fds_of(server.pid(), &address)
        );
    }
    assert_no_queue_of(&address);
    assert_eq!(good.add(5, 5).await.unwrap(), 10);
}

/// A raw client's 1 MiB frame sent before any `Hello`: the server lowered the connection's
/// limit to the handshake's 64 KiB, so the routing task refuses it as it starts to arrive
/// instead of reassembling it, and closes that connection.
async fn oversized_hello(address: &str) {
    use rpc_core::transport::{Frame, TransportConfig, connect};
    let address = address.parse().unwrap();
    let mut connection = bounded(LIMIT, "a raw connect", async {
        connect(&address, &TransportConfig::default()).await
    })
    .await
    .unwrap();
    // The send may find the connection closed already.
    let _ = bounded(
        LIMIT,
        "sending a 1 MiB hello",
        connection.send(Frame::filled(1 << 20, |b| b.fill(0x5a))),
    )
    .await;
    let end = bounded(LIMIT, "the server closing", connection.recv()).await;
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_over_the_handshake_limit_are_refused_without_being_reassembled() {
    if delegated("hellos_over_the_handshake_limit_are_refused_without_being_reassembled") {
        return;
    }
    let address = format!("mq://{}", unique_name("big-hello"));
    let server = ProbeProcess::server(&address);
    let good = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(good.add(1, 1).await.unwrap(), 2);
    // Warm up (the allocator's arenas, the routing task's buffers), then measure.
    oversized_hello(&address).await;
    let before = rss_kib(server.pid());
    for _ in 0..30 {
        oversized_hello(&address).await;
    }
    let after = rss_kib(server.pid());
    println!("server RSS {before} KiB before 30 oversized hellos, {after} KiB after");
    // Reassembled, each would cost about 1 MiB, of which the allocator keeps some (2 MiB
    // over the 30 when the limit did not reach the routing task).
    assert!(
        after < before + 1024,
        "the server grew from {before} KiB to {after} KiB"
    );
    // Others are served, before and after.
    assert_eq!(good.add(2, 2).await.unwrap(), 4);
    let newcomer = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(
        newcomer.echo(vec![3; 60_000]).await.unwrap(),
        vec![3; 60_000]
    );
    drop(newcomer);
    drop(good);
    drop(server);
    assert_no_queue_of(&address);
}
