//! Calls, limits, failures and raw protocol abuse: the bodies of the async conformance suite.

use std::time::Duration;

use crate::{
    Fixture, GreeterClient, GreeterImpl, GreeterServer, ProbeClient, ProbeError, Transport,
    bounded, eventually, probe_method_id,
};
use rpc_core::transport::{Frame, TransportError};
use rpc_core::wire::{self, Header, Kind, WireError};
use rpc_core::{RpcError, Server};

pub use super::raw_calls::{
    a_call_cancelled_while_computing_in_place_is_not_answered,
    a_call_id_already_in_flight_is_refused, a_call_id_computing_in_place_is_refused,
    a_call_id_freed_by_a_cancel_may_be_used_again,
    a_call_waiting_for_memory_is_refused_when_the_server_stops,
    a_stream_item_waiting_for_memory_is_delivered_when_the_server_stops,
};

pub(crate) const LIMIT: Duration = Duration::from_secs(20);

pub(crate) async fn client(fixture: &Fixture) -> ProbeClient {
    bounded(LIMIT, "connect", fixture.client())
        .await
        .expect("connect")
}

/// Conformance: one call.
pub async fn one_call(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    assert_eq!(probe.echo(b"hello".to_vec()).await.unwrap(), b"hello");
    assert_eq!(probe.echo(Vec::new()).await.unwrap(), Vec::<u8>::new());
}

/// Conformance: thousand concurrent calls on one connection.
pub async fn thousand_concurrent_calls_on_one_connection(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let probe = probe.clone();
            tokio::spawn(async move {
                // Varying delays make replies come back out of order.
                let tag = probe.tag(i, i % 7).await.unwrap();
                let payload: Vec<u8> = i.to_le_bytes().repeat((i % 13) as usize + 1);
                let echoed = probe.echo(payload.clone()).await.unwrap();
                (i, tag, payload == echoed)
            })
        })
        .collect();
    for task in tasks {
        let (i, tag, echo_matches) = bounded(LIMIT, "a concurrent call", task).await.unwrap();
        assert_eq!(i, tag, "call {i} got another call's reply");
        assert!(echo_matches, "call {i} echoed another payload");
    }
    assert_eq!(probe.client().pending_calls(), 0);
}

/// A client with more calls than the server admits at once (its `max_in_flight`, learnt in the
/// handshake) queues the excess instead of having them refused with `TooManyCalls`.
pub async fn more_calls_than_the_server_admits_wait_their_turn(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new().max_in_flight(64)).await;
    let probe = client(&fixture).await;
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let probe = probe.clone();
            tokio::spawn(async move { (i, probe.tag(i, 20).await) })
        })
        .collect();
    for task in tasks {
        let (i, tagged) = bounded(LIMIT, "a queued call", task).await.unwrap();
        assert_eq!(tagged.unwrap(), i, "call {i}");
    }
    assert_eq!(probe.client().pending_calls(), 0);
}

/// Conformance: sixty four clients at once.
pub async fn sixty_four_clients_at_once(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let tasks: Vec<_> = (0..64i64)
        .map(|c| {
            let address = fixture.address.clone();
            let options = fixture.options.clone();
            tokio::spawn(async move {
                let probe = ProbeClient::connect_with(&address, options).await.unwrap();
                for i in 0..20 {
                    assert_eq!(probe.add(c, i).await.unwrap(), c + i);
                }
                probe
            })
        })
        .collect();
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(bounded(LIMIT, "a client", task).await.unwrap());
    }
    assert_eq!(fixture.handle.connections(), 64);
    drop(clients);
    assert!(
        eventually(LIMIT, || fixture.handle.connections() == 0).await,
        "the server still holds {} connections after every client left",
        fixture.handle.connections()
    );
}

pub(crate) const FRAME_LIMIT: usize = 64 * 1024;
/// Header (16) plus the postcard length prefix of a byte string just under 64 KiB (3).
const ECHO_OVERHEAD: usize = 16 + 3;

