//! A client that pipelines calls and never reads a reply: on every transport the server stops
//! reading it once the connection's memory budget is spent, so its resident memory stays
//! within 64 MiB of where it started, and once the client reads, every call it managed to send
//! has its answer (none dropped). The server runs in a process of its own, so its memory is
//! measured alone; the client tries 3,000,000 calls to an async handler. Meanwhile another
//! client of the same server is served as usual, and the server's threads stay few (no
//! thread of a shared pool waits for the stalled peer).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::transport::{Connection, Frame};
use rpc_core::wire::{self, Header, Kind};
use rpc_tests::{
    ProbeClient, ProbeProcess, TempDir, probe_method_id, probe_server_path, raw_probe_connection,
    status_kib, unique_name,
};

/// Calls the client tries to send without reading.
const ATTEMPTED: u64 = 3_000_000;
/// Calls per write.
const BATCH: u64 = 1000;
/// How far the server's peak resident memory may rise above its start.
const BOUND_KIB: u64 = 64 * 1024;
/// How long the client's writes must have made no progress before the server is measured.
const STALLED_FOR: Duration = Duration::from_secs(2);

fn request(call_id: u64) -> Frame {
    let header = Header {
        kind: Kind::Request,
        method: probe_method_id("tag"),
        call_id,
    };
    // `tag(id, 1)` sleeps a millisecond: every call runs as a task, as in the report.
    wire::message_frame(header, None, &(call_id, 1u64)).unwrap()
}

/// `Threads:` of a process.
fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap()
}

/// A well-behaved client of the same server, while the stalled one waits: 100 calls, each
/// answered within 2 s.
async fn bystander(address: &str, label: &str) {
    let probe = tokio::time::timeout(Duration::from_secs(5), ProbeClient::connect(address))
        .await
        .unwrap_or_else(|_| panic!("{label}: a bystander could not connect in 5 s"))
        .unwrap();
    for i in 0..100 {
        let sum = tokio::time::timeout(Duration::from_secs(2), probe.add(i, 1))
            .await
            .unwrap_or_else(|_| panic!("{label}: a bystander's call {i} waited over 2 s"))
            .unwrap();
        assert_eq!(sum, i + 1);
    }
}

/// Runs the attack over `connection` against the server process `pid` and checks its memory
/// and that every call sent is answered exactly once; `address`, when given, is where a
/// bystander connects while the attacker stalls.
async fn attack(connection: Connection, pid: u32, label: &str, address: Option<&str>) {
    let (mut sender, mut receiver, _) = connection.split();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = status_kib(pid, "VmRSS:").unwrap();

    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = tokio::spawn({
        let (sent, stop) = (sent.clone(), stop.clone());
        async move {
            let mut next = 1;
            while next <= ATTEMPTED && !stop.load(Ordering::SeqCst) {
                let frames = (next..next + BATCH).map(request).collect();
                sender
                    .send_all(frames)
                    .await
                    .expect("the server keeps the connection");
                next += BATCH;
                sent.store(next - 1, Ordering::SeqCst);
            }
            sender
        }
    });

    // Wait until the writes stop making progress (the server pushes back), or all went out.
    let give_up = Instant::now() + Duration::from_secs(120);
    let (mut last, mut since) = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sent.load(Ordering::SeqCst);
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if now >= ATTEMPTED || since.elapsed() >= STALLED_FOR {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "{label}: writes neither stalled nor finished"
        );
    }
    if let Some(address) = address {
        bystander(address, label).await;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let server_threads = threads(pid);
    assert!(
        server_threads <= 3 * cpus + 16,
        "{label}: the server runs {server_threads} threads while a client stalls"
    );
    let peak = status_kib(pid, "VmHWM:").unwrap();
    eprintln!(
        "{label}: {last} calls sent unread; server RSS {start} KiB at start, peak {peak} KiB, \
         {server_threads} threads"
    );
    assert!(
        peak.saturating_sub(start) < BOUND_KIB,
        "{label}: server peak RSS {peak} KiB, {} KiB above its start, after {last} unread calls",
        peak - start
    );

    // Now read: every call sent gets exactly one answer.
    stop.store(true, Ordering::SeqCst);
    let mut answered = std::collections::HashSet::new();
    let mut total: Option<u64> = None;
    let mut _sender = None;
    while total.is_none_or(|total| (answered.len() as u64) < total) {
        let received = tokio::select! {
            done = &mut writer, if total.is_none() => {
                _sender = Some(done.unwrap());
                total = Some(sent.load(Ordering::SeqCst));
                continue;
            }
            received = tokio::time::timeout(Duration::from_secs(30), receiver.recv()) => received,
        };
        let frame = received
            .unwrap_or_else(|_| panic!("{label}: answers stopped after {}", answered.len()))
            .unwrap()
            .expect("the connection stays open");
        let parsed = Header::parse(frame.payload()).unwrap();
        assert!(
            matches!(parsed.header.kind, Kind::Response | Kind::Error),
            "{label}: unexpected {:?}",
            parsed.header.kind
        );
        assert!(
            answered.insert(parsed.header.call_id),
            "{label}: call {} answered twice",
            parsed.header.call_id
        );
    }
    let peak = status_kib(pid, "VmHWM:").unwrap();
    eprintln!(
        "{label}: all {} calls answered; server peak {peak} KiB",
        answered.len()
    );
    assert!(
        peak.saturating_sub(start) < BOUND_KIB,
        "{label}: server peak RSS {peak} KiB after the answers were read"
    );
    drop((receiver, _sender));

    // Memory comes back (a spawned server has exited by now).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Some(after) = status_kib(pid, "VmRSS:") else {
        return;
    };
    assert!(
        after.saturating_sub(start) < BOUND_KIB,
        "{label}: server RSS {after} KiB after the client left (start {start} KiB)"
    );
}

/// The attack against a `probe-server` process on `address` (started with `options`);
/// others are served meanwhile and afterwards.
async fn against_process(address: &str, options: &[&str]) {
    let server = ProbeProcess::spawn(&[options, &[address]].concat());
    server.expect_line("listening on");
    attack(
        raw_probe_connection(address, 16 << 20).await,
        server.pid(),
        address,
        Some(address),
    )
    .await;
    let probe = ProbeClient::connect(address).await.unwrap();
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix() {
    let dir = TempDir::new();
    against_process(&format!("unix://{}/slow.sock", dir.0.display()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    against_process(&format!("tcp://127.0.0.1:{port}"), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm() {
    // Served by the runtime's workers, as connections beyond the first few are.
    against_process(
        &format!("shm://{}", unique_name("slow")),
        &["--dedicated-threads", "0"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mmap() {
    let dir = TempDir::new();
    // Served from a thread of its own, as the first connections are.
    against_process(&format!("mmap://{}/slow", dir.0.display()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo() {
    let dir = TempDir::new();
    against_process(&format!("fifo://{}/slow", dir.0.display()), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mq() {
    against_process(&format!("mq://{}", unique_name("slow")), &[]).await;
}

/// The server is the client's own child, over its stdin and stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn() {
    let address = format!("spawn:{} stdio", probe_server_path().display());
    let connection = raw_probe_connection(&address, 16 << 20).await;
    let pid = match connection.peer() {
        rpc_core::PeerInfo::Local { pid: Some(pid), .. } => *pid as u32,
        other => panic!("a spawned server's pid, not {other:?}"),
    };
    attack(connection, pid, "spawn", None).await;
}
