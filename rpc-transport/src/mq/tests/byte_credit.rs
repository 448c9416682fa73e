//! The credit's bytes and the frame limit: a client beyond its byte credit fails only its own
//! connection, a well-behaved one sending large frames never goes beyond it, and a frame over
//! a connection's limit (lowered by its receiver, as for a handshake) is refused at its first
//! message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{address, bounded, most_held_of, pair, pattern, server_queue_of, setup, token_of};
use crate::mq::link::BYTE_WINDOW;
use crate::mq::queue::Queue;
use crate::mq::wire::Outgoing;
use crate::{Frame, Listener, TransportConfig, TransportError};

/// Writes `frames` into the server queue with `token`, message by message, ignoring any credit.
fn write_raw(queue: &Queue, token: u64, frames: impl IntoIterator<Item = Frame>) {
    let give_up = Instant::now() + super::LIMIT;
    let mut message = Vec::new();
    for frame in frames {
        let mut out = Outgoing::new(frame);
        while !out.is_done() {
            out.next_message(&mut message, queue.msgsize(), token);
            while let Err(e) = queue.try_send(&message) {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                assert!(Instant::now() < give_up, "the server queue stayed full");
                std::thread::sleep(Duration::from_millis(1));
            }
            out.advance(queue.msgsize());
        }
    }
}

