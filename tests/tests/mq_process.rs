//! `mq://` between real processes: a server killed mid-call, the queue it leaves and the
//! restart that replaces it, a clean exit that leaves nothing, and clients killed with -9.

use std::ffi::CString;
use std::time::{Duration, Instant};

use nix::mqueue::{MQ_OFlag, mq_close, mq_open};
use nix::sys::stat::Mode;
use rpc_core::{RpcError, Server};
use rpc_tests::{
    Fixture, ProbeClient, ProbeImpl, ProbeProcess, ProbeServer, Transport, bounded, unique_name,
};

const LIMIT: Duration = Duration::from_secs(20);

/// Whether a queue named `/NAME` exists for `mq://NAME`.
fn queue_exists(address: &str) -> bool {
    let name = CString::new(format!("/{}", address.strip_prefix("mq://").unwrap())).unwrap();
    match mq_open(name.as_c_str(), MQ_OFlag::O_RDONLY, Mode::empty(), None) {
        Ok(queue) => {
            let _ = mq_close(queue);
            true
        }
        Err(nix::errno::Errno::ENOENT) => false,
        Err(other) => panic!("mq_open: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_calls_at_once_and_a_restart_cleans_up() {
    let address = format!("mq://{}", unique_name("killed"));
    let mut server = ProbeProcess::server(&address);
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
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
    assert!(queue_exists(&address), "kill -9 leaves the server queue");
    // A new server takes the name over (the old server's lock died with it).
    let restarted = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await
        .expect("restart over a leftover queue");
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    drop(probe);
    bounded(LIMIT, "shutdown", restarted.shutdown()).await;
    assert!(!queue_exists(&address), "a clean exit leaves no queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_process_that_exits_normally_leaves_no_queue() {
    let address = format!("mq://{}", unique_name("clean"));
    let mut server = ProbeProcess::server(&address);
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.echo(vec![5; 50_000]).await.unwrap(), vec![5; 50_000]);
    assert!(queue_exists(&address));
    assert!(server.terminate().success());
    assert!(!queue_exists(&address));
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
    let fixture = Fixture::start(Transport::Mq, Server::new()).await;
    rpc_tests::kill_stalled_clients(&fixture, 3).await;
    // The server goes on serving.
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    assert_eq!(probe.add(4, 4).await.unwrap(), 8);
}
