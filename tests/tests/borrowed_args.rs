//! Borrowed arguments (`&str`, `&[u8]`, `&[T]`, `&T`) arrive intact, and a large `&[u8]` is
//! never copied into a fresh buffer: over shared memory a 64 MiB call allocates almost nothing
//! on either side (the client encodes into the mapped region, the server's transport copies it
//! once into a receive buffer it reuses from call to call, and the handler borrows that),
//! and over a Unix socket only the transport's own send and receive buffers, where a `Vec<u8>`
//! argument costs one 64 MiB vector more.
//!
//! Client and server run in this one process, under a global allocator that counts bytes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use rpc_core::Server;
use tokio::sync::Mutex;

struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Measurements must not overlap: tests of this file take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

const MIB: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

#[rpc_core::service]
pub trait Bulk {
    /// A checksum of borrowed bytes.
    async fn checksum(&self, data: &[u8]) -> u64;
    /// The same of an owned vector.
    async fn checksum_owned(&self, data: Vec<u8>) -> u64;
    /// Every kind of borrowed argument at once.
    async fn describe(&self, name: &str, tags: &[String], point: &Point, raw: &[u8]) -> String;
}

struct BulkImpl;

fn checksum(data: &[u8]) -> u64 {
    data.iter().enumerate().fold(0u64, |acc, (i, b)| {
        acc.wrapping_add((*b as u64).wrapping_mul(i as u64 + 1))
    })
}

impl Bulk for BulkImpl {
    async fn checksum(&self, data: &[u8]) -> u64 {
        checksum(data)
    }
    async fn checksum_owned(&self, data: Vec<u8>) -> u64 {
        checksum(&data)
    }
    async fn describe(&self, name: &str, tags: &[String], point: &Point, raw: &[u8]) -> String {
        format!("{name} {tags:?} {},{} {raw:?}", point.x, point.y)
    }
}

async fn serve(address: &str) -> (rpc_core::ServerHandle, String) {
    let handle = Server::new()
        .max_frame_size(128 * MIB)
        .start(BulkServer::new(BulkImpl), &[address])
        .await
        .unwrap();
    let address = handle.local_address();
    (handle, address)
}

async fn connect(address: &str) -> BulkClient {
    BulkClient::connect_with(
        address,
        rpc_core::ClientOptions::default().max_frame_size(128 * MIB),
    )
    .await
    .unwrap()
}

/// Bytes allocated (anywhere in this process) while `call` runs.
async fn allocated_during<F: std::future::Future>(call: F) -> (u64, F::Output) {
    let before = ALLOCATED.load(Ordering::SeqCst);
    let out = call.await;
    (ALLOCATED.load(Ordering::SeqCst) - before, out)
}

fn big() -> Vec<u8> {
    (0..64 * MIB).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_borrowed_argument_arrives_intact() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = rpc_tests::TempDir::new();
    for address in [
        format!("unix://{}/bulk.sock", dir.0.display()),
        format!("shm://{}/bulk-shm.sock", dir.0.display()),
        "tcp://127.0.0.1:0".to_owned(),
    ] {
        let (handle, address) = serve(&address).await;
        let client = connect(&address).await;
        let tags = vec!["a".to_owned(), "b".to_owned()];
        let text = client
            .describe("né", &tags, &Point { x: 1, y: -2 }, &[1, 2, 3])
            .await
            .unwrap();
        assert_eq!(text, "né [\"a\", \"b\"] 1,-2 [1, 2, 3]", "{address}");
        let blocking_address = address.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            let client = BulkBlockingClient::connect(&blocking_address).unwrap();
            client
                .describe("x", &[], &Point { x: 0, y: 0 }, &[])
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(blocking, "x [] 0,0 []");
        handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_borrowed_argument_is_not_copied_on_either_side() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let data = big();
    let expected = checksum(&data);
    let dir = rpc_tests::TempDir::new();

    // Shared memory: the payload goes through the mapped bulk region and the server's reused
    // receive buffer, never a fresh allocation.
    let (handle, address) = serve(&format!("shm://{}/bulk.sock", dir.0.display())).await;
    let client = connect(&address).await;
    assert_eq!(client.checksum(&data).await.unwrap(), expected); // warm-up: maps the regions
    let (borrowed, sum) = allocated_during(client.checksum(&data)).await;
    assert_eq!(sum.unwrap(), expected);
    assert!(
        borrowed < 4 * MIB as u64,
        "a 64 MiB &[u8] call over shm allocated {borrowed} bytes"
    );
    let (owned, sum) = allocated_during(client.checksum_owned(data.clone())).await;
    assert_eq!(sum.unwrap(), expected);
    eprintln!("shm, 64 MiB: &[u8] allocated {borrowed} bytes, Vec<u8> {owned} bytes");
    // (The clone is made before the measurement starts: what is counted is the decoded Vec.)
    assert!(
        owned >= 64 * MIB as u64,
        "the owned control (a decoded Vec) allocated only {owned} bytes"
    );
    handle.shutdown().await;

    // A Unix socket: the transport's send and receive buffers, and nothing more.
    let (handle, address) = serve(&format!("unix://{}/bulk2.sock", dir.0.display())).await;
    let client = connect(&address).await;
    assert_eq!(client.checksum(&data).await.unwrap(), expected);
    let (borrowed, sum) = allocated_during(client.checksum(&data)).await;
    assert_eq!(sum.unwrap(), expected);
    let (owned, sum) = allocated_during(client.checksum_owned(data.clone())).await;
    assert_eq!(sum.unwrap(), expected);
    eprintln!("unix, 64 MiB: &[u8] allocated {borrowed} bytes, Vec<u8> {owned} bytes");
    // The owned call allocates the decoded vector on top of the buffers.
    assert!(
        owned >= borrowed + 64 * MIB as u64 - MIB as u64,
        "borrowed {borrowed} bytes, owned {owned} bytes"
    );
    assert!(
        borrowed < 3 * 64 * MIB as u64,
        "a 64 MiB &[u8] call over unix allocated {borrowed} bytes"
    );
    handle.shutdown().await;
}
