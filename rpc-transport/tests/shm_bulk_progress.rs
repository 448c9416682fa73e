//! A large shared-memory message is announced before it is written, and the receiver copies it
//! out as the sender reports progress (`copy_in_place`, `mark_written`). These tests hold the
//! sender in the middle of a message (slow, panicking, stalled) and check what the receiver
//! gets, and how soon: a receiver must never wait without bound for the rest of a message.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rpc_transport::shm::REWRITABLE_PREFIX;
use rpc_transport::{
    BlockingReceiver, BlockingSender, Frame, FrameReceiver, FrameSender, Listener, TransportConfig,
    TransportError, connect_blocking, copy_in_place,
};

/// The message: far bigger than a quarter of the ring, so it goes through a bulk region.
const LEN: usize = 8 * 1024 * 1024;
const HALF: usize = LEN / 2;
/// The bound on every wait of these tests.
const LIMIT: Duration = Duration::from_secs(20);
/// The receiver gives up on a sender without progress after 2 s (`bulk.rs`'s `STALL_LIMIT`);
/// it must have given up by this much later.
const STALL_NOTICED: Duration = Duration::from_secs(4);

/// The server's receiving half, used from async code or from a plain thread.
enum Receiver {
    Async(tokio::runtime::Runtime, FrameReceiver),
    Blocking(BlockingReceiver),
}

impl Receiver {
    fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match self {
            Receiver::Async(runtime, receiver) => runtime.block_on(async {
                tokio::time::timeout(LIMIT, receiver.recv())
                    .await
                    .expect("the receive ended in time")
            }),
            Receiver::Blocking(receiver) => receiver.recv(Instant::now() + LIMIT),
        }
    }
}

/// A client connected over `shm://` (its blocking sending half, the sender in every test),
/// the server's receiving half, and the other two halves, held so that neither side's
/// connection ends early.
fn pair(name: &str, blocking: bool) -> (BlockingSender, Receiver, (BlockingReceiver, FrameSender)) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = TransportConfig::default();
    let address = format!(
        "shm://bulk-progress-{name}-{blocking}-{}",
        std::process::id()
    )
    .parse()
    .unwrap();
    let listener = runtime.block_on(Listener::bind(&address, &config)).unwrap();
    let client = std::thread::spawn({
        let config = config.clone();
        move || connect_blocking(&address, &config, LIMIT).unwrap()
    });
    let server = runtime.block_on(async {
        tokio::time::timeout(LIMIT, listener.accept())
            .await
            .expect("accepted in time")
            .unwrap()
    });
    let (sender, client_receiver, _) = client.join().unwrap().split();
    let (server_sender, receiver, _) = server.split();
    let receiver = if blocking {
        Receiver::Blocking(
            receiver
                .into_blocking()
                .expect("shared memory has a blocking receiver"),
        )
    } else {
        Receiver::Async(runtime, receiver)
    };
    (sender, receiver, (client_receiver, server_sender))
}

/// A sender that writes half the message, reports it, waits, and writes the rest: the
/// receiver has copied the first half while the sender waited (seen because the test breaks
/// the contract on purpose and rewrites that half afterwards: the receiver keeps what it
/// copied), and gets the rewritable prefix as it was when the fill returned.
fn slow_sender_is_copied_out_while_it_writes(blocking: bool) {
    let (mut sender, mut receiver, _others) = pair("slow", blocking);
    let writer = std::thread::spawn(move || {
        sender
            .send_with(
                LEN,
                |out| {
                    copy_in_place(&mut out[..HALF], &vec![0xAA; HALF]);
                    std::thread::sleep(Duration::from_millis(500));
                    // Against the contract, to observe when the receiver copied: bytes past
                    // the prefix were reported final, the prefix may still change.
                    out[..HALF].fill(0xBB);
                    copy_in_place(&mut out[HALF..], &vec![0xCC; HALF]);
                },
                Instant::now() + LIMIT,
            )
            .unwrap();
        sender
    });
    let frame = receiver.recv().expect("received").expect("a frame");
    let _sender = writer.join().unwrap();
    let payload = frame.payload();
    assert_eq!(payload.len(), LEN);
    assert!(
        payload[..REWRITABLE_PREFIX].iter().all(|&b| b == 0xBB),
        "the prefix is copied once the fill has returned"
    );
    let copied_early = payload[REWRITABLE_PREFIX..HALF]
        .iter()
        .filter(|&&b| b == 0xAA)
        .count();
    assert_eq!(
        copied_early,
        HALF - REWRITABLE_PREFIX,
        "the first half was copied out while the sender waited in the middle of the message"
    );
    assert!(payload[HALF..].iter().all(|&b| b == 0xCC));
}

