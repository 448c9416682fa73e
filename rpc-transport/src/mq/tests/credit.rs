//! The credit window: a server connection that stops taking its frames pauses its own client
//! only, and a client that ignores its credit fails only its own connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{address, bounded, pair, pattern, server_queue_of, setup, token_of};
use crate::mq::link::CREDIT_WINDOW;
use crate::mq::wire::Outgoing;
use crate::{Frame, Listener, TransportConfig, TransportError};

/// Round trips of a good client, each bounded by `each`.
async fn round_trips(client: &mut crate::Connection, server: &mut crate::Connection, n: usize) {
    for i in 0..n {
        let started = Instant::now();
        client.send(pattern(300, i as u8)).await.unwrap();
        let frame = bounded("the good server's recv", server.recv())
            .await
            .unwrap();
        assert!(frame == Some(pattern(300, i as u8)));
        server.send(pattern(40, i as u8)).await.unwrap();
        let frame = bounded("the good client's recv", client.recv())
            .await
            .unwrap();
        assert!(frame == Some(pattern(40, i as u8)));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round trip {i} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_reading_pauses_only_its_own_client() {
    let Some(_serial) = setup(
        module_path!(),
        "a_connection_that_stops_reading_pauses_only_its_own_client",
    )
    .await
    else {
        return;
    };
    let address = address("credit-pause");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (stalled, mut stalled_server) = pair(&listener, &address).await;
    let (mut good, mut good_server) = pair(&listener, &address).await;
    // The stalled connection's server side reads nothing: its client floods until its credit
    // runs out, and then waits.
    let (mut tx, _rx, _) = stalled.split();
    let total = 3 * CREDIT_WINDOW as usize;
    let sent = Arc::new(AtomicUsize::new(0));
    let flood = tokio::spawn({
        let sent = sent.clone();
        async move {
            for i in 0..total {
                tx.send(pattern(i % 700, i as u8)).await.unwrap();
                sent.store(i + 1, Ordering::SeqCst);
            }
            tx
        }
    });
    bounded("using up the credit", async {
        while sent.load(Ordering::SeqCst) < CREDIT_WINDOW as usize {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The good client goes on meanwhile, its round trips as quick as ever.
    round_trips(&mut good, &mut good_server, 300).await;
    assert_eq!(sent.load(Ordering::SeqCst), CREDIT_WINDOW as usize);
    assert!(!flood.is_finished());
    // The stalled side reads again: every frame arrives, in order, and the flood finishes.
    bounded("the paused frames", async {
        for i in 0..total {
            let frame = stalled_server.recv().await.unwrap().expect("a frame");
            assert!(frame == pattern(i % 700, i as u8), "frame {i}");
        }
    })
    .await;
    drop(bounded("the flood", flood).await.unwrap());
    assert_eq!(
        bounded("the end", stalled_server.recv()).await.unwrap(),
        None
    );
    round_trips(&mut good, &mut good_server, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_beyond_its_credit_fails_only_its_own_connection() {
    let Some(_serial) = setup(
        module_path!(),
        "a_client_beyond_its_credit_fails_only_its_own_connection",
    )
    .await
    else {
        return;
    };
    let address = address("credit-abuse");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (rogue, mut rogue_server) = pair(&listener, &address).await;
    let (mut good, mut good_server) = pair(&listener, &address).await;
    let (rogue_tx, _rogue_rx, _) = rogue.split();
    // Frames of one message each, with the rogue's token, straight into the server queue,
    // ignoring the credit.
    let queue = server_queue_of(&rogue_tx);
    let routed = queue.clone();
    let token = token_of(&rogue_tx);
    let over = CREDIT_WINDOW as usize + 5;
    let writer = tokio::task::spawn_blocking(move || {
        let give_up = Instant::now() + super::LIMIT;
        let mut message = Vec::new();
        for i in 0..over {
            let out = Outgoing::new(Frame::from_payload(&[i as u8; 10]));
            out.next_message(&mut message, queue.msgsize(), token);
            while let Err(e) = queue.try_send(&message) {
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                assert!(Instant::now() < give_up, "the server queue stayed full");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    bounded("the rogue's writes", writer).await.unwrap();
    // Every message routed before anything is taken (taking frames makes room again).
    bounded("routing", async {
        while routed.waiting().unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The routing task hands on the last message it read within microseconds.
        tokio::time::sleep(Duration::from_millis(50)).await;
    })
    .await;
    // Its connection gets what fit in its window, then the error.
    for i in 0..CREDIT_WINDOW as usize {
        let frame = bounded("recv", rogue_server.recv()).await.unwrap();
        assert_eq!(
            frame,
            Some(Frame::from_payload(&[i as u8; 10])),
            "frame {i}"
        );
    }
    let end = bounded("recv", rogue_server.recv()).await;
    match end {
        Err(TransportError::Malformed(reason)) => assert!(reason.contains("credit"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The others go on.
    round_trips(&mut good, &mut good_server, 20).await;
}
