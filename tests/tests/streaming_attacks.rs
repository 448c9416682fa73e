//! Hostile clients (raw frames), a hostile server, and unlucky users against streaming calls:
//! stream frames that do not fit the call they name, items beyond the credit granted,
//! credit/budget interplay, graceful shutdown mid-stream, deadlines and panics on both sides.
//!
//! Every test runs a real server on a real socket (Unix domain sockets) in this process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::transport::{Connection, FrameReceiver, FrameSender, TransportConfig};
use rpc_core::wire::{self, Extension, HEADER_LEN, Header, Hello, Kind, STREAM_WINDOW, WireError};
use rpc_core::{ClientOptions, Server, StreamExt, Streaming};
use rpc_tests::{
    ProbeBlockingClient, ProbeClient, ProbeImpl, ProbeServer, TempDir, bounded, eventually,
    probe_method_id,
};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A service of our own, for handlers the probe does not have.
// ---------------------------------------------------------------------------------------------

/// A `u32` whose `Serialize` panics on [`Bomb::ARMED`] (a user type with a buggy `Serialize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Bomb(pub u32);

impl Bomb {
    const ARMED: u32 = 0xDEAD_BEEF;
}

impl Serialize for Bomb {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != Bomb::ARMED, "the bomb went off while serializing");
        serializer.serialize_newtype_struct("Bomb", &self.0)
    }
}

#[rpc_core::service]
pub trait Hoard {
    /// Takes the client's stream and never reads it (until the call is dropped).
    async fn hoard(&self, items: Streaming<serde_bytes::ByteBuf>) -> u64;
    /// Streams `0..count`, one every `every_ms`. No deadline of its own.
    #[rpc(timeout = "none")]
    async fn ticks(&self, count: u64, every_ms: u64) -> Streaming<u64>;
    /// Streams `good` harmless bombs, then an armed one.
    async fn bombs(&self, good: u32) -> Streaming<Bomb>;
    /// Counts the client's bombs.
    async fn count_bombs(&self, items: Streaming<Bomb>) -> u64;
}

#[derive(Clone, Default)]
struct HoardImpl {
    /// Handlers of `hoard` alive now.
    hoarding: Arc<AtomicU64>,
}