#[test]
fn a_slow_sender_is_copied_out_while_it_writes_by_a_blocking_receiver() {
    slow_sender_is_copied_out_while_it_writes(true);
}

#[test]
fn a_slow_sender_is_copied_out_while_it_writes_by_an_async_receiver() {
    slow_sender_is_copied_out_while_it_writes(false);
}

/// Whether `error` is the end of the connection with a reason containing `why`.
fn aborted_because(error: &TransportError, why: &str) -> bool {
    matches!(error, TransportError::Io(e)
        if e.kind() == std::io::ErrorKind::ConnectionAborted && e.to_string().contains(why))
}

/// A fill that panics half-way: the receiver, already copying, fails at once (well before the
/// stall bound) saying the message was abandoned, and the sender's connection is over too.
fn panicking_sender_fails_the_receiver_at_once(blocking: bool) {
    let (mut sender, mut receiver, _others) = pair("panic", blocking);
    let writer = std::thread::spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            sender.send_with(
                LEN,
                |out| {
                    copy_in_place(&mut out[..HALF], &vec![0xAA; HALF]);
                    std::thread::sleep(Duration::from_millis(200));
                    panic!("the encoder failed half-way (on purpose)");
                },
                Instant::now() + LIMIT,
            )
        }));
        assert!(outcome.is_err(), "the fill's panic reaches the caller");
        let after = sender.send(Frame::from_payload(b"next"), Instant::now() + LIMIT);
        assert!(
            after
                .as_ref()
                .is_err_and(|e| aborted_because(e, "abandoned")),
            "a connection with an abandoned message sends nothing more: {after:?}"
        );
    });
    let started = Instant::now();
    let received = receiver.recv();
    let took = started.elapsed();
    writer.join().unwrap();
    let error = received.expect_err("an abandoned message is an error");
    assert!(
        aborted_because(&error, "abandoned"),
        "the error says the message was abandoned: {error}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "noticed at once, not after the stall bound: {took:?}"
    );
}

#[test]
fn a_sender_that_panics_mid_message_fails_a_blocking_receiver_at_once() {
    panicking_sender_fails_the_receiver_at_once(true);
}

#[test]
fn a_sender_that_panics_mid_message_fails_an_async_receiver_at_once() {
    panicking_sender_fails_the_receiver_at_once(false);
}

/// A sender that announces a message, writes half and then stops (alive, but making no
/// progress): the receiver gives up within the bound instead of hanging, ending the
/// connection with an error that says so.
fn stalled_sender_fails_the_receiver_within_the_bound(blocking: bool) {
    let (mut sender, mut receiver, _others) = pair("stall", blocking);
    let (gave_up, verdict) = mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let _ = sender.send_with(
            LEN,
            |out| {
                copy_in_place(&mut out[..HALF], &vec![0xAA; HALF]);
                // Stalls until the receiver has given up (bounded, should it never).
                let _ = verdict.recv_timeout(LIMIT);
            },
            Instant::now() + LIMIT,
        );
        // The receiver ended the connection: sending fails soon (at once, or once this side
        // has seen the socket close).
        let until = Instant::now() + LIMIT;
        loop {
            let sent = sender.send(Frame::from_payload(b"next"), Instant::now() + LIMIT);
            if sent.is_err() {
                break;
            }
            assert!(Instant::now() < until, "the sender never saw the end");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let started = Instant::now();
    let received = receiver.recv();
    let took = started.elapsed();
    let _ = gave_up.send(());
    writer.join().unwrap();
    let error = received.expect_err("a stalled message is an error");
    assert!(
        aborted_because(&error, "no progress"),
        "the error says the sender stalled: {error}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < STALL_NOTICED,
        "gave up after the stall bound, and soon after it: {took:?}"
    );
}

/// A sender that keeps reporting a little progress, each time well within the stall limit,
/// but would take minutes to finish: the receiver gives up once the message has taken longer
/// than the stall limit plus its length at the slowest fill rate waited out (4 MiB/s: 4 s in
/// all for 8 MiB), instead of being held as long as the sender likes.
fn trickling_sender_fails_the_receiver_within_the_bound(blocking: bool) {
    let (mut sender, mut receiver, _others) = pair("trickle", blocking);
    let (gave_up, verdict) = mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let _ = sender.send_with(
            LEN,
            |out| {
                const STEP: usize = 4096;
                for (i, part) in out.chunks_mut(STEP).enumerate() {
                    copy_in_place(part, &[0xBB; STEP][..part.len()]);
                    // 300 ms between reports: never a stall; done only after ~10 minutes.
                    if verdict.recv_timeout(Duration::from_millis(300)).is_ok() || i > 60 {
                        return;
                    }
                }
            },
            Instant::now() + LIMIT,
        );
    });
    let started = Instant::now();
    let received = receiver.recv();
    let took = started.elapsed();
    let _ = gave_up.send(());
    writer.join().unwrap();
    let error = received.expect_err("a message trickled in this slowly is an error");
    assert!(
        aborted_because(&error, "too slowly"),
        "the error says the sender was too slow: {error}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(7),
        "gave up after the fill bound (4 s), and soon after it: {took:?}"
    );
}

