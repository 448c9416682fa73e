//! `rpc_core::Bytes` as argument and return type: intact over shm (inline and large), unix,
//! tcp and in-process, from the async and the blocking client, mixed with other arguments,
//! as stream items; the same bytes on the wire as `Vec<u8>`; and bytes once delivered never
//! change when the peer writes its shared bulk region again (a hostile peer may).

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use rpc_core::{Bytes, Server, StreamExt, Streaming};

const MIB: usize = 1024 * 1024;

#[rpc_core::service]
pub trait Blocks {
    /// Returns `data` unchanged.
    async fn echo(&self, data: Bytes) -> Bytes;
    /// `head`, `n` as four little-endian bytes, then `tail`.
    async fn join(&self, head: Bytes, n: u32, tail: Bytes) -> Bytes;
    /// Waits `ms`, then returns a copy of what it was given, as it reads then.
    async fn hold(&self, data: Bytes, ms: u64) -> Bytes;
    /// Streams `count` blocks of `size` bytes, block `i` filled with `i`.
    async fn blocks(&self, count: u32, size: u32) -> Streaming<Bytes>;
}

/// The same service with `Vec<u8>` in `echo`: its client must talk to the `Bytes` server.
mod as_vec {
    #[rpc_core::service]
    pub trait Blocks {
        /// Returns `data` unchanged.
        async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
    }
}

struct Impl;

impl Blocks for Impl {
    async fn echo(&self, data: Bytes) -> Bytes {
        data
    }
    async fn join(&self, head: Bytes, n: u32, tail: Bytes) -> Bytes {
        let mut out = head.to_vec();
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&tail);
        out.into()
    }
    async fn hold(&self, data: Bytes, ms: u64) -> Bytes {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Bytes::copy_from_slice(&data)
    }
    async fn blocks(&self, count: u32, size: u32) -> Streaming<Bytes> {
        Streaming::from_iter((0..count).map(move |i| Bytes::from(vec![i as u8; size as usize])))
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}

async fn serve(address: &str) -> (rpc_core::ServerHandle, String) {
    let handle = Server::new()
        .max_frame_size(80 * MIB)
        .start(BlocksServer::new(Impl), &[address])
        .await
        .unwrap();
    let address = handle.local_address();
    (handle, address)
}

fn options() -> rpc_core::ClientOptions {
    rpc_core::ClientOptions::default().max_frame_size(80 * MIB)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_cross_every_transport_intact() {
    let dir = rpc_tests::TempDir::new();
    for address in [
        format!("shm://{}/blocks.sock", dir.0.display()),
        format!("unix://{}/blocks-unix.sock", dir.0.display()),
        "tcp://127.0.0.1:0".to_owned(),
        format!("mem://{}", rpc_tests::unique_name("blocks")),
    ] {
        let (handle, address) = serve(&address).await;
        let client = BlocksClient::connect_with(&address, options())
            .await
            .unwrap();
        // Empty, small (inline in the shm ring), 1 MiB and 64 MiB (the shm bulk region).
        for (len, seed) in [(0, 1), (100, 2), (MIB, 3), (64 * MIB, 4), (MIB, 5)] {
            let data = pattern(len, seed);
            let back = client.echo(Bytes::from(data.clone())).await.unwrap();
            assert!(
                back == data,
                "{address}: echo of {len} bytes came back wrong"
            );
        }
        let head = pattern(300_000, 6);
        let tail = pattern(70, 7);
        let joined = client
            .join(head.clone().into(), 0xA1B2C3D4, tail.clone().into())
            .await
            .unwrap();
        let mut expected = head.clone();
        expected.extend_from_slice(&0xA1B2C3D4u32.to_le_bytes());
        expected.extend_from_slice(&tail);
        assert!(joined == expected, "{address}: join came back wrong");

        let mut stream = client.blocks(5, 200_000).await.unwrap();
        let mut seen = 0;
        while let Some(block) = stream.next().await {
            let block = block.unwrap();
            assert!(block.len() == 200_000 && block.iter().all(|b| *b == seen as u8));
            seen += 1;
        }
        assert_eq!(seen, 5, "{address}");

        // A client built with `Vec<u8>` talks to the `Bytes` server unchanged.
        let vec_client = as_vec::BlocksClient::connect_with(&address, options())
            .await
            .unwrap();
        let data = pattern(2 * MIB, 8);
        assert_eq!(
            vec_client.echo(data.clone()).await.unwrap(),
            data,
            "{address}"
        );

        // The blocking client (in-process `mem://` channels need the caller's runtime).
        let blocking_address = address.clone();
        let blocking = !address.starts_with("mem://");
        tokio::task::spawn_blocking(move || {
            if !blocking {
                return;
            }
            let client = BlocksBlockingClient::connect_with(&blocking_address, options()).unwrap();
            for (len, seed) in [(10, 9), (3 * MIB, 10)] {
                let data = pattern(len, seed);
                assert!(client.echo(data.clone().into()).unwrap() == data);
            }
        })
        .await
        .unwrap();
        handle.shutdown().await;
    }
}

/// Address ranges of this process's mappings of shared-memory bulk regions (both sides'
/// regions, since client and server run here).
fn bulk_mappings() -> BTreeSet<(u64, u64)> {
    rpc_tests::mappings_of("self", "rpc-shm-large")
        .into_iter()
        .collect()
}

/// Overwrites every bulk region with `byte`, header and payload, as a peer that keeps writing
/// its region would (through this process's second mapping of each region).
fn scribble_bulk_regions(byte: u8) -> usize {
    let memory = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .unwrap();
    let mappings = bulk_mappings();
    for (start, end) in &mappings {
        memory
            .write_all_at(&vec![byte; (end - start) as usize], *start)
            .unwrap();
    }
    mappings.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_bytes_do_not_change_when_the_peer_rewrites_its_region() {
    let dir = rpc_tests::TempDir::new();
    let (handle, address) = serve(&format!("shm://{}/hostile.sock", dir.0.display())).await;
    let client = BlocksClient::connect_with(&address, options())
        .await
        .unwrap();
    let data = pattern(4 * MIB, 11);

    // The client's copy: a reply handed to the caller, then the server's region rewritten.
    let back = client.echo(Bytes::from(data.clone())).await.unwrap();
    assert!(back == data);
    let regions = scribble_bulk_regions(0xEE);
    assert!(
        regions >= 2,
        "expected both sides' bulk regions, found {regions}"
    );
    assert!(
        back == data,
        "the reply changed after delivery when the server's region was rewritten"
    );

    // The handler's copy: the client rewrites its own region while the handler holds the
    // argument; the handler's bytes, returned after that, must be what was sent.
    let call = client.hold(Bytes::from(data.clone()), 300);
    let scribbler = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        scribble_bulk_regions(0x5A)
    };
    let (held, scribbled) = tokio::join!(call, scribbler);
    assert!(scribbled >= 2);
    assert!(
        held.unwrap() == data,
        "the handler's argument changed when the client rewrote its region after sending"
    );
    // The connection still works (the regions' busy words were overwritten too).
    let again = client.echo(Bytes::from(data.clone())).await.unwrap();
    assert!(again == data);
    handle.shutdown().await;
}