struct Counted(Arc<AtomicU64>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hoard for HoardImpl {
    async fn hoard(&self, items: Streaming<serde_bytes::ByteBuf>) -> u64 {
        self.hoarding.fetch_add(1, Ordering::SeqCst);
        let _counted = Counted(self.hoarding.clone());
        let _items = items;
        std::future::pending::<u64>().await
    }

    async fn ticks(&self, count: u64, every_ms: u64) -> Streaming<u64> {
        Streaming::from_stream(futures::stream::unfold(0u64, move |i| async move {
            if i == count {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(every_ms)).await;
            Some((i, i + 1))
        }))
    }

    async fn bombs(&self, good: u32) -> Streaming<Bomb> {
        Streaming::from_iter(
            (0..good)
                .map(Bomb)
                .chain(std::iter::once(Bomb(Bomb::ARMED))),
        )
    }

    async fn count_bombs(&self, mut items: Streaming<Bomb>) -> u64 {
        let mut n = 0;
        while let Some(item) = items.next().await {
            match item {
                Ok(_) => n += 1,
                Err(_) => return u64::MAX,
            }
        }
        n
    }
}

fn hoard_method_id(name: &str) -> u32 {
    HoardClient::schema()
        .methods
        .iter()
        .find(|m| m.name == name)
        .unwrap()
        .id
}

// ---------------------------------------------------------------------------------------------
// Raw protocol helpers.
// ---------------------------------------------------------------------------------------------

fn unix_address(dir: &TempDir, name: &str) -> String {
    format!("unix://{}/{name}.sock", dir.0.display())
}

/// A raw connection to `address` that has said `Hello` for `schema` and read the `Welcome`.
async fn raw_connection(address: &str, schema: &rpc_core::ServiceSchema) -> Connection {
    let parsed: rpc_core::Address = address.parse().unwrap();
    let config = TransportConfig::default();
    let mut connection = rpc_core::transport::connect(&parsed, &config)
        .await
        .unwrap();
    let hello = Hello::new(schema, config.max_frame_size);
    connection
        .send(wire::message_frame(header(Kind::Hello, 0, 0), None, &hello).unwrap())
        .await
        .unwrap();
    let welcome = bounded(LIMIT, "the welcome", connection.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Header::parse(welcome.payload()).unwrap().header.kind,
        Kind::Welcome
    );
    connection
}

fn header(kind: Kind, method: u32, call_id: u64) -> Header {
    Header {
        kind,
        method,
        call_id,
    }
}

fn frame<T: Serialize + ?Sized>(
    kind: Kind,
    method: u32,
    call_id: u64,
    body: &T,
) -> rpc_core::transport::Frame {
    wire::message_frame(header(kind, method, call_id), None, body).unwrap()
}

/// A request with a deadline of `timeout`.
fn request_with_timeout<T: Serialize>(
    method: u32,
    call_id: u64,
    args: &T,
    timeout: Duration,
) -> rpc_core::transport::Frame {
    let extension = Extension {
        timeout_micros: Some(timeout.as_micros() as u64),
        metadata: Vec::new(),
    };
    wire::message_frame(
        header(Kind::Request, method, call_id),
        Some(&extension),
        args,
    )
    .unwrap()
}

/// The stream placeholder a `Streaming` argument is on the wire (a newtype of an empty
/// sequence: postcard writes it as the length 0).
type Placeholder = Vec<u8>;

/// Reads frames until one of `call_id` other than a stream item or credit arrives, or the
/// connection ends (`None`). Returns that frame's kind and, for errors, the wire error.
async fn next_final(
    receiver: &mut FrameReceiver,
    call_id: u64,
) -> Option<(Kind, u64, Option<WireError>)> {
    loop {
        let frame = bounded(LIMIT, "a frame", receiver.recv()).await.ok()??;
        let parsed = Header::parse(frame.payload()).unwrap();
        let h = parsed.header;
        if matches!(h.kind, Kind::StreamItem | Kind::Credit) {
            continue;
        }
        if h.call_id != call_id && h.call_id != 0 {
            continue;
        }
        let error = (h.kind == Kind::Error).then(|| wire::decode(parsed.body, "error").unwrap());
        return Some((h.kind, h.call_id, error));
    }
}

/// Waits for the server to name a protocol violation (an `Error` of call 0) and close.
async fn expect_protocol_error(receiver: &mut FrameReceiver) -> String {
    match next_final(receiver, 0).await {
        Some((Kind::Error, 0, Some(WireError::Protocol(reason)))) => reason,
        other => panic!("expected a protocol error for the connection, got {other:?}"),
    }
}

async fn probe_server(
    server: Server,
    dir: &TempDir,
) -> (rpc_core::ServerHandle, ProbeImpl, String) {
    let probe = ProbeImpl::default();
    let address = unix_address(dir, "probe");
    let handle = server
        .start(ProbeServer::new(probe.clone()), &[address.as_str()])
        .await
        .unwrap();
    (handle, probe, address)
}

async fn hoard_server(
    server: Server,
    dir: &TempDir,
) -> (rpc_core::ServerHandle, HoardImpl, String) {
    let hoard = HoardImpl::default();
    let address = unix_address(dir, "hoard");
    let handle = server
        .start(HoardServer::new(hoard.clone()), &[address.as_str()])
        .await
        .unwrap();
    (handle, hoard, address)
}

fn split(connection: Connection) -> (FrameSender, FrameReceiver) {
    let (sender, receiver, _) = connection.split();
    (sender, receiver)
}

// ---------------------------------------------------------------------------------------------
// Stray stream frames.
// ---------------------------------------------------------------------------------------------

/// Stream frames naming no call, credit for calls that send no stream, absurd credit, a
/// stream's end twice: none of these hurts the server or the connection, which answers the
/// next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_stream_frames_are_harmless() {
    let dir = TempDir::new();
    let (_handle, _probe, address) = probe_server(Server::new(), &dir).await;
    let (mut tx, mut rx) = split(raw_connection(&address, ProbeClient::schema()).await);
    let add = probe_method_id("add");
    let total = probe_method_id("total");
    // Before any request: items, an end and credit for calls that never existed.
    tx.send(frame(Kind::StreamItem, total, 77, &5u64))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamEnd, total, 77, &None::<String>))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, total, 77, &u64::MAX))
        .await
        .unwrap();
    // Credit for a call that sends no stream while it runs, and huge credit twice.
    tx.send(frame(Kind::Request, add, 1, &(2i64, 3i64)))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, add, 1, &u64::MAX))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, add, 1, &u64::MAX))
        .await
        .unwrap();
    assert!(matches!(
        next_final(&mut rx, 1).await,
        Some((Kind::Response, 1, None))
    ));
    // A client stream ended twice, with items after its end.
    tx.send(frame(Kind::Request, total, 2, &(Placeholder::new(),)))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamItem, total, 2, &40u64))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamEnd, total, 2, &None::<String>))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamEnd, total, 2, &Some("again")))
        .await
        .unwrap();
    tx.send(frame(Kind::StreamItem, total, 2, &1u64))
        .await
        .unwrap();
    let reply = bounded(LIMIT, "the reply", async {
        loop {
            let frame = rx.recv().await.unwrap().unwrap();
            let parsed = Header::parse(frame.payload()).unwrap();
            if parsed.header.call_id == 2 && parsed.header.kind == Kind::Response {
                return wire::decode::<u64>(parsed.body, "total").unwrap();
            }
        }
    })
    .await;
    assert_eq!(reply, 40);
    // Credit for a server stream overflowing the counter.
    let items = probe_method_id("items");
    tx.send(frame(Kind::Request, items, 3, &(3u64, 4u32)))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, items, 3, &u64::MAX))
        .await
        .unwrap();
    tx.send(frame(Kind::Credit, items, 3, &u64::MAX))
        .await
        .unwrap();
    assert!(matches!(
        next_final(&mut rx, 3).await,
        Some((Kind::Response, 3, None))
    ));
    tx.send(frame(Kind::Request, add, 4, &(20i64, 22i64)))
        .await
        .unwrap();
    assert!(matches!(
        next_final(&mut rx, 4).await,
        Some((Kind::Response, 4, None))
    ));
}

