//! Conformance bodies that speak the wire protocol by hand (raw frames), where a client
//! would not: call ids used twice, and calls refused when the server stops while they wait.

use std::time::Duration;

use super::calls::{FRAME_LIMIT, LIMIT, expect_error, raw_connection, request};
use crate::{Fixture, Transport, bounded, eventually, probe_method_id};
use rpc_core::Server;
use rpc_core::wire::{self, Header, Kind, WireError};

/// Conformance: a call id already in flight is refused.
pub async fn a_call_id_already_in_flight_is_refused(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    // `stall` never answers; the same call id again must be refused.
    let stall = probe_method_id("stall");
    raw.send(request(stall, 77, &())).await.unwrap();
    let stalled = fixture.probe.stalled.clone();
    assert!(
        eventually(LIMIT, || stalled.load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );
    raw.send(request(stall, 77, &())).await.unwrap();
    let error = expect_error(&mut raw, 77).await;
    assert!(
        matches!(&error, WireError::BadRequest(reason) if reason.contains("already in flight")),
        "{error:?}"
    );
    assert_eq!(
        stalled.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a second handler ran"
    );
    raw.send(request(probe_method_id("add"), 78, &(1i64, 2i64)))
        .await
        .unwrap();
    let reply = bounded(LIMIT, "the sum", raw.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Header::parse(reply.payload()).unwrap().header.kind,
        Kind::Response
    );
}

/// Conformance: the id of a call whose handler computes in place is refused too. The read
/// loop polls a handler right where it reads; one that computes for long (here 1 s without
/// yielding) has another reader take over the connection after a few milliseconds, and that
/// reader must know the call's id is taken though the call is in no table yet.
///
/// Not on `mq://`: there a connection's frames come through the server's routing task, which
/// spins with `yield_now` between looks at the queue, and a task that yields waits in its
/// worker's own list of deferred tasks, which no other worker takes. When that worker then
/// polls the computing handler, routing stops until it is done, and the takeover reader gets
/// the second request only after the first call ended (the second then runs).
pub async fn a_call_id_computing_in_place_is_refused(transport: Transport) {
    if transport == Transport::Mq {
        return;
    }
    let fixture = Fixture::start(transport, Server::new()).await;
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    let spin = probe_method_id("spin");
    raw.send(request(spin, 77, &(1000u64,))).await.unwrap();
    takeover_reads(&mut raw).await;
    raw.send(request(spin, 77, &(0u64,))).await.unwrap();
    // The refusal of the second, and the first call's own answer: no second answer.
    let mut frames = Vec::new();
    for _ in 0..2 {
        let frame = bounded(LIMIT, "the answers for call 77", raw.recv())
            .await
            .unwrap()
            .expect("a frame");
        let parsed = Header::parse(frame.payload()).unwrap();
        let (kind, call_id) = (parsed.header.kind, parsed.header.call_id);
        let body = match kind {
            Kind::Error => format!("{:?}", wire::decode::<WireError>(parsed.body, "error")),
            _ => format!("{:?}", wire::decode::<u64>(parsed.body, "rounds")),
        };
        frames.push((kind, call_id, body));
    }
    let refusals = frames.iter().filter(|(kind, call_id, body)| {
        (*kind, *call_id) == (Kind::Error, 77) && body.contains("already in flight")
    });
    let answers = frames.iter().filter(|(kind, call_id, body)| {
        (*kind, *call_id) == (Kind::Response, 77) && body != "Ok(0)"
    });
    assert_eq!(
        (refusals.count(), answers.count()),
        (1, 1),
        "one refusal and the first call's answer: {frames:?}"
    );
    add_answered_next(&mut raw, 78, "a third answer for call 77 came").await;
}

/// Conformance: a call read while the connection's memory is spent waits for it unread; when
/// the server stops gracefully meanwhile, the call is refused with `ShuttingDown` (as a call
/// that comes during the stop is), not dropped unanswered, and the calls already running
/// still get their answers within the grace.
pub async fn a_call_waiting_for_memory_is_refused_when_the_server_stops(transport: Transport) {
    // Room for one call's task and not two (a task costs its request and 4 KiB).
    let server = Server::new()
        .max_connection_memory(6 * 1024)
        .shutdown_grace(Duration::from_secs(1));
    let fixture = Fixture::start(transport, server).await;
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    // A task that holds the connection's memory until the grace runs out.
    raw.send(request(probe_method_id("stall"), 1, &()))
        .await
        .unwrap();
    let stalled = fixture.probe.stalled.clone();
    assert!(
        eventually(LIMIT, || stalled.load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );
    // A handler computing in place, so another reader reads the next call, which must wait
    // for memory.
    raw.send(request(probe_method_id("spin"), 2, &(600u64,)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    raw.send(request(probe_method_id("add"), 3, &(1i64, 2i64)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(fixture.handle.shutdown());
    let mut refused = None;
    let mut spun = None;
    while let Some(frame) = bounded(LIMIT, "the answers, then the close", raw.recv())
        .await
        .unwrap_or(None)
    {
        let parsed = Header::parse(frame.payload()).unwrap();
        match (parsed.header.kind, parsed.header.call_id) {
            (Kind::Error, 3) => refused = Some(wire::decode::<WireError>(parsed.body, "error")),
            (Kind::Response, 2) => spun = Some(wire::decode::<u64>(parsed.body, "rounds")),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert!(
        matches!(refused, Some(Ok(WireError::ShuttingDown))),
        "the waiting call's answer: {refused:?}"
    );
    assert!(
        matches!(spun, Some(Ok(rounds)) if rounds > 0),
        "the running call's answer: {spun:?}"
    );
    bounded(LIMIT, "the shutdown", stopping)
        .await
        .expect("the shutdown task");
}

/// Conformance: a stream's item read while the connection's memory is spent waits for it;
/// when the server stops gracefully meanwhile, the item is still delivered once memory frees
/// up within the grace (its call is running, and a graceful stop lets running calls finish),
/// not dropped: the client-streamed sum counts it.
pub async fn a_stream_item_waiting_for_memory_is_delivered_when_the_server_stops(
    transport: Transport,
) {
    // Holds the rest of the memory for 1.5 s, well into the grace.
    let holder = request(probe_method_id("tag"), 2, &(2u64, 1500u64));
    let answers = stream_item_at_stop(transport, holder, Duration::from_secs(5)).await;
    let answer = |call_id| answers.iter().find(|(id, _)| *id == call_id);
    assert_eq!(
        answer(2).map(|(_, a)| a.as_str()),
        Some("Ok(2)"),
        "the call holding the memory: {answers:?}"
    );
    assert_eq!(
        answer(1).map(|(_, a)| a.as_str()),
        Some("Ok(5)"),
        "the streamed sum, with the item that waited: {answers:?}"
    );
}

/// Sends a client-streaming `total` (call 1) and `holder` (call 2), whose tasks take all of
/// the connection's memory but for less than an item, then the item 5 and the stream's end;
/// stops the server (with `grace`) and returns the answers read until the connection closed
/// (call id, and the sum or tag or error), once the shutdown is done.
async fn stream_item_at_stop(
    transport: Transport,
    holder: rpc_core::transport::Frame,
    grace: Duration,
) -> Vec<(u64, String)> {
    // Room for the tasks of the two calls and not for one item more (a task costs its
    // request and 4 KiB, an item its bytes and 64).
    let server = Server::new()
        .max_connection_memory(2 * 4096 + 100)
        .shutdown_grace(grace);
    let fixture = Fixture::start(transport, server).await;
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    let total = probe_method_id("total");
    // The stream's place among the arguments: an empty sequence.
    raw.send(request(total, 1, &(Vec::<u64>::new(),)))
        .await
        .unwrap();
    raw.send(holder).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let of_total = |kind| Header {
        kind,
        method: total,
        call_id: 1,
    };
    let item = wire::message_frame(of_total(Kind::StreamItem), None, &5u64).unwrap();
    let end = wire::message_frame(of_total(Kind::StreamEnd), None, &None::<String>).unwrap();
    raw.send(item).await.unwrap();
    raw.send(end).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(fixture.handle.shutdown());
    let mut answers = Vec::new();
    while let Some(frame) = bounded(LIMIT, "the answers, then the close", raw.recv())
        .await
        .unwrap_or(None)
    {
        let parsed = Header::parse(frame.payload()).unwrap();
        let answer = match parsed.header.kind {
            Kind::Response => format!("{:?}", wire::decode::<u64>(parsed.body, "answer")),
            Kind::Error => format!("{:?}", wire::decode::<WireError>(parsed.body, "error")),
            // Credit for the item, once the handler took it.
            Kind::Credit => continue,
            other => panic!("unexpected {other:?} frame"),
        };
        answers.push((parsed.header.call_id, answer));
    }
    bounded(LIMIT, "the shutdown", stopping)
        .await
        .expect("the shutdown task");
    answers
}

/// Conformance: a `Cancel` frees its call's id at once, and a call that uses the id again
/// right away is a call of its own: the first call's task, ending meanwhile, must not take
/// the new call's place in the table with it (a later `Cancel` would then find nothing, and
/// the connection's end would not stop it).
pub async fn a_call_id_freed_by_a_cancel_may_be_used_again(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    let stall = probe_method_id("stall");
    let cancel = |call_id| {
        let header = Header {
            kind: Kind::Cancel,
            method: stall,
            call_id,
        };
        wire::message_frame(header, None, &()).unwrap()
    };
    let stalled = fixture.probe.stalled.clone();
    let running = move || stalled.load(std::sync::atomic::Ordering::SeqCst);
    for round in 0..5 {
        raw.send(request(stall, 9, &())).await.unwrap();
        assert!(
            eventually(LIMIT, || running() == 1).await,
            "round {round}: the call did not start"
        );
        // Cancelled, and its id used again at once, while its task ends.
        raw.send(cancel(9)).await.unwrap();
        raw.send(request(stall, 9, &())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            eventually(LIMIT, || running() == 1).await,
            "round {round}: not one call running"
        );
        raw.send(cancel(9)).await.unwrap();
        assert!(
            eventually(LIMIT, || running() == 0).await,
            "round {round}: the second call with the id could not be cancelled"
        );
    }
    add_answered_next(&mut raw, 10, "another answer came first").await;
}

/// Conformance: a `Cancel` read (by the reader that takes over) while the call's handler
/// computes in place stops that call: its answer is not sent, and its id is free again.
/// Not on `mq://`, for the reason given at [`a_call_id_computing_in_place_is_refused`].
pub async fn a_call_cancelled_while_computing_in_place_is_not_answered(transport: Transport) {
    if transport == Transport::Mq {
        return;
    }
    let fixture = Fixture::start(transport, Server::new()).await;
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    let spin = probe_method_id("spin");
    raw.send(request(spin, 5, &(1000u64,))).await.unwrap();
    takeover_reads(&mut raw).await;
    let cancel = Header {
        kind: Kind::Cancel,
        method: spin,
        call_id: 5,
    };
    raw.send(wire::message_frame(cancel, None, &()).unwrap())
        .await
        .unwrap();
    // Its id is free at once; this call is answered while the first one computes.
    add_answered_next(&mut raw, 5, "the cancelled call was answered").await;
    // Once the cancelled handler is done (1 s after it began), the next answer is this one.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    add_answered_next(&mut raw, 6, "the cancelled call was answered").await;
}

/// Waits until a takeover reader reads `raw` while its read loop runs a handler that
/// computes (2 to 4 ms after it began): a call made now is answered before that handler ends.
/// Fails plainly if the handler's own answer comes first.
async fn takeover_reads(raw: &mut rpc_core::transport::Connection) {
    let starved = "no reader took over while the handler computed (this machine starved it \
                   for the whole handler)";
    add_answered_next(raw, 1_000, starved).await;
}

/// Calls `add(20, 22)` as call `call_id` on `raw`, and asserts that the next frame is its
/// answer, 42 (`otherwise`: what another frame first would mean).
async fn add_answered_next(
    raw: &mut rpc_core::transport::Connection,
    call_id: u64,
    otherwise: &str,
) {
    raw.send(request(probe_method_id("add"), call_id, &(20i64, 22i64)))
        .await
        .unwrap();
    let reply = bounded(LIMIT, "the sum", raw.recv())
        .await
        .unwrap()
        .unwrap();
    let parsed = Header::parse(reply.payload()).unwrap();
    assert_eq!(
        (parsed.header.kind, parsed.header.call_id),
        (Kind::Response, call_id),
        "{otherwise}"
    );
    assert_eq!(wire::decode::<i64>(parsed.body, "sum").unwrap(), 42);
}
