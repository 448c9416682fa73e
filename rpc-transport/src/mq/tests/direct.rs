//! A client's reply queue looked at without waiting (`endpoint/direct.rs`): what an async
//! caller reading its own reply relies on.

use super::{address, bounded, link_of, pair, pattern, setup};
use crate::{Frame, Listener, TransportConfig};

/// Looks find nothing, then a frame of many messages once all of it came; the wake-up fires
/// for a frame and for the server's end; a frame the server sent before it went is read
/// before the end is reported. A server's receiver (fed by its routing task) cannot be looked
/// at this way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_queue_is_looked_at_and_woken_for_frames_and_the_end() {
    let Some(_serial) = setup(
        module_path!(),
        "a_reply_queue_is_looked_at_and_woken_for_frames_and_the_end",
    )
    .await
    else {
        return;
    };
    let address = address("direct");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (_tx, mut rx, _) = client.split();
    let (server_tx, mut server_rx, _) = server.split();
    assert!(
        server_rx.as_poll().is_none(),
        "a server's receiver is routed"
    );

    let poll = rx
        .as_poll()
        .expect("a client's reply queue can be looked at");
    assert_eq!(poll.try_recv().unwrap(), None);
    assert!(poll.announce_sleep().unwrap(), "nothing here: sleep");
    assert!(!poll.peer_gone());
    let wakeup = poll.wakeup().unwrap();

    // A frame of many messages: the wake-up fires, and looks give it whole.
    let big = pattern(100_000, 3);
    let woken = tokio::spawn({
        let wakeup = wakeup.clone();
        async move { wakeup.wait().await }
    });
    // Sent beside the looks: a frame bigger than the queue holds goes as they take it.
    let sending = tokio::spawn({
        let big = big.clone();
        async move {
            let mut server_tx = server_tx;
            server_tx.send(big).await.unwrap();
            server_tx
        }
    });
    bounded("the wake-up for a frame", woken)
        .await
        .unwrap()
        .unwrap();
    let got = bounded("the whole frame", async {
        loop {
            if let Some(frame) = rx.as_poll().unwrap().try_recv().unwrap() {
                return frame;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(got, big);
    let mut server_tx = bounded("the send", sending).await.unwrap();

    // The server sends a last frame and goes without a goodbye (its socket shut, as its death
    // would): the frame is there before the end is.
    server_tx.send(Frame::from_payload(b"last")).await.unwrap();
    let link = link_of(&server_tx);
    std::mem::forget(server_tx);
    link.shutdown_for_tests();
    let poll = rx.as_poll().unwrap();
    bounded("a wake-up", wakeup.wait()).await.unwrap();
    assert!(!poll.announce_sleep().unwrap(), "a frame waits");
    assert!(!poll.peer_gone(), "gone, but its last frame is unread");
    assert_eq!(poll.try_recv().unwrap(), Some(Frame::from_payload(b"last")));
    assert!(poll.peer_gone());
    // The end itself wakes a sleeper, however often it sleeps.
    for _ in 0..3 {
        bounded("the wake-up for the end", wakeup.wait())
            .await
            .unwrap();
    }
}