/// Items for a running call that takes no stream: a protocol error closes that connection
/// only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_for_a_call_without_a_stream_close_only_that_connection() {
    let dir = TempDir::new();
    let (_handle, probe, address) = probe_server(Server::new(), &dir).await;
    let bystander = ProbeClient::connect(&address).await.unwrap();
    let (mut tx, mut rx) = split(raw_connection(&address, ProbeClient::schema()).await);
    let stall = probe_method_id("stall");
    tx.send(frame(Kind::Request, stall, 1, &())).await.unwrap();
    assert!(eventually(LIMIT, || probe.stalled.load(Ordering::SeqCst) == 1).await);
    tx.send(frame(Kind::StreamItem, stall, 1, &1u64))
        .await
        .unwrap();
    let reason = expect_protocol_error(&mut rx).await;
    assert!(reason.contains("takes no stream"), "{reason}");
    assert!(
        bounded(LIMIT, "the close", rx.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        eventually(LIMIT, || probe.stalled.load(Ordering::SeqCst) == 0).await,
        "the closed connection's call was not dropped"
    );
    assert_eq!(bystander.add(1, 2).await.unwrap(), 3);
}

// ---------------------------------------------------------------------------------------------
// Credit.
// ---------------------------------------------------------------------------------------------

/// Sends `count` items of `size` bytes for call 1 of `hoard` (which never reads them), then
/// looks whether the server named a protocol violation.
async fn flood_hoard(server: Server, size: usize, count: usize) -> Option<String> {
    let dir = TempDir::new();
    let (_handle, hoard, address) = hoard_server(server, &dir).await;
    let bystander = HoardClient::connect(&address).await.unwrap();
    let (mut tx, mut rx) = split(raw_connection(&address, HoardClient::schema()).await);
    let method = hoard_method_id("hoard");
    tx.send(frame(Kind::Request, method, 1, &(Placeholder::new(),)))
        .await
        .unwrap();
    assert!(eventually(LIMIT, || hoard.hoarding.load(Ordering::SeqCst) == 1).await);
    let item = serde_bytes::ByteBuf::from(vec![7u8; size]);
    let sender = tokio::spawn(async move {
        for _ in 0..count {
            if tx
                .send(frame(Kind::StreamItem, method, 1, &item))
                .await
                .is_err()
            {
                return;
            }
        }
        // Keep our direction open.
        std::future::pending::<()>().await;
    });
    let outcome = tokio::time::timeout(Duration::from_secs(3), next_final(&mut rx, 0)).await;
    sender.abort();
    // Whatever happened, the server still serves others.
    let ticks: Vec<u64> = bystander
        .ticks(2, 1)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(ticks, vec![0, 1]);
    match outcome {
        Ok(Some((Kind::Error, 0, Some(WireError::Protocol(reason))))) => Some(reason),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(_) => None,
    }
}

