//! The async client reading its own replies (`rpc-core/src/client/direct.rs`) over shared
//! memory, Unix sockets, TCP, FIFOs and both kinds of message queue: on the default
//! multi-threaded runtime, against a server in another process, callers that spin on the
//! connection and a reader task that sleeps share one connection. Every reply must reach its
//! own caller, whoever reads it, and a server that dies or slows down must not strand one.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc_core::RpcError;
use rpc_tests::{ProbeClient, ProbeProcess as Process, TempDir};

const LIMIT: Duration = Duration::from_secs(30);

/// The transports whose callers read their own replies.
const SCHEMES: [&str; 6] = ["shm", "unix", "tcp", "fifo", "mq", "sysv-mq"];

/// As `#[tokio::main]` builds it.
fn default_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Many tasks call at once, fast and slow calls mixed, while a stream runs: each reply is
/// its own call's, on both runtimes.
fn every_reply_reaches_its_caller(scheme: &str, runtime: &tokio::runtime::Runtime) {
    let dir = TempDir::new();
    let (_server, address) = Process::serve_fresh(scheme, &dir);
    runtime.block_on(async {
        let probe = ProbeClient::connect(&address).await.unwrap();
        let stream = tokio::spawn({
            let probe = probe.clone();
            async move {
                let mut items = probe.items(2_000, 64).await.unwrap();
                let mut count = 0u64;
                while let Some(item) = items.next().await {
                    let item = item.unwrap();
                    assert!(item.iter().all(|&b| u64::from(b) == count % 251));
                    count += 1;
                }
                count
            }
        });
        let mut tasks = Vec::new();
        for task in 0..16i64 {
            let probe = probe.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..300i64 {
                    if i % 50 == 7 {
                        // A slow call: its reply comes long after any spin ran out.
                        let id = (task * 1000 + i) as u64;
                        assert_eq!(probe.tag(id, 3).await.unwrap(), id);
                    } else {
                        assert_eq!(
                            probe.add(task * 1_000_000, i).await.unwrap(),
                            task * 1_000_000 + i
                        );
                    }
                }
            }));
        }
        tokio::time::timeout(LIMIT, async {
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(stream.await.unwrap(), 2_000);
        })
        .await
        .expect("every call answered in time");
        // Sequential calls after the storm: the fast path is still right.
        tokio::time::timeout(LIMIT, async {
            for i in 0..20_000 {
                assert_eq!(probe.add(i, 1).await.unwrap(), i + 1);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{scheme}: sequential calls answered in time"));
    });
}

#[test]
fn every_reply_reaches_its_caller_on_the_default_runtime() {
    let runtime = default_runtime();
    for scheme in SCHEMES {
        every_reply_reaches_its_caller(scheme, &runtime);
    }
}

#[test]
fn every_reply_reaches_its_caller_on_a_current_thread_runtime() {
    let runtime = current_thread_runtime();
    for scheme in SCHEMES {
        every_reply_reaches_its_caller(scheme, &runtime);
    }
}

/// A server killed while callers spin on the connection: every call fails with
/// `Disconnected` promptly, none waits for its timeout.
#[test]
fn a_server_killed_while_callers_spin_fails_every_call_promptly() {
    for scheme in SCHEMES {
        a_server_killed_while_callers_spin(scheme);
    }
}

fn a_server_killed_while_callers_spin(scheme: &str) {
    let dir = TempDir::new();
    let (mut server, address) = Process::serve_fresh(scheme, &dir);
    let runtime = default_runtime();
    let probe = runtime
        .block_on(ProbeClient::connect(&address))
        .unwrap()
        .with_timeout(Some(Duration::from_secs(60)));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let probe = probe.clone();
            runtime.spawn(async move {
                loop {
                    if let Err(error) = probe.add(1, 2).await {
                        return error;
                    }
                }
            })
        })
        .collect();
    let stalled = runtime.spawn({
        let probe = probe.clone();
        async move { probe.stall().await }
    });
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    server.kill_9();
    runtime.block_on(async {
        for caller in callers {
            let error = tokio::time::timeout(LIMIT, caller).await.unwrap().unwrap();
            assert!(matches!(error, RpcError::Disconnected { .. }), "{error:?}");
        }
        let outcome = tokio::time::timeout(LIMIT, stalled).await.unwrap().unwrap();
        assert!(
            matches!(outcome, Err(RpcError::Disconnected { .. })),
            "{outcome:?}"
        );
    });
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{scheme}: the calls failed {:?} after the kill",
        killed.elapsed()
    );
    // And a new call fails at once rather than hanging.
    let error = runtime
        .block_on(async { tokio::time::timeout(LIMIT, probe.add(1, 1)).await })
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, RpcError::Disconnected { .. }), "{error:?}");
}

/// A call that times out while its caller holds the connection (the server stalls it) gives
/// it back: the next calls are answered.
#[test]
fn a_call_that_times_out_gives_the_connection_back() {
    for scheme in SCHEMES {
        a_call_that_times_out_gives_it_back(scheme);
    }
}

fn a_call_that_times_out_gives_it_back(scheme: &str) {
    let dir = TempDir::new();
    let (_server, address) = Process::serve_fresh(scheme, &dir);
    let runtime = default_runtime();
    runtime.block_on(async {
        let probe = ProbeClient::connect(&address).await.unwrap();
        for round in 0..20 {
            let error = probe
                .with_timeout(Some(Duration::from_millis(5)))
                .stall()
                .await
                .unwrap_err();
            assert!(
                matches!(error, RpcError::DeadlineExceeded { .. }),
                "{error:?}"
            );
            let sum = tokio::time::timeout(LIMIT, probe.add(round, 1))
                .await
                .expect("answered after a timed-out call")
                .unwrap();
            assert_eq!(sum, round + 1);
        }
    });
}
