//! Tests on real System V queues and sockets; `direct.rs` has those of looking at a receiver
//! without waiting, `lifecycle.rs` those of peers that go and of the queues they leave.
//! System V queues count against no per-user budget, only the system's number of queues
//! (`kernel.msgmni`, 32,000 by default): each test makes a few pairs, so they run in parallel.

mod attacks;
mod direct;
mod lifecycle;

use std::time::Duration;

pub(super) use crate::mq::tests::{
    LIMIT, bind_once_free, bounded, eight_clients_interleave, look_until_frame, pair, pattern,
};
use crate::{
    Address, Deadline, Frame, Listener, TransportConfig, TransportError, connect, connect_blocking,
};

pub(super) fn address(tag: &str) -> Address {
    format!("sysv-mq://rpc-test-{}-{tag}", std::process::id())
        .parse()
        .unwrap()
}

/// The link of a connection's sending half.
pub(super) fn link_of(sender: &crate::FrameSender) -> std::sync::Arc<super::link::Link> {
    sender
        .downcast_ref::<super::writer::SysvSender>()
        .expect("a sysv-mq half")
        .link_for_tests()
}

/// The ids of the queues of a connection, by its sending half (the queue its side reads,
/// the one it writes).
pub(super) fn queues_of(sender: &crate::FrameSender) -> [i32; 2] {
    let link = link_of(sender);
    [link.rx().id(), link.tx().id()]
}

/// The ids of every System V message queue of the IPC namespace.
pub(super) fn listed() -> Vec<i32> {
    std::fs::read_to_string("/proc/sysvipc/msg")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Waits (at most [`LIMIT`]) until none of `ids` is listed.
pub(super) async fn assert_gone(ids: &[i32]) {
    let started = std::time::Instant::now();
    loop {
        let left: Vec<i32> = listed().into_iter().filter(|id| ids.contains(id)).collect();
        if left.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "queues {left:?} still listed after {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const SIZES: [usize; 11] = [
    0,
    1,
    100,
    8175,
    8176,
    8177,
    16_384,
    65536,
    100_000,
    1 << 20,
    16 << 20,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_many_sizes_cross_both_ways() {
    let address = address("sizes");
    let config = TransportConfig::default();
    let listener = Listener::bind(&address, &config).await.unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (mut client_tx, mut client_rx, peer) = client.split();
    let ids = queues_of(&client_tx);
    assert!(
        matches!(peer, crate::PeerInfo::Unix { pid: Some(pid), .. } if pid == std::process::id() as i32),
        "{peer:?}"
    );
    let (mut server_tx, mut server_rx, _) = server.split();
    let mut crossed = queues_of(&server_tx);
    crossed.reverse();
    assert_eq!(
        crossed, ids,
        "the server reads what the client writes, and back"
    );
    assert_eq!(listed().iter().filter(|id| ids.contains(id)).count(), 2);
    // The server echoes each frame back.
    let echo = tokio::spawn(async move {
        while let Some(frame) = server_rx.recv().await.unwrap() {
            server_tx.send(frame).await.unwrap();
        }
        server_tx.close().await.unwrap();
    });
    let sending = tokio::spawn(async move {
        for (i, len) in SIZES.into_iter().enumerate() {
            client_tx.send(pattern(len, i as u8)).await.unwrap();
        }
        // Refused without harm:
        assert!(matches!(
            client_tx.send(Frame::filled((16 << 20) + 1, |_| ())).await,
            Err(TransportError::FrameTooLarge { .. })
        ));
        client_tx.close().await.unwrap();
        client_tx
    });
    bounded("echo of every size", async {
        for (i, len) in SIZES.into_iter().enumerate() {
            let frame = client_rx.recv().await.unwrap().expect("a frame");
            assert_eq!(frame.len(), len);
            assert!(
                frame == pattern(len, i as u8),
                "frame {i} of {len} bytes differs"
            );
        }
        assert_eq!(client_rx.recv().await.unwrap(), None);
        echo.await.unwrap();
        drop(sending.await.unwrap());
    })
    .await;
    drop((client_rx, listener));
    assert_gone(&ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_interleave_on_one_server() {
    eight_clients_interleave(&address("eight")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_client_without_a_runtime_talks_to_an_async_server() {
    let address = address("blocking");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let connection = listener.accept().await.unwrap();
        let (mut tx, mut rx, _) = connection.split();
        while let Some(frame) = rx.recv().await.unwrap() {
            tx.send(frame).await.unwrap();
        }
        tx.close().await.unwrap();
        listener
    });
    let client_address = address.clone();
    let client = std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let config = TransportConfig::default();
        let mut connection = connect_blocking(&client_address, &config, LIMIT).unwrap();
        // Nothing to read yet: the deadline is kept.
        let started = std::time::Instant::now();
        assert!(matches!(
            connection.recv(Deadline::After(Duration::from_millis(50))),
            Err(TransportError::TimedOut)
        ));
        assert!(started.elapsed() >= Duration::from_millis(50));
        for (i, len) in [0usize, 5, 8176, 8177, 300_000, 3 << 20]
            .into_iter()
            .enumerate()
        {
            connection
                .send(pattern(len, i as u8), Deadline::After(LIMIT))
                .unwrap();
            let frame = connection.recv(Deadline::After(LIMIT)).unwrap().unwrap();
            assert!(frame == pattern(len, i as u8), "frame of {len} bytes");
        }
        let (mut tx, mut rx, _) = connection.split();
        // A receive blocked on another thread is interrupted at once.
        let interrupter = rx.interrupter();
        let waiting = std::thread::spawn(move || {
            let result = rx.recv(Deadline::After(LIMIT));
            (result, rx)
        });
        std::thread::sleep(Duration::from_millis(20));
        interrupter.interrupt();
        let (result, mut rx) = waiting.join().unwrap();
        assert!(
            matches!(result, Err(TransportError::TimedOut)),
            "{result:?}"
        );
        tx.close();
        assert_eq!(rx.recv(Deadline::After(LIMIT)).unwrap(), None);
    });
    bounded("the blocking client", async {
        while !client.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    client.join().unwrap();
    drop(bounded("the server", server).await.unwrap());
}

#[tokio::test]
async fn a_second_server_gets_address_in_use_and_nobody_is_a_connect_error() {
    let address = address("twice");
    let config = TransportConfig::default();
    let first = Listener::bind(&address, &config).await.unwrap();
    let second = Listener::bind(&address, &config).await;
    assert!(
        matches!(second, Err(TransportError::AddressInUse { .. })),
        "{second:?}"
    );
    let (mut client, mut server) = pair(&first, &address).await;
    client.send(Frame::from_payload(b"first")).await.unwrap();
    let frame = bounded("recv", server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"first")));
    drop((client, server, first));
    drop(bind_once_free(&address, &config).await);
    match connect(&address, &config).await {
        Err(TransportError::Connect { source, .. }) => {
            assert!(source.to_string().contains("no server"), "{source}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_the_servers_own_user_is_admitted() {
    let address: Address = "sysv-mq://x".parse().unwrap();
    assert!(super::admit(1000, 1000, &address).is_ok());
    let reason = super::admit(0, 1000, &address).unwrap_err();
    assert!(
        reason.contains("uid 1000") && reason.contains("uid 0"),
        "{reason}"
    );
    assert!(super::admit(65534, 0, &address).is_err());
}
