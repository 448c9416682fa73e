//! A client's reply queue looked at without waiting (`endpoint/direct.rs`): what an async
//! caller reading its own reply relies on.

use std::time::Duration;

use super::super::wire::Outgoing;
use super::{
    address, bounded, link_of, look_until_frame, pair, pattern, server_queue_of, setup, token_of,
};
use crate::{Frame, Listener, TransportConfig, TransportError};

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
    assert_eq!(look_until_frame(&mut rx).await, big);
    let mut server_tx = bounded("the send", sending).await.unwrap();

    // Readiness the big frame's messages left is spent; a sleeper then wakes for the next.
    let poll = rx.as_poll().unwrap();
    assert!(poll.announce_sleep().unwrap());
    let _ = tokio::time::timeout(Duration::from_millis(50), wakeup.wait()).await;
    server_tx.send(Frame::from_payload(b"last")).await.unwrap();
    bounded("the wake-up for the last frame", wakeup.wait())
        .await
        .unwrap();

    // The server goes without a goodbye (its socket shut, as its death would): the frame it
    // sent before is read before the end is reported.
    let link = link_of(&server_tx);
    std::mem::forget(server_tx);
    link.shutdown_for_tests();
    assert!(!poll.announce_sleep().unwrap(), "a frame waits");
    assert!(!poll.peer_gone(), "gone, but its last frame is unread");
    assert_eq!(poll.try_recv().unwrap(), Some(Frame::from_payload(b"last")));
    assert!(poll.peer_gone(), "gone, and nothing left");
    // The end itself wakes a sleeper, however often it sleeps.
    for _ in 0..3 {
        bounded("the wake-up for the end", wakeup.wait())
            .await
            .unwrap();
    }
}

/// A server that goes in the middle of a frame (its first message sent, the rest never):
/// the look that finds the queue empty reports the frame cut short, not a clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_cut_short_by_the_servers_end_is_an_error() {
    let Some(_serial) = setup(
        module_path!(),
        "a_frame_cut_short_by_the_servers_end_is_an_error",
    )
    .await
    else {
        return;
    };
    let address = address("direct-cut");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (_tx, mut rx, _) = client.split();
    let (server_tx, _server_rx, _) = server.split();
    let reply_queue = server_queue_of(&server_tx);
    let token = token_of(&server_tx);
    let link = link_of(&server_tx);
    std::mem::forget(server_tx);
    // The first message of a frame three messages long, then the server's end.
    let msgsize = reply_queue.msgsize();
    let first = Outgoing::new(pattern(3 * msgsize, 9));
    let mut message = Vec::new();
    first.next_message(&mut message, msgsize, token);
    reply_queue.try_send(&message).unwrap();
    let poll = rx.as_poll().unwrap();
    assert_eq!(poll.try_recv().unwrap(), None, "the frame is not whole");
    link.shutdown_for_tests();
    let cut = bounded("the end seen", async {
        loop {
            match poll.try_recv() {
                Ok(None) => tokio::task::yield_now().await,
                other => return other,
            }
        }
    })
    .await;
    assert!(
        matches!(&cut, Err(TransportError::Malformed(why)) if why.contains("middle of a frame")),
        "{cut:?}"
    );
    assert!(poll.peer_gone());
}