/// A client that sends well beyond its credit (to a handler that never reads) is told so and
/// closed, once it is more than one frame beyond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_beyond_credit_are_a_protocol_error() {
    // 32 KiB items: 40 of them are 1.25 MiB, beyond the window plus one 64 KiB frame.
    let reason = flood_hoard(Server::new().max_frame_size(64 * 1024), 32 * 1024, 40).await;
    let reason = reason.expect("the server named no violation");
    assert!(reason.contains("beyond"), "{reason}");
}

/// A sender may overdraw its credit by the one item it sends while it has any credit left.
/// The server tolerated an overdraw of a whole maximum-size frame (16 MiB by default) in any
/// number of frames instead, so a hostile client could send 17 MiB per stream: 1.5 MiB (the
/// window and 16 further items of 32 KiB) went unnoticed.
///
/// Was a bug: `Inbox::deliver` (rpc-core/src/stream/inbox.rs) checked `received > granted +
/// max_frame`; it now refuses a frame that *starts* beyond the credit, the sender's rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdrawing_by_more_than_one_item_is_a_protocol_error() {
    let window_items = (STREAM_WINDOW as usize) / (32 * 1024);
    let reason = flood_hoard(Server::new(), 32 * 1024, window_items + 16).await;
    assert!(
        reason.is_some(),
        "the server accepted 16 items beyond the window and one overdrawing item"
    );
}

/// A fake server that sends a server stream's items far beyond the client's credit, in tiny
/// frames, to a consumer that does not read: the client must refuse (close the connection)
/// rather than queue them all.
///
/// Was a bug: the client's reader tolerated `STREAM_WINDOW + max_frame_size` = 17 MiB per
/// stream (rpc-core/src/stream/inbox.rs `deliver`), which in 17-byte frames is over a million
/// entries of an unbounded channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_beyond_credit_is_refused_by_the_client() {
    let dir = TempDir::new();
    let address = unix_address(&dir, "fake");
    let parsed: rpc_core::Address = address.parse().unwrap();
    let listener = rpc_core::transport::Listener::bind(&parsed, &TransportConfig::default())
        .await
        .unwrap();
    // 3 MiB of one-byte items: three windows.
    let frames = 3 * STREAM_WINDOW as usize / (HEADER_LEN + 1);
    let fake = tokio::spawn(async move {
        let connection = listener.accept().await.unwrap();
        let (mut tx, mut rx) = split(connection);
        let _hello = rx.recv().await.unwrap().unwrap();
        let welcome = wire::Welcome {
            max_frame_size: TransportConfig::default().max_frame_size as u64,
            max_in_flight: 100,
            schema_json: ProbeClient::schema().to_json(),
        };
        tx.send(frame(Kind::Welcome, 0, 0, &welcome)).await.unwrap();
        let request = rx.recv().await.unwrap().unwrap();
        let h = Header::parse(request.payload()).unwrap().header;
        let mut sent = 0;
        for i in 0..frames {
            let item = frame(Kind::StreamItem, h.method, h.call_id, &(i as u8 % 100));
            // A client that stopped reading (it refused the flood) fills the socket.
            match tokio::time::timeout(Duration::from_secs(1), tx.send(item)).await {
                Ok(Ok(())) => {}
                _ => break,
            }
            sent += 1;
        }
        (sent, tx, rx)
    });
    let probe = ProbeClient::connect(&address).await.unwrap();
    let before = rpc_tests::status_kib(std::process::id(), "VmRSS:").unwrap();
    let items = probe.items(1, 1).await.unwrap();
    let (sent, _tx, _rx) = bounded(LIMIT, "the flood", fake).await.unwrap();
    let after = rpc_tests::status_kib(std::process::id(), "VmRSS:").unwrap();
    eprintln!(
        "the fake server sent {sent} frames ({} KiB); client RSS {before} -> {after} KiB",
        sent * (HEADER_LEN + 1) / 1024
    );
    let closed = eventually(Duration::from_secs(2), || probe.client().is_closed()).await;
    drop(items);
    assert!(
        closed,
        "the client queued three windows of items without complaint"
    );
}