#[test]
fn a_trickling_sender_fails_a_blocking_receiver_within_the_bound() {
    trickling_sender_fails_the_receiver_within_the_bound(true);
}

#[test]
fn a_trickling_sender_fails_an_async_receiver_within_the_bound() {
    trickling_sender_fails_the_receiver_within_the_bound(false);
}

#[test]
fn a_stalled_sender_fails_a_blocking_receiver_within_the_bound() {
    stalled_sender_fails_the_receiver_within_the_bound(true);
}

#[test]
fn a_stalled_sender_fails_an_async_receiver_within_the_bound() {
    stalled_sender_fails_the_receiver_within_the_bound(false);
}

/// A connection moving many large messages writes some with non-temporal and some with
/// ordinary stores (it probes the style it does not use after its first message, and keeps
/// probing: `store_choice.rs`). Whichever way each was written, and whatever sizes follow one
/// another in the same region, every message arrives whole, in order, byte for byte.
#[test]
fn many_large_messages_arrive_intact_whichever_stores_wrote_them() {
    const MIB: usize = 1024 * 1024;
    let (mut sender, mut receiver, _others) = pair("many", true);
    let sizes: Vec<usize> = (0..16)
        .map(|i| [MIB, 3 * MIB / 2 + 13, MIB / 2][i % 3])
        .collect();
    let content = |i: usize, at: usize| (at.wrapping_mul(31) ^ i.wrapping_mul(0x9E37)) as u8;
    let writer = std::thread::spawn({
        let sizes = sizes.clone();
        move || {
            for (i, &len) in sizes.iter().enumerate() {
                let source: Vec<u8> = (0..len).map(|at| content(i, at)).collect();
                sender
                    .send_with(
                        len,
                        |out| copy_in_place(out, &source),
                        Instant::now() + LIMIT,
                    )
                    .unwrap();
            }
            sender
        }
    });
    for (i, &len) in sizes.iter().enumerate() {
        let frame = receiver.recv().expect("received").expect("a frame");
        let payload = frame.payload();
        assert_eq!(payload.len(), len, "message {i}");
        let wrong = (0..len).find(|&at| payload[at] != content(i, at));
        assert_eq!(wrong, None, "message {i} differs first at this byte");
    }
    let _sender = writer.join().unwrap();
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .expect("the thread's CPU clock")
}

/// A receiver waiting for a sender that pauses in the middle of a message sleeps until the
/// sender reports more, rather than spinning or polling through the pause: over a 600 ms
/// pause it uses a small part of that in CPU time (a spinning receiver would use all of it).
#[test]
fn a_receiver_waiting_for_a_paused_sender_sleeps() {
    let (mut sender, mut receiver, _others) = pair("paused", true);
    let writer = std::thread::spawn(move || {
        sender
            .send_with(
                LEN,
                |out| {
                    copy_in_place(&mut out[..HALF], &vec![0x11; HALF]);
                    std::thread::sleep(Duration::from_millis(600));
                    copy_in_place(&mut out[HALF..], &vec![0x22; HALF]);
                },
                Instant::now() + LIMIT,
            )
            .unwrap();
        sender
    });
    let (cpu_before, started) = (thread_cpu_time(), Instant::now());
    let frame = receiver.recv().expect("received").expect("a frame");
    let (cpu, waited) = (thread_cpu_time() - cpu_before, started.elapsed());
    let _sender = writer.join().unwrap();
    assert!(frame.payload()[HALF..].iter().all(|&b| b == 0x22));
    assert!(
        waited >= Duration::from_millis(500),
        "it waited: {waited:?}"
    );
    assert!(
        cpu < Duration::from_millis(150),
        "the receiver used {cpu:?} of CPU over a {waited:?} wait"
    );
}