/// Waits until the routing task has read and handed on everything in `queue`.
async fn all_routed(queue: &Queue) {
    bounded("routing", async {
        while queue.waiting().unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await;
}

/// A round trip of `len` bytes there and `len / 2` back; each side reads while the other
/// writes (a reply queue holds only a few messages).
async fn round_trip(client: &mut crate::Connection, server: &mut crate::Connection, len: usize) {
    bounded("a good round trip", async {
        let (sent, got) = tokio::join!(client.send(pattern(len, 7)), server.recv());
        sent.unwrap();
        assert!(got.unwrap() == Some(pattern(len, 7)));
        let (sent, got) = tokio::join!(server.send(pattern(len / 2, 8)), client.recv());
        sent.unwrap();
        assert!(got.unwrap() == Some(pattern(len / 2, 8)));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_beyond_its_byte_credit_fails_only_its_own_connection() {
    let Some(_serial) = setup(
        module_path!(),
        "a_client_beyond_its_byte_credit_fails_only_its_own_connection",
    )
    .await
    else {
        return;
    };
    let address = address("byte-abuse");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (rogue, rogue_server) = pair(&listener, &address).await;
    let (mut good, mut good_server) = pair(&listener, &address).await;
    let (rogue_tx, _rogue_rx, _) = rogue.split();
    let (mut rogue_tx_server, mut rogue_server, _) = rogue_server.split();
    // Frames of 300,000 bytes with the rogue's token, straight into the server queue: 30 of
    // them (9 MB), far fewer than the frame window, while its connection takes none.
    const LEN: usize = 300_000;
    let queue = server_queue_of(&rogue_tx);
    let token = token_of(&rogue_tx);
    let writer = tokio::task::spawn_blocking({
        let queue = queue.clone();
        move || write_raw(&queue, token, (0..30).map(|i| pattern(LEN, i as u8)))
    });
    // The good client goes on meanwhile.
    round_trip(&mut good, &mut good_server, 100_000).await;
    bounded("the rogue's writes", writer).await.unwrap();
    all_routed(&queue).await;
    // A frame may begin while less than BYTE_WINDOW is held: four did (the fourth with
    // 900,000 bytes held), the fifth found 1.2 MB and failed the connection.
    let fitted = (BYTE_WINDOW as usize).div_ceil(LEN);
    let held = most_held_of(&rogue_server);
    println!("held for the rogue at most: {held} bytes");
    assert_eq!(held, (fitted * LEN) as u64);
    assert!(held < BYTE_WINDOW + LEN as u64);
    for i in 0..fitted {
        let frame = bounded("recv", rogue_server.recv()).await.unwrap();
        assert!(frame == Some(pattern(LEN, i as u8)), "frame {i}");
    }
    match bounded("recv", rogue_server.recv()).await {
        Err(TransportError::Malformed(reason)) => {
            assert!(reason.contains("credit of 1048576 bytes"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    drop(rogue_tx_server.close().await);
    // The others go on.
    for _ in 0..5 {
        round_trip(&mut good, &mut good_server, 100_000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_pipelined_to_a_slow_server_keep_within_the_byte_credit() {
    let Some(_serial) = setup(
        module_path!(),
        "large_frames_pipelined_to_a_slow_server_keep_within_the_byte_credit",
    )
    .await
    else {
        return;
    };
    let address = address("byte-pipeline");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (mut tx, mut rx, _) = client.split();
    let (mut server_tx, mut server_rx, _) = server.split();
    const FRAMES: usize = 200;
    const LEN: usize = 1 << 20;
    let frames: Arc<Vec<Frame>> = Arc::new((0..8).map(|i| pattern(LEN, i)).collect());
    let started = Instant::now();
    let sending = tokio::spawn({
        let frames = frames.clone();
        async move {
            for i in 0..FRAMES {
                tx.send(frames[i % 8].clone()).await.unwrap();
            }
            tx.close().await.unwrap();
        }
    });
    // The server is slow to take each frame, and echoes it.
    let echo = tokio::spawn(async move {
        let mut held = 0;
        while let Some(frame) = server_rx.recv().await.unwrap() {
            held = held.max(most_held_of(&server_rx));
            tokio::time::sleep(Duration::from_millis(2)).await;
            server_tx.send(frame).await.unwrap();
        }
        server_tx.close().await.unwrap();
        held
    });
    bounded("the echoes", async {
        for i in 0..FRAMES {
            let frame = rx.recv().await.unwrap().expect("an echo");
            assert!(frame == frames[i % 8], "echo {i}");
        }
        assert_eq!(rx.recv().await.unwrap(), None);
    })
    .await;
    bounded("the sender", sending).await.unwrap();
    let held = bounded("the echo server", echo).await.unwrap();
    println!(
        "{FRAMES} x {LEN} bytes echoed in {:?}; the server held at most {held} bytes",
        started.elapsed()
    );
    assert!(held <= BYTE_WINDOW + LEN as u64, "{held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_a_lowered_limit_is_refused_at_its_first_message() {
    let Some(_serial) = setup(
        module_path!(),
        "a_frame_over_a_lowered_limit_is_refused_at_its_first_message",
    )
    .await
    else {
        return;
    };
    let address = address("lowered");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (big, big_server) = pair(&listener, &address).await;
    let (mut good, mut good_server) = pair(&listener, &address).await;
    let (big_tx, _big_rx, _) = big.split();
    let (_big_server_tx, mut big_server, _) = big_server.split();
    big_server.set_max_frame_size(64 << 10);
    // Only the first message of a 1 MiB frame: it is refused without waiting for the rest.
    let queue = server_queue_of(&big_tx);
    let mut message = Vec::new();
    Outgoing::new(pattern(1 << 20, 1)).next_message(
        &mut message,
        queue.msgsize(),
        token_of(&big_tx),
    );
    queue.try_send(&message).unwrap();
    let result = bounded("recv", big_server.recv()).await;
    assert!(
        matches!(
            result,
            Err(TransportError::FrameTooLarge {
                size: 1_048_576,
                limit: 65_536
            })
        ),
        "{result:?}"
    );
    assert_eq!(most_held_of(&big_server), 0);
    // A frame up to the limit still passes on a connection lowered likewise, and the others
    // go on.
    let (small, small_server) = pair(&listener, &address).await;
    let (mut small_tx, _small_rx, _) = small.split();
    let (_small_server_tx, mut small_server, _) = small_server.split();
    small_server.set_max_frame_size(64 << 10);
    let (sent, frame) = bounded("a frame at the limit", async {
        tokio::join!(small_tx.send(pattern(64 << 10, 3)), small_server.recv())
    })
    .await;
    sent.unwrap();
    assert!(frame.unwrap() == Some(pattern(64 << 10, 3)));
    round_trip(&mut good, &mut good_server, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_fails_only_its_own_connection() {
    let Some(_serial) = setup(module_path!(), "garbage_fails_only_its_own_connection").await else {
        return;
    };
    let address = address("garbage");
    let small = TransportConfig::default().with_max_frame_size(1000);
    let listener = Listener::bind(&address, &small).await.unwrap();
    let (good, mut good_server) = pair(&listener, &address).await;
    let (mut good_tx, mut good_rx, _) = good.split();
    let (mut bad, mut bad_server) = pair(&listener, &address).await;
    // Messages of no connection, written straight to the server queue, are dropped.
    let raw = server_queue_of(&good_tx);
    raw.try_send(b"short").unwrap();
    raw.try_send(&[1u8; 40]).unwrap();
    // A frame over the server's limit fails that connection only.
    bad.send(Frame::filled(5000, |_| ())).await.unwrap();
    let result = bounded("recv", bad_server.recv()).await;
    assert!(
        matches!(
            result,
            Err(TransportError::FrameTooLarge {
                size: 5000,
                limit: 1000
            })
        ),
        "{result:?}"
    );
    good_tx
        .send(Frame::from_payload(b"still fine"))
        .await
        .unwrap();
    let frame = bounded("recv", good_server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"still fine")));
    good_server
        .send(Frame::from_payload(b"and back"))
        .await
        .unwrap();
    let frame = bounded("recv", good_rx.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"and back")));
}