// ---------------------------------------------------------------------------------------------
// Credit against the connection's memory budget.
// ---------------------------------------------------------------------------------------------

/// An honest client: three bidirectional calls with small items, whose answers it starts
/// reading a second later. Every call must complete.
///
/// SUSPECTED BUG (deadlock, not reliably reproduced): in one run of the whole file (CPU
/// contended), a call stopped after 43 answers and met its 15 s deadline; five later runs of
/// this test alone passed (in ~10 s). Suspected cause: client-stream items count against the
/// connection's request budget with 64 bytes of overhead per frame, but credit counts only
/// frame bytes, so a window of 17-byte items may cost ~4.8 MiB of budget (over the default
/// 4 MiB), and concurrent windows add up; while the budget is spent the read loop
/// (server/session.rs `reserve`, threaded.rs `take_waiting`) reads nothing, including the
/// `Credit` frames a handler blocked on its output credit waits for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "suspected deadlock between stream credit and the request budget; flaky, slow"]
async fn bidirectional_streams_with_small_items_do_not_deadlock() {
    let dir = TempDir::new();
    let (_handle, _probe, address) = probe_server(Server::new(), &dir).await;
    let options = ClientOptions::default().call_timeout(Some(Duration::from_secs(10)));
    let probe = ProbeClient::connect_with(&address, options).await.unwrap();
    const N: u64 = 200_000;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let numbers = Streaming::from_iter(std::iter::repeat_n(1u64, N as usize));
        streams.push(probe.running_total(0, numbers).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let results = futures::future::join_all(streams.into_iter().map(|mut totals| async move {
        let mut last = 0;
        let mut count = 0u64;
        while let Some(total) = totals.next().await {
            match total {
                Ok(total) => {
                    last = total;
                    count += 1;
                }
                Err(error) => return Err((count, error)),
            }
        }
        Ok((count, last))
    }))
    .await;
    for result in results {
        match result {
            Ok((count, last)) => assert_eq!((count, last), (N, N)),
            Err((count, error)) => panic!(
                "a bidirectional call failed after {count} answers and {:?}: {error}",
                started.elapsed()
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Graceful shutdown.
// ---------------------------------------------------------------------------------------------

/// A graceful shutdown lets running calls finish within the grace period; a server stream of
/// a few windows (4 MB) that the client reads at full speed is such a call.
/// The server keeps reading during the grace (credit, items, ends, cancels; new calls are
/// refused), so the stream goes on past its first window. (Found by review: the read loop used
/// to stop at once, and the stream stalled one window in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_a_stream_finish() {
    let dir = TempDir::new();
    let server = Server::new().shutdown_grace(Duration::from_secs(3));
    let (handle, _probe, address) = probe_server(server, &dir).await;
    let probe = ProbeClient::connect(&address).await.unwrap();
    let mut items = probe.items(400, 10_000).await.unwrap();
    assert!(items.next().await.unwrap().is_ok());
    let shutdown = tokio::spawn(handle.shutdown());
    let mut count = 1;
    let started = Instant::now();
    while let Some(item) = bounded(LIMIT, "an item", items.next()).await {
        if let Err(error) = item {
            panic!(
                "the stream failed after {count} items and {:?} of shutdown: {error}",
                started.elapsed()
            );
        }
        count += 1;
    }
    assert_eq!(count, 400);
    bounded(LIMIT, "the shutdown", shutdown).await.unwrap();
}

/// A graceful shutdown with server streams whose consumer never reads (one held back by
/// credit, one producing slowly) ends within the grace period and drops the producers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_is_not_held_by_an_unread_stream() {
    let dir = TempDir::new();
    let grace = Duration::from_millis(500);
    let (handle, probe_impl, address) =
        probe_server(Server::new().shutdown_grace(grace), &dir).await;
    let probe = ProbeClient::connect(&address).await.unwrap();
    let produced = probe.produce(64 * 1024).await.unwrap();
    let endless = probe.endless().await.unwrap();
    assert!(eventually(LIMIT, || probe_impl.stalled.load(Ordering::SeqCst) == 1).await);
    assert!(eventually(LIMIT, || probe_impl.produced.load(Ordering::SeqCst) >= 16).await);
    let started = Instant::now();
    bounded(LIMIT, "the shutdown", handle.shutdown()).await;
    assert!(
        started.elapsed() < grace + Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        eventually(LIMIT, || probe_impl.stalled.load(Ordering::SeqCst) == 0).await,
        "the producer outlived the server"
    );
    drop((produced, endless));
}

// ---------------------------------------------------------------------------------------------
// Deadlines and cancellation.
// ---------------------------------------------------------------------------------------------

/// A raw client sends a few items of a client stream and never its end: the call's deadline
/// fails it, and the connection serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_without_an_end_meets_its_deadline() {
    let dir = TempDir::new();
    let (_handle, _probe, address) = probe_server(Server::new(), &dir).await;
    let (mut tx, mut rx) = split(raw_connection(&address, ProbeClient::schema()).await);
    let total = probe_method_id("total");
    let started = Instant::now();
    tx.send(request_with_timeout(
        total,
        1,
        &(Placeholder::new(),),
        Duration::from_millis(300),
    ))
    .await
    .unwrap();
    for n in 0..10u64 {
        tx.send(frame(Kind::StreamItem, total, 1, &n))
            .await
            .unwrap();
    }
    match next_final(&mut rx, 1).await {
        Some((Kind::Error, 1, Some(WireError::DeadlineExceeded))) => {}
        other => panic!("expected the deadline, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Late items of that call are dropped; the connection goes on.
    tx.send(frame(Kind::StreamItem, total, 1, &1u64))
        .await
        .unwrap();
    tx.send(frame(
        Kind::Request,
        probe_method_id("add"),
        2,
        &(1i64, 1i64),
    ))
    .await
    .unwrap();
    assert!(matches!(
        next_final(&mut rx, 2).await,
        Some((Kind::Response, 2, None))
    ));
}

/// A raw client that never grants credit and never reads: the server's producer stays bounded
/// and a `Cancel` drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_stream_is_bounded_and_cancellable() {
    let dir = TempDir::new();
    let (_handle, probe, address) = probe_server(Server::new(), &dir).await;
    let (mut tx, _rx) = split(raw_connection(&address, ProbeClient::schema()).await);
    let produce = probe_method_id("produce");
    tx.send(frame(Kind::Request, produce, 1, &(64u32 * 1024,)))
        .await
        .unwrap();
    let endless = probe_method_id("endless");
    tx.send(frame(Kind::Request, endless, 2, &()))
        .await
        .unwrap();
    assert!(eventually(LIMIT, || probe.stalled.load(Ordering::SeqCst) == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let produced = probe.produced.load(Ordering::SeqCst);
    let window_items = STREAM_WINDOW / (64 * 1024);
    assert!(
        produced <= window_items + 3,
        "{produced} items produced for a client that granted no credit"
    );
    tx.send(frame(Kind::Cancel, endless, 2, &())).await.unwrap();
    assert!(
        eventually(LIMIT, || probe.stalled.load(Ordering::SeqCst) == 0).await,
        "the cancelled producer lives on"
    );
}

/// `#[rpc(timeout = "none")]` on a streaming method: the client's default timeout does not cut
/// its stream short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_deadline_outlives_the_default_timeout() {
    let dir = TempDir::new();
    let (_handle, _hoard, address) = hoard_server(Server::new(), &dir).await;
    let options = ClientOptions::default().call_timeout(Some(Duration::from_millis(200)));
    let client = HoardClient::connect_with(&address, options).await.unwrap();
    let ticks: Vec<u64> = bounded(LIMIT, "the ticks", async {
        client
            .ticks(8, 100)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await
    })
    .await;
    assert_eq!(ticks, (0..8).collect::<Vec<_>>());
}

/// The blocking iterator dropped one item into a stream whose window is full of large items:
/// the next call on that client skips the late items and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_call_after_a_dropped_full_window() {
    let dir = TempDir::new();
    let (_handle, probe, address) = probe_server(Server::new(), &dir).await;
    let thread = std::thread::spawn(move || {
        let options = ClientOptions::default().call_timeout(Some(LIMIT));
        let client = ProbeBlockingClient::connect_with(&address, options).unwrap();
        for round in 0..3 {
            let mut items = client.produce(64 * 1024).unwrap();
            assert_eq!(items.next().unwrap().unwrap().len(), 64 * 1024);
            std::thread::sleep(Duration::from_millis(100));
            drop(items);
            assert_eq!(client.add(round, 1).unwrap(), round + 1);
        }
    });
    bounded(
        LIMIT,
        "the blocking client",
        tokio::task::spawn_blocking(move || thread.join()),
    )
    .await
    .unwrap()
    .unwrap();
    drop(probe);
}

// ---------------------------------------------------------------------------------------------
// Panics.
// ---------------------------------------------------------------------------------------------

/// The client's stream panics: the handler sees its stream fail, and the call ends at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_client_stream_fails_the_handlers_stream() {
    let dir = TempDir::new();
    let (_handle, _probe, address) = probe_server(Server::new(), &dir).await;
    let probe = ProbeClient::connect(&address).await.unwrap();
    let numbers = Streaming::from_stream(futures::stream::iter(0..10u64).map(|n| {
        assert!(n < 3, "the client's producer panicked on purpose");
        n
    }));
    let total = bounded(LIMIT, "total", probe.total(numbers)).await.unwrap();
    assert_eq!(total, u64::MAX, "the handler saw its stream fail");
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
}

/// A server stream's item whose `Serialize` panics: the call ends with an error at once (as a
/// panicking handler does), not at its deadline, and leaves nothing behind.
///
/// Was a bug: items were sized in `streaming::send_items` (server/streaming.rs, via
/// `ReplySink::prepare` -> `Answer::outgoing` -> `Reply::encoded_len`) outside the
/// `catch_unwind` that guards the handler and `items.next()`: the panic killed the call's task
/// before `Calls::finish`, so no final frame was sent and the call stayed in the connection's
/// table for good (counting against `max_in_flight`, holding graceful shutdown for its whole
/// grace, keeping the idle timeout from firing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_item_that_panics_in_serialize_fails_the_call() {
    let dir = TempDir::new();
    let grace = Duration::from_millis(300);
    let (handle, _hoard, address) = hoard_server(Server::new().shutdown_grace(grace), &dir).await;
    let options = ClientOptions::default().call_timeout(Some(Duration::from_secs(10)));
    let client = HoardClient::connect_with(&address, options).await.unwrap();
    let started = Instant::now();
    let mut bombs = client.bombs(3).await.unwrap();
    for expected in 0..3 {
        assert_eq!(bombs.next().await.unwrap().unwrap(), Bomb(expected));
    }
    let last = bounded(LIMIT, "the end", bombs.next()).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call ended only at its deadline ({:?}): {last:?}",
        started.elapsed()
    );
    assert!(matches!(last, Some(Err(_))), "{last:?}");
    let shutdown = Instant::now();
    handle.shutdown().await;
    assert!(shutdown.elapsed() < grace + Duration::from_millis(500));
}

/// A client stream's item whose `Serialize` panics: the call fails at once, not at its
/// deadline.
///
/// Was a bug: the client's pump (client/streaming.rs `send_items`) encoded items in
/// `frames::item` outside its `catch_unwind`: the panic killed the pump task, no `StreamEnd`
/// was ever sent, and both the handler and the caller waited for the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_item_that_panics_in_serialize_fails_the_call() {
    let dir = TempDir::new();
    let (_handle, _hoard, address) = hoard_server(Server::new(), &dir).await;
    let options = ClientOptions::default().call_timeout(Some(Duration::from_secs(10)));
    let client = HoardClient::connect_with(&address, options).await.unwrap();
    let started = Instant::now();
    let items = Streaming::from_iter([Bomb(1), Bomb(2), Bomb(Bomb::ARMED)]);
    let outcome = bounded(LIMIT, "the call", client.count_bombs(items)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the call ended only at its deadline ({:?}): {outcome:?}",
        started.elapsed()
    );
    assert_eq!(
        outcome.unwrap(),
        u64::MAX,
        "the handler saw its stream fail"
    );
}
