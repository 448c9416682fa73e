//! What the streaming attack suites share: a service of their own (for handlers the probe
//! does not have), and raw-protocol helpers. Included by `streaming_attacks.rs` and
//! `streaming_lifecycle.rs` with `#[path]`; each uses part of it.
#![allow(dead_code)]

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

pub(crate) const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// A service of our own, for handlers the probe does not have.
// ---------------------------------------------------------------------------------------------

/// A `u32` whose `Serialize` panics on [`Bomb::ARMED`] (a user type with a buggy `Serialize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Bomb(pub u32);

impl Bomb {
    pub(crate) const ARMED: u32 = 0xDEAD_BEEF;
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
pub(crate) struct HoardImpl {
    /// Handlers of `hoard` alive now.
    pub(crate) hoarding: Arc<AtomicU64>,
}

pub(crate) struct Counted(Arc<AtomicU64>);
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

pub(crate) fn hoard_method_id(name: &str) -> u32 {
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

pub(crate) fn unix_address(dir: &TempDir, name: &str) -> String {
    format!("unix://{}/{name}.sock", dir.0.display())
}

/// A raw connection to `address` that has said `Hello` for `schema` and read the `Welcome`.
pub(crate) async fn raw_connection(address: &str, schema: &rpc_core::ServiceSchema) -> Connection {
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

pub(crate) fn header(kind: Kind, method: u32, call_id: u64) -> Header {
    Header {
        kind,
        method,
        call_id,
    }
}

pub(crate) fn frame<T: Serialize + ?Sized>(
    kind: Kind,
    method: u32,
    call_id: u64,
    body: &T,
) -> rpc_core::transport::Frame {
    wire::message_frame(header(kind, method, call_id), None, body).unwrap()
}

/// A request with a deadline of `timeout`.
pub(crate) fn request_with_timeout<T: Serialize>(
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
pub(crate) type Placeholder = Vec<u8>;

/// Reads frames until one of `call_id` other than a stream item or credit arrives, or the
/// connection ends (`None`). Returns that frame's kind and, for errors, the wire error.
pub(crate) async fn next_final(
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
pub(crate) async fn expect_protocol_error(receiver: &mut FrameReceiver) -> String {
    match next_final(receiver, 0).await {
        Some((Kind::Error, 0, Some(WireError::Protocol(reason)))) => reason,
        other => panic!("expected a protocol error for the connection, got {other:?}"),
    }
}

pub(crate) async fn probe_server(
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

pub(crate) async fn hoard_server(
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

pub(crate) fn split(connection: Connection) -> (FrameSender, FrameReceiver) {
    let (sender, receiver, _) = connection.split();
    (sender, receiver)
}