/// Conformance: payload at the frame limit.
pub async fn payload_at_the_frame_limit(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new().max_frame_size(FRAME_LIMIT)).await;
    let options = fixture
        .options
        .clone()
        .max_frame_size(FRAME_LIMIT)
        .call_timeout(None);
    let probe = ProbeClient::connect_with(&fixture.address, options.clone())
        .await
        .unwrap();
    let bystander = client(&fixture).await;

    let fits = vec![7u8; FRAME_LIMIT - ECHO_OVERHEAD];
    assert_eq!(probe.echo(fits.clone()).await.unwrap(), fits);

    let over = vec![7u8; FRAME_LIMIT - ECHO_OVERHEAD + 1];
    match probe.echo(over).await {
        Err(RpcError::FrameTooLarge { size, limit }) => {
            assert_eq!((size, limit), (FRAME_LIMIT + 1, FRAME_LIMIT));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // A response over the client's limit is refused by the server, by name.
    let fill_fits = (FRAME_LIMIT - ECHO_OVERHEAD) as u64;
    assert_eq!(
        probe.fill(fill_fits).await.unwrap().len(),
        fill_fits as usize
    );
    match probe.fill(fill_fits + 1).await {
        Err(RpcError::FrameTooLarge { size, limit }) => {
            assert_eq!((size, limit), (FRAME_LIMIT + 1, FRAME_LIMIT));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    // The connection and its neighbours are unaffected.
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    assert_eq!(bystander.add(2, 2).await.unwrap(), 4);
}

/// Opens a raw transport connection and says `Hello` as a probe client would.
pub(crate) async fn raw_connection(
    fixture: &Fixture,
    max_frame_size: usize,
) -> rpc_core::transport::Connection {
    fixture.raw_connection(max_frame_size).await
}

pub(crate) fn request<T: serde::Serialize>(method: u32, call_id: u64, args: &T) -> Frame {
    let header = Header {
        kind: Kind::Request,
        method,
        call_id,
    };
    wire::message_frame(header, None, args).unwrap()
}

/// The next frame on `raw`, which must be an `Error` for `call_id`; its wire error.
pub(crate) async fn expect_error(
    raw: &mut rpc_core::transport::Connection,
    call_id: u64,
) -> WireError {
    let reply = bounded(LIMIT, "the server's answer", raw.recv())
        .await
        .unwrap()
        .expect("an error frame");
    let parsed = Header::parse(reply.payload()).unwrap();
    assert_eq!(
        (parsed.header.kind, parsed.header.call_id),
        (Kind::Error, call_id)
    );
    wire::decode(parsed.body, "error").unwrap()
}

/// Asserts that the server closed `raw`.
async fn expect_closed(raw: &mut rpc_core::transport::Connection) {
    assert!(
        bounded(LIMIT, "the close", raw.recv())
            .await
            .unwrap()
            .is_none()
    );
}

/// Conformance: oversized raw frame fails only its connection.
pub async fn oversized_raw_frame_fails_only_its_connection(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new().max_frame_size(FRAME_LIMIT)).await;
    let bystander = client(&fixture).await;
    let mut raw = raw_connection(&fixture, 4 * FRAME_LIMIT).await;
    let huge = vec![1u8; 2 * FRAME_LIMIT];
    // The server may hang up before the whole frame is sent (it can tell the frame is too
    // large from its first bytes, and an mq server queue holds less than the frame), so the
    // send either completes or finds the connection closed; nothing else.
    let sent = raw
        .send(request(
            probe_method_id("echo"),
            1,
            &(serde_bytes::Bytes::new(&huge),),
        ))
        .await;
    assert!(
        matches!(sent, Ok(()) | Err(TransportError::Closed)),
        "{sent:?}"
    );
    // Either way the server names the problem on call id 0, then closes the connection.
    let error = expect_error(&mut raw, 0).await;
    assert!(
        matches!(&error, WireError::Protocol(reason) if reason.contains("exceeds the maximum frame size")),
        "{error:?}"
    );
    expect_closed(&mut raw).await;
    assert_eq!(bystander.add(20, 22).await.unwrap(), 42);
}

/// Conformance: garbage frame fails only its connection.
pub async fn garbage_frame_fails_only_its_connection(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let bystander = client(&fixture).await;
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    raw.send(Frame::from_payload(&[0xEE; 40])).await.unwrap();
    let error = expect_error(&mut raw, 0).await;
    assert!(
        matches!(&error, WireError::Protocol(reason) if reason.contains("unknown frame kind")),
        "{error:?}"
    );
    expect_closed(&mut raw).await;
    assert_eq!(bystander.add(20, 22).await.unwrap(), 42);
    assert!(eventually(LIMIT, || fixture.handle.connections() == 1).await);
}

/// Conformance: server gone mid call fails pending calls.
pub async fn server_gone_mid_call_fails_pending_calls(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let stalled = tokio::spawn({
        let probe = probe.with_timeout(None);
        async move { probe.stall().await }
    });
    let stalled_probe = fixture.probe.stalled.clone();
    assert!(
        eventually(LIMIT, || stalled_probe
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );
    fixture.handle.abort().await;
    let outcome = bounded(LIMIT, "the pending call", stalled).await.unwrap();
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    // Later calls fail at once rather than wait for their deadline.
    let later = bounded(LIMIT, "a call after the server left", probe.add(1, 2)).await;
    assert!(
        matches!(later, Err(RpcError::Disconnected { .. })),
        "{later:?}"
    );
    assert!(probe.client().is_closed());
}

/// Conformance: application error round trip.
pub async fn application_error_round_trip(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    assert_eq!(probe.fail(0).await.unwrap(), Ok(0));
    assert_eq!(probe.fail(7).await.unwrap(), Err(ProbeError::Requested(7)));
}

/// Conformance: unknown method in raw frame.
pub async fn unknown_method_in_raw_frame(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    raw.send(request(999, 5, &())).await.unwrap();
    assert_eq!(expect_error(&mut raw, 5).await, WireError::UnknownMethod);
    // The same connection keeps serving.
    raw.send(request(probe_method_id("add"), 6, &(40i64, 2i64)))
        .await
        .unwrap();
    let reply = bounded(LIMIT, "the sum", raw.recv())
        .await
        .unwrap()
        .unwrap();
    let parsed = Header::parse(reply.payload()).unwrap();
    assert_eq!(
        (parsed.header.kind, parsed.header.call_id),
        (Kind::Response, 6)
    );
    assert_eq!(wire::decode::<i64>(parsed.body, "sum").unwrap(), 42);
    // Through a client, a method its schema lacks is refused before it is sent.
    let probe = client(&fixture).await;
    let outcome = probe.client().call::<_, ()>(999, &()).await;
    assert!(
        matches!(outcome, Err(RpcError::IncompatibleMethod { ref method, .. }) if method == "#999"),
        "{outcome:?}"
    );
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
}

/// Conformance: undecodable arguments are a bad request.
pub async fn undecodable_arguments_are_a_bad_request(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    // `add` takes two i64s; send a string.
    let outcome = probe
        .client()
        .call::<_, i64>(probe_method_id("add"), &("not numbers",))
        .await;
    assert!(
        matches!(outcome, Err(RpcError::BadRequest { ref method, .. }) if method == "add"),
        "{outcome:?}"
    );
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
}

/// Conformance: deadline cancels the handler.
pub async fn deadline_cancels_the_handler(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let outcome = probe
        .with_timeout(Some(Duration::from_millis(100)))
        .stall()
        .await;
    assert!(
        matches!(outcome, Err(RpcError::DeadlineExceeded { ref method, .. }) if method == "stall"),
        "{outcome:?}"
    );
    let stalled = fixture.probe.stalled.clone();
    assert!(
        eventually(LIMIT, || stalled.load(std::sync::atomic::Ordering::SeqCst)
            == 0)
        .await,
        "the server kept running a call the client gave up"
    );
    assert_eq!(probe.client().pending_calls(), 0);
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
}

/// Conformance: handler panic is reported and serving goes on.
pub async fn handler_panic_is_reported_and_serving_goes_on(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let outcome = probe.explode().await;
    assert!(
        matches!(outcome, Err(RpcError::HandlerPanicked { ref method }) if method == "explode"),
        "{outcome:?}"
    );
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
}

/// Conformance: metadata reaches the handler.
pub async fn metadata_reaches_the_handler(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let tagged = probe.with_metadata("tenant", "blue");
    assert_eq!(
        tagged.metadata("tenant".into()).await.unwrap().as_deref(),
        Some("blue")
    );
    assert_eq!(probe.metadata("tenant".into()).await.unwrap(), None);
    // A W3C trace context set by the caller reaches the handler as it was sent.
    let trace = rpc_core::TraceParent::new_trace().to_string();
    let traced = probe.with_metadata(rpc_core::TRACEPARENT, &trace);
    let seen = traced.metadata(rpc_core::TRACEPARENT.into()).await.unwrap();
    assert_eq!(seen.as_deref(), Some(trace.as_str()));
}

/// Conformance: calls in flight are limited by name.
pub async fn calls_in_flight_are_limited_by_name(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new().max_in_flight(2)).await;
    let probe = client(&fixture).await.with_timeout(None);
    let _first = tokio::spawn({
        let probe = probe.clone();
        async move { probe.stall().await }
    });
    let _second = tokio::spawn({
        let probe = probe.clone();
        async move { probe.stall().await }
    });
    let stalled = fixture.probe.stalled.clone();
    assert!(
        eventually(LIMIT, || stalled.load(std::sync::atomic::Ordering::SeqCst)
            == 2)
        .await
    );
    // The client knows the limit: a third call waits for a place, within its deadline.
    let third = bounded(
        LIMIT,
        "the third call",
        probe
            .with_timeout(Some(Duration::from_millis(300)))
            .add(1, 1),
    )
    .await;
    assert!(
        matches!(third, Err(RpcError::DeadlineExceeded { .. })),
        "{third:?}"
    );
    // A client that ignores the limit is refused by the server, by name.
    let mut raw = raw_connection(&fixture, FRAME_LIMIT).await;
    for call_id in 1..=2 {
        raw.send(request(probe_method_id("stall"), call_id, &()))
            .await
            .unwrap();
    }
    assert!(
        eventually(LIMIT, || stalled.load(std::sync::atomic::Ordering::SeqCst)
            == 4)
        .await
    );
    raw.send(request(probe_method_id("add"), 3, &(1i64, 1i64)))
        .await
        .unwrap();
    assert_eq!(expect_error(&mut raw, 3).await, WireError::TooManyCalls(2));
}

/// Conformance: connections are limited by name.
pub async fn connections_are_limited_by_name(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new().max_connections(2)).await;
    let _a = client(&fixture).await;
    let _b = client(&fixture).await;
    let third = fixture.client().await;
    assert!(
        matches!(third, Err(RpcError::TooManyConnections { limit: 2 })),
        "{third:?}"
    );
    drop(_a);
    assert!(eventually(LIMIT, || fixture.handle.connections() == 1).await);
    assert_eq!(client(&fixture).await.add(1, 1).await.unwrap(), 2);
}

/// Conformance: graceful shutdown finishes running calls.
pub async fn graceful_shutdown_finishes_running_calls(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = client(&fixture).await;
    let running = tokio::spawn({
        let probe = probe.clone();
        async move { probe.tag(9, 300).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    bounded(LIMIT, "shutdown", fixture.handle.shutdown()).await;
    assert_eq!(
        bounded(LIMIT, "the running call", running)
            .await
            .unwrap()
            .unwrap(),
        9
    );
    let after = bounded(LIMIT, "a call after shutdown", probe.add(1, 1)).await;
    assert!(
        matches!(after, Err(RpcError::Disconnected { .. })),
        "{after:?}"
    );
}

/// A server with two services serves each to the client that names it, on one listener.
pub async fn two_services_share_one_listener(transport: Transport) {
    // The fixture adds the probe beside the greeter.
    let fixture = Fixture::start(
        transport,
        Server::new().add(GreeterServer::new(GreeterImpl)),
    )
    .await;
    let probe = client(&fixture).await;
    let greeter = bounded(
        LIMIT,
        "connect",
        GreeterClient::connect_with(&fixture.address, fixture.options.clone()),
    )
    .await
    .expect("connect a greeter");
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    assert_eq!(greeter.greet("you".into()).await.unwrap(), "hello, you");
    assert_eq!(fixture.handle.connections(), 2);
}
