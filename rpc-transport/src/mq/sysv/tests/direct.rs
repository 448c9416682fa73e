//! A `sysv-mq` receiver looked at without waiting (`reader/direct.rs`): what an async caller
//! reading its own reply relies on.

use std::time::Duration;

use super::{address, bounded, link_of, look_until_frame, pair, pattern};
use crate::{Frame, Listener, TransportConfig};

/// Looks find nothing, then a frame of many messages once all of it came; the wake-up (the
/// waker thread's eventfd) fires for a frame and for the server's end, and the end is then
/// seen by a look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_is_looked_at_and_woken_for_frames_and_the_end() {
    let address = address("direct");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (_tx, mut rx, _) = client.split();
    let (server_tx, server_rx, _) = server.split();

    let poll = rx.as_poll().expect("a sysv-mq receiver can be looked at");
    assert_eq!(poll.try_recv().unwrap(), None);
    let wakeup = poll.wakeup().unwrap();
    assert!(poll.announce_sleep().unwrap(), "nothing here: sleep");
    assert!(!poll.peer_gone());

    let big = pattern(100_000, 5);
    let sending = tokio::spawn({
        let big = big.clone();
        async move {
            let mut server_tx = server_tx;
            server_tx.send(big).await.unwrap();
            server_tx
        }
    });
    bounded("the wake-up for a frame", wakeup.wait())
        .await
        .unwrap();
    assert_eq!(look_until_frame(&mut rx).await, big);
    let mut server_tx = bounded("the send", sending).await.unwrap();

    // Readiness the big frame's messages left is spent; a sleeper then wakes for the next.
    let poll = rx.as_poll().unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(50), wakeup.wait()).await;
    assert!(poll.announce_sleep().unwrap());
    server_tx.send(Frame::from_payload(b"last")).await.unwrap();
    bounded("the wake-up for the last frame", wakeup.wait())
        .await
        .unwrap();
    assert_eq!(poll.try_recv().unwrap(), Some(Frame::from_payload(b"last")));

    // Asleep with nothing to read, the server goes without a goodbye, as its death would:
    // the sleeper wakes, and the next look finds the end.
    assert!(poll.announce_sleep().unwrap(), "nothing here: sleep");
    let link = link_of(&server_tx);
    std::mem::forget(server_tx);
    std::mem::forget(server_rx);
    drop(listener);
    link.die_for_tests();
    bounded("the wake-up for the end", wakeup.wait())
        .await
        .unwrap();
    bounded("the end seen", async {
        while !(poll.try_recv().unwrap().is_none() && poll.peer_gone()) {
            tokio::task::yield_now().await;
        }
    })
    .await;
}
