//! The outbox's promises, over a real byte stream (a tokio duplex pipe with the standard
//! framing) and over a transport that only takes whole frames: every message arrives once,
//! each task's messages in the order it sent them, the budget is given back, and a failed or
//! abandoned write leaves nothing stranded.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rpc_transport::{Frame, FrameReceiver, FrameSender, SendFrames, TransportConfig};
use tokio::sync::mpsc;

use super::Outbox;
use crate::budget::ServerMemory;

const LIMIT: usize = 64 * 1024;

/// An outbox over one direction of an in-memory byte stream of `capacity` bytes.
fn over_stream(capacity: usize, budget: Option<usize>) -> (Arc<Outbox>, FrameReceiver) {
    let (ours, theirs) = tokio::io::duplex(capacity);
    let config = TransportConfig::default().with_max_frame_size(LIMIT);
    let (sender, _) = rpc_transport::framed(tokio::io::empty(), ours, &config, "test");
    let (_, receiver) = rpc_transport::framed(theirs, tokio::io::sink(), &config, "test");
    let budget = budget.map(|bytes| ServerMemory::new(bytes).connection(bytes).replies);
    (Outbox::new(sender, budget), receiver)
}

/// A transport that takes whole frames only (it does not implement `feed_with`).
struct WholeFrames(mpsc::UnboundedSender<Frame>);

impl SendFrames for WholeFrames {
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), rpc_transport::TransportError>> {
        let sent = self
            .0
            .send(frame)
            .map_err(|_| rpc_transport::TransportError::Closed);
        Box::pin(async move { sent })
    }

    fn max_frame_size(&self) -> usize {
        LIMIT
    }

    fn mechanism(&self) -> &'static str {
        "whole-frames"
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), rpc_transport::TransportError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Message `seq` of task `task`: its two numbers, then `seq % 7` filler bytes.
fn message(task: u32, seq: u32) -> Vec<u8> {
    let mut bytes = [task.to_le_bytes(), seq.to_le_bytes()].concat();
    bytes.resize(8 + (seq % 7) as usize, 0xA5);
    bytes
}

