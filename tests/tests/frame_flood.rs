//! A client that floods frames needing no answer (pongs) cannot hold the server: its read loop
//! takes frames already buffered without waiting, and it must still let the other tasks of its
//! worker run (it goes through its wait, where the runtime's cooperative budget is checked, at
//! least every 64 such frames). Here the server's runtime has one thread, so another client is
//! answered only if the flooded connection's loop lets go of it. (On this test's machine the
//! server drains one flooding client faster than it writes, so the loop also lets go whenever
//! the socket runs dry; the test holds the behaviour, whichever way it comes about.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::Server;
use rpc_core::wire::{self, Header, Kind};
use rpc_tests::{ProbeClient, ProbeImpl, ProbeServer, TempDir, raw_probe_connection};

/// Pongs per write: the server finds many whole frames in each read.
const PONGS_PER_WRITE: u64 = 512;

#[test]
fn a_pong_flood_does_not_hold_a_one_thread_server_from_other_clients() {
    let dir = TempDir::new();
    let address = format!("unix://{}/flood.sock", dir.0.display());

    // The server: a current-thread runtime on a thread of its own, until `stop`.
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = {
        let address = address.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let handle = Server::new()
                    .start(ProbeServer::new(ProbeImpl::default()), &[&address])
                    .await
                    .unwrap();
                ready_tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                drop(handle);
            });
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server started");

    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sent, answered) = client_runtime.block_on(async {
        let (mut sender, _receiver, _peer) = raw_probe_connection(&address, 1 << 20).await.split();
        let flooding = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(AtomicU64::new(0));
        let flood = tokio::spawn({
            let flooding = flooding.clone();
            let sent = sent.clone();
            async move {
                let mut nonce = 0u64;
                while flooding.load(Ordering::Relaxed) {
                    let pongs = (0..PONGS_PER_WRITE)
                        .map(|i| {
                            let header = Header {
                                kind: Kind::Pong,
                                method: 0,
                                call_id: nonce + i,
                            };
                            wire::message_frame(header, None, &()).unwrap()
                        })
                        .collect();
                    if sender.send_all(pongs).await.is_err() {
                        break;
                    }
                    nonce += PONGS_PER_WRITE;
                    sent.store(nonce, Ordering::Relaxed);
                }
            }
        });
        // Let the flood fill the server's socket before the other client comes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut answered = 0;
        let bystander =
            tokio::time::timeout(Duration::from_secs(10), ProbeClient::connect(&address))
                .await
                .expect("another client connects during the flood")
                .unwrap();
        for i in 0..50i64 {
            let sum = tokio::time::timeout(Duration::from_secs(10), bystander.add(i, i))
                .await
                .unwrap_or_else(|_| panic!("add #{i} not answered within 10 s during the flood"))
                .unwrap();
            assert_eq!(sum, 2 * i);
            answered += 1;
        }
        flooding.store(false, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(10), flood).await;
        (sent.load(Ordering::Relaxed), answered)
    });
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    eprintln!("{sent} pongs sent; {answered} calls answered meanwhile");
    assert_eq!(answered, 50);
    assert!(
        sent >= 100 * PONGS_PER_WRITE,
        "the flood never got going ({sent} pongs): the test saw nothing"
    );
}
