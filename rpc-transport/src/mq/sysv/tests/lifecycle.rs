//! Peers that go (with and without goodbye), the queues they leave, a killed server's queues
//! reclaimed from the ledger, and a stalled connection that pauses only itself.

use std::time::{Duration, Instant};

use super::{address, assert_gone, bounded, link_of, pair, pattern, queues_of};
use crate::mq::sysv::ledger::Ledger;
use crate::mq::sysv::queue::Queue;
use crate::{Frame, Listener, TransportConfig, TransportError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_server_fails_a_pending_receive_and_a_waiting_send_at_once() {
    let address = address("server-gone");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (mut tx, mut rx, _) = client.split();
    let ids = queues_of(&tx);
    let (server_tx, server_rx, _) = server.split();
    // The server reads nothing: the client's sends fill the server's queue, then one waits.
    let pending = tokio::spawn(async move { (rx.recv().await, rx) });
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let blocked = tokio::spawn({
        let sent = sent.clone();
        async move {
            loop {
                if let Err(error) = tx.send(pattern(1000, 1)).await {
                    return (error, tx);
                }
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    bounded("filling the queue", async {
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = sent.load(std::sync::atomic::Ordering::SeqCst);
            if now == last {
                return;
            }
            last = now;
        }
    })
    .await;
    // Nothing is read ahead: what went is what the queue holds.
    let held = sent.load(std::sync::atomic::Ordering::SeqCst) as u64 * 1016;
    let queue = super::super::queue::Limits::read().msgmnb;
    assert!(
        held > 0 && held <= queue,
        "{held} bytes went before the sends stopped"
    );
    assert!(!blocked.is_finished() && !pending.is_finished());
    // The server "dies" without saying goodbye (its halves forgotten: no BYE, nothing
    // removed): the client sees its socket close.
    let link = link_of(&server_tx);
    std::mem::forget(server_tx);
    std::mem::forget(server_rx);
    drop(listener);
    let died = Instant::now();
    link.die_for_tests();
    let (error, mut tx) = bounded("the waiting send", blocked).await.unwrap();
    assert!(matches!(error, TransportError::Closed), "{error:?}");
    let (received, mut rx) = bounded("the pending receive", pending).await.unwrap();
    assert_eq!(received.unwrap(), None);
    assert!(
        died.elapsed() < Duration::from_secs(1),
        "{:?}",
        died.elapsed()
    );
    assert!(rx.peer_gone());
    assert!(matches!(
        tx.send(Frame::from_payload(b"x")).await,
        Err(TransportError::Closed)
    ));
    assert_eq!(rx.recv().await.unwrap(), None);
    // The survivor removed both queues, though the server removed nothing.
    assert_gone(&ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_ends_the_server_connection_after_its_last_frames() {
    let address = address("client-gone");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    // Said goodbye: everything sent arrives, then the end.
    let (mut client, mut server) = pair(&listener, &address).await;
    client
        .send(Frame::from_payload(b"last words"))
        .await
        .unwrap();
    drop(client);
    let frame = bounded("recv", server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"last words")));
    assert_eq!(bounded("recv", server.recv()).await.unwrap(), None);
    // Vanished without a goodbye, after the first message of a large frame: what it sent
    // whole arrives, then the cut frame is an error.
    let (client, mut server) = pair(&listener, &address).await;
    let (mut tx, rx, _) = client.split();
    let ids = queues_of(&tx);
    tx.send(Frame::from_payload(b"before dying")).await.unwrap();
    let link = link_of(&tx);
    tx.downcast_ref::<crate::mq::sysv::writer::SysvSender>()
        .unwrap()
        .send_first_message_for_tests(pattern(100_000, 3));
    link.die_for_tests();
    let frame = bounded("recv", server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"before dying")));
    let end = bounded("recv", server.recv()).await;
    assert!(matches!(end, Err(TransportError::Malformed(_))), "{end:?}");
    assert_gone(&ids).await;
    assert!(matches!(
        server.send(Frame::from_payload(b"x")).await,
        Err(TransportError::Closed)
    ));
    drop(server);
    // As if dead: nothing said, nothing removed.
    std::mem::forget((tx, rx));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dropped_after_a_large_reply_still_delivers_it_and_nothing_is_left() {
    let address = address("linger");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (mut client, mut server) = pair(&listener, &address).await;
    client.send(Frame::from_payload(b"give")).await.unwrap();
    assert!(bounded("recv", server.recv()).await.unwrap().is_some());
    // The reply is 2,000 times what the client's queue holds. Its send is given up (the
    // frame goes whole all the same) and the server dropped: its writer thread still sends
    // it, then says goodbye, while the client reads.
    let (mut server_tx, server_rx, _) = server.split();
    let ids = queues_of(&server_tx);
    let send = tokio::time::timeout(
        Duration::from_millis(20),
        server_tx.send(pattern(16 << 20, 9)),
    );
    assert!(send.await.is_err(), "the send waits for the client to read");
    drop((server_tx, server_rx, listener));
    let frame = bounded("the reply", client.recv()).await.unwrap().unwrap();
    assert!(frame == pattern(16 << 20, 9));
    assert_eq!(bounded("the end", client.recv()).await.unwrap(), None);
    drop(client);
    assert_gone(&ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_connection_pauses_only_its_own_client() {
    let address = address("stalled");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (stalled, _never_read) = pair(&listener, &address).await;
    let (mut stalled_tx, _stalled_rx, _) = stalled.split();
    // Fill everything the stalled connection holds.
    let mut sent = 0;
    while tokio::time::timeout(
        Duration::from_millis(100),
        stalled_tx.send(pattern(32 << 10, 2)),
    )
    .await
    .is_ok()
    {
        sent += 1;
        assert!(sent < 10_000, "the stalled connection never filled");
    }
    // Another client is served as ever.
    let (mut good, mut served) = pair(&listener, &address).await;
    for round in 0..100u8 {
        let started = Instant::now();
        good.send(pattern(1000, round)).await.unwrap();
        let frame = bounded("a good round trip", async {
            let frame = served.recv().await.unwrap().unwrap();
            served.send(frame).await.unwrap();
            good.recv().await.unwrap().unwrap()
        })
        .await;
        assert!(frame == pattern(1000, round));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_servers_queues_are_reclaimed_by_the_next_bind() {
    // What a server killed with its clients leaves: its queues, one with a message, and its
    // ledger record, naming a process that is gone.
    let queues = [
        Queue::create("test").unwrap(),
        Queue::create("test").unwrap(),
    ];
    let mut message = super::super::sys::MsgBuf::new(16);
    message.load(super::super::queue::DATA, b"old life");
    assert!(queues[0].send(&message, true).unwrap());
    let ledger = Ledger::open().unwrap();
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let record = ledger.path().join(format!("{pid}-1-00000000000000aa"));
    let text: String = queues
        .iter()
        .map(|q| format!("{} {}\n", q.id(), q.ctime()))
        .collect();
    std::fs::write(&record, text).unwrap();
    // A record of ours (a live process) is left alone.
    let live = Queue::create("test").unwrap();
    let ours = ledger.record(0xbb, &[&live]).unwrap();
    let listener = Listener::bind(&address("reclaim"), &TransportConfig::default())
        .await
        .unwrap();
    assert!(
        queues.iter().all(|q| !q.exists()),
        "the dead server's queues"
    );
    assert!(!record.exists(), "the dead server's record");
    assert!(live.exists());
    drop(ours);
    assert!(live.remove());
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_records_each_connection_until_its_queues_go() {
    let address = address("ledger");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (client_tx, client_rx, _) = client.split();
    let ids = queues_of(&client_tx);
    let ledger = Ledger::open().unwrap();
    let recorded = |ids: &[i32]| {
        ledger.own_records().iter().any(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            ids.iter()
                .all(|id| text.lines().any(|l| l.starts_with(&format!("{id} "))))
        })
    };
    assert!(recorded(&ids), "the server recorded both queues");
    drop((client_tx, client_rx));
    drop(server);
    assert_gone(&ids).await;
    let started = Instant::now();
    while recorded(&ids) {
        assert!(started.elapsed() < super::LIMIT, "the record stays");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