/// `tasks` tasks each send `per_task` messages, by turns alone, as a batch of three written
/// in place, and as a ready frame, with and without lingering.
async fn send_from_many_tasks(outbox: &Arc<Outbox>, tasks: u32, per_task: u32) {
    let mut senders = Vec::new();
    for task in 0..tasks {
        let outbox = outbox.clone();
        senders.push(tokio::spawn(async move {
            let mut seq = 0;
            while seq < per_task {
                match seq % 3 {
                    0 => {
                        let bytes = message(task, seq);
                        outbox
                            .send_with(
                                bytes.len(),
                                |out| out.copy_from_slice(&bytes),
                                task % 2 == 0,
                            )
                            .await
                            .unwrap();
                        seq += 1;
                    }
                    1 => {
                        let batch: Vec<Vec<u8>> = (seq..(seq + 3).min(per_task))
                            .map(|seq| message(task, seq))
                            .collect();
                        seq += batch.len() as u32;
                        outbox
                            .send_written(batch, Vec::len, |m, out| out.copy_from_slice(&m), false)
                            .await
                            .unwrap();
                    }
                    _ => {
                        outbox
                            .send(Frame::from_payload(&message(task, seq)))
                            .await
                            .unwrap();
                        seq += 1;
                    }
                }
                if seq % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for sender in senders {
        tokio::time::timeout(Duration::from_secs(20), sender)
            .await
            .expect("every send ends")
            .unwrap();
    }
}

/// Receives `tasks * per_task` messages and checks each task's come once and in order.
async fn expect_all_in_order(next: &mut (impl AsyncNext + ?Sized), tasks: u32, per_task: u32) {
    let mut next_seq = vec![0u32; tasks as usize];
    for _ in 0..tasks * per_task {
        let payload = tokio::time::timeout(Duration::from_secs(20), next.next_payload())
            .await
            .expect("every message arrives");
        let task = u32::from_le_bytes(payload[..4].try_into().unwrap());
        let seq = u32::from_le_bytes(payload[4..8].try_into().unwrap());
        assert_eq!(
            seq, next_seq[task as usize],
            "task {task}'s messages in order"
        );
        assert_eq!(payload, message(task, seq));
        next_seq[task as usize] += 1;
    }
    assert!(next_seq.iter().all(|&n| n == per_task));
}

/// Where the next frame comes from.
trait AsyncNext {
    fn next_payload(&mut self) -> BoxFuture<'_, Vec<u8>>;
}

impl AsyncNext for FrameReceiver {
    fn next_payload(&mut self) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.recv().await.unwrap().unwrap().payload().to_vec() })
    }
}

impl AsyncNext for mpsc::UnboundedReceiver<Frame> {
    fn next_payload(&mut self) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.recv().await.unwrap().payload().to_vec() })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_over_a_byte_stream_lose_nothing_and_keep_their_order() {
    let (outbox, mut receiver) = over_stream(1024, Some(16 * 1024));
    let reading = tokio::spawn(async move {
        expect_all_in_order(&mut receiver, 16, 600).await;
        receiver
    });
    send_from_many_tasks(&outbox, 16, 600).await;
    let mut receiver = reading.await.unwrap();
    // The budget is all back once the last write ended (a send returns before the writer's
    // last batch is written: wait for it, within a bound).
    let budget = outbox.budget.clone().unwrap();
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        while budget.try_take(16 * 1024).is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    back.await.expect("the budget is given back");
    // Nothing more.
    outbox.close().await;
    assert!(receiver.recv().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transport_of_whole_frames_gets_every_message_as_a_frame_in_order() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let outbox = Outbox::new(FrameSender::new(WholeFrames(tx)), None);
    send_from_many_tasks(&outbox, 8, 300).await;
    expect_all_in_order(&mut rx, 8, 300).await;
    assert!(rx.try_recv().is_err(), "each message once");
    assert!(!outbox.feeds.load(std::sync::atomic::Ordering::Relaxed));
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_and_the_connection_goes_on() {
    let (outbox, mut receiver) = over_stream(1 << 20, None);
    let refused = outbox
        .send_with(LIMIT + 1, |_| panic!("not written"), false)
        .await;
    assert!(matches!(
        refused,
        Err(rpc_transport::TransportError::FrameTooLarge { size, limit }) if size == LIMIT + 1 && limit == LIMIT
    ));
    let batch = vec![vec![1u8; 10], vec![2u8; LIMIT + 1]];
    let refused = outbox
        .send_written(batch, Vec::len, |m, out| out.copy_from_slice(&m), false)
        .await;
    assert!(
        refused.is_err(),
        "a batch with one message too large is refused whole"
    );
    outbox
        .send_with(3, |out| out.copy_from_slice(b"yes"), false)
        .await
        .unwrap();
    let frame = receiver.recv().await.unwrap().unwrap();
    assert_eq!(
        frame.payload(),
        b"yes",
        "nothing of the refused batch went out"
    );
}

#[tokio::test]
async fn after_a_failed_write_every_send_fails_at_once() {
    let (outbox, receiver) = over_stream(64, None);
    drop(receiver);
    let first = outbox
        .send_with(3, |out| out.copy_from_slice(b"one"), false)
        .await;
    assert!(first.is_err(), "the peer is gone");
    let later = tokio::time::timeout(
        Duration::from_secs(5),
        outbox.send(Frame::from_payload(b"two")),
    )
    .await
    .expect("fails at once");
    assert!(later.is_err());
}

/// A task that sends 4,000 bytes through `outbox`, over a pipe too small for them that
/// nobody reads yet: given 50 ms, it is the writer, its write blocked until the reader
/// reads. Its bytes, and the task.
async fn blocked_writer(
    outbox: &Arc<Outbox>,
) -> (
    Vec<u8>,
    tokio::task::JoinHandle<Result<(), rpc_transport::TransportError>>,
) {
    let big = vec![7u8; 4000];
    let writer = {
        let outbox = outbox.clone();
        let big = big.clone();
        tokio::spawn(async move {
            outbox
                .send_with(big.len(), |out| out.copy_from_slice(&big), false)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    (big, writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_abandoned_midway_hands_its_duty_on() {
    // A 64-byte pipe: the first writer blocks until the reader reads.
    let (outbox, mut receiver) = over_stream(64, None);
    let (big, writer) = blocked_writer(&outbox).await;
    // Behind the writer, which holds the sender while the pipe is full.
    let after = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            outbox
                .send_with(5, |out| out.copy_from_slice(b"after"), false)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    writer.abort();
    let _ = writer.await;
    let first = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("the abandoned write is finished by another task")
        .unwrap()
        .unwrap();
    assert_eq!(first.payload(), &big[..]);
    let second = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
        .await
        .expect("the queued message follows")
        .unwrap()
        .unwrap();
    assert_eq!(second.payload(), b"after");
    tokio::time::timeout(Duration::from_secs(10), after)
        .await
        .expect("the second send ends")
        .unwrap()
        .unwrap();
}

/// A task that sends while the writer is still writing the bytes it fed in place leaves its
/// message to that writer and returns at once: it does not become a second writer, waiting
/// for the sender behind the first. (A server's handler, polled inline, that waited so was
/// not polled again until the takeover reader let go of the connection, and that reader
/// waited for the sender too: a server stream over `xtcp://` stalled until its deadline.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_during_the_writers_last_write_is_left_to_it() {
    // A 64-byte pipe that nobody reads yet: the writer's write of what it fed blocks.
    let (outbox, mut receiver) = over_stream(64, None);
    let (big, writer) = blocked_writer(&outbox).await;
    assert!(!writer.is_finished(), "the writer waits for the pipe");
    tokio::time::timeout(
        Duration::from_secs(5),
        outbox.send_with(5, |out| out.copy_from_slice(b"after"), false),
    )
    .await
    .expect("left to the writer, not waited for")
    .unwrap();
    for expected in [&big[..], b"after"] {
        let frame = tokio::time::timeout(Duration::from_secs(10), receiver.recv())
            .await
            .expect("the writer writes both")
            .unwrap()
            .unwrap();
        assert_eq!(frame.payload(), expected);
    }
    writer.await.unwrap().unwrap();
}
