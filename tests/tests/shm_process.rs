//! Shared memory between real processes: kill -9 on either side, idle CPU, /dev/shm hygiene,
//! a peer scribbling over a live segment, the mmap file across restarts, and 64 MiB messages.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use rpc_core::{ClientOptions, RpcError};
use rpc_tests::{ProbeBlockingClient, ProbeClient, ProbeProcess as Process, TempDir, unique_name};

const LIMIT: Duration = Duration::from_secs(20);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn dev_shm() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Address ranges of `pid`'s mappings of shared-memory segments.
fn segment_mappings(pid: &str) -> Vec<(u64, u64)> {
    rpc_tests::mappings_of(pid, "rpc-shm-segment")
}

/// Takes this file's turn: every test here maps segments into this process, and
/// `new_mapping` tells a connection's mapping by what its connect added to this process's
/// maps, which another test connecting or disconnecting meanwhile would change (CI once saw
/// a new connection's segment land where another test's had just been unmapped).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wait_until(condition: impl FnMut() -> bool) -> bool {
    rpc_tests::wait_until(LIMIT, condition)
}

#[test]
fn a_killed_server_fails_pending_calls_at_once_and_leaves_nothing_in_dev_shm() {
    let _turn = one_at_a_time();
    let before = dev_shm();
    let dir = TempDir::new();
    let address = format!("shm://{}/probe.sock", dir.0.display());
    let mut server = Process::server(&address);
    let runtime = runtime();
    let asynchronous = runtime.block_on(ProbeClient::connect(&address)).unwrap();
    let blocking = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(blocking.add(1, 2).unwrap(), 3);
    let pending_async = runtime.spawn({
        let probe = asynchronous.with_timeout(None);
        async move { probe.stall().await }
    });
    let pending_blocking = std::thread::spawn({
        let probe = blocking.with_timeout(None);
        move || (probe.stall(), Instant::now())
    });
    std::thread::sleep(Duration::from_millis(200));
    let killed_at = Instant::now();
    server.kill_9();
    let (outcome, failed_at) = pending_blocking.join().unwrap();
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    let outcome = runtime.block_on(async {
        tokio::time::timeout(LIMIT, pending_async)
            .await
            .unwrap()
            .unwrap()
    });
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    eprintln!(
        "blocking call failed {:?} after kill -9",
        failed_at.duration_since(killed_at)
    );
    assert!(failed_at.duration_since(killed_at) < Duration::from_secs(5));
    assert_eq!(dev_shm(), before, "/dev/shm changed");
    // The client process frees its mappings once its halves are gone.
    drop((asynchronous, blocking));
    let me = std::process::id().to_string();
    assert!(
        wait_until(|| segment_mappings(&me).is_empty()),
        "segments stay mapped after the server died"
    );
    // A restart over the dead server's socket file works.
    let _restarted = Process::server(&address);
    assert_eq!(
        ProbeBlockingClient::connect(&address)
            .unwrap()
            .add(2, 2)
            .unwrap(),
        4
    );
}

#[test]
fn a_killed_client_frees_its_segment_in_the_server() {
    let _turn = one_at_a_time();
    let before = dev_shm();
    let address = format!("shm://{}", unique_name("probe-kill-client"));
    let server = Process::server(&address);
    let server_pid = server.pid().to_string();
    assert!(segment_mappings(&server_pid).is_empty());
    let mut client = Process::spawn(&["--stall", &address]);
    client.expect_line("stalling");
    assert_eq!(segment_mappings(&server_pid).len(), 1);
    client.kill_9();
    assert!(
        wait_until(|| segment_mappings(&server_pid).is_empty()),
        "the server kept the dead client's segment"
    );
    assert_eq!(dev_shm(), before, "/dev/shm changed");
    // The server goes on serving.
    assert_eq!(
        ProbeBlockingClient::connect(&address)
            .unwrap()
            .add(5, 5)
            .unwrap(),
        10
    );
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn ten_idle_connections_cost_the_server_no_cpu() {
    let _turn = one_at_a_time();
    let address = format!("shm://{}", unique_name("probe-idle"));
    let server = Process::server(&address);
    let runtime = runtime();
    let (mut asynchronous, mut blocking) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let probe = runtime.block_on(ProbeClient::connect(&address)).unwrap();
        assert_eq!(runtime.block_on(probe.add(i, 1)).unwrap(), i + 1);
        asynchronous.push(probe);
        let probe = ProbeBlockingClient::connect(&address).unwrap();
        assert_eq!(probe.add(i, 2).unwrap(), i + 2);
        blocking.push(probe);
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.pid().to_string();
    let start = cpu_ticks(&pid);
    std::thread::sleep(Duration::from_secs(5));
    let used = cpu_ticks(&pid) - start;
    // 1% of 5 s is 50 ms: 5 ticks of 10 ms.
    eprintln!("server used {used} clock ticks in 5 s with 10 idle connections");
    assert!(used <= 5, "the idle server used {used} ticks (> 1% CPU)");
    drop((asynchronous, blocking));
}

/// Writes `bytes` at `address` of this process's memory, as a misbehaving peer sharing the
/// mapping would.
fn scribble(address: u64, bytes: &[u8]) {
    let memory = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
        .unwrap();
    memory.write_all_at(bytes, address).unwrap();
}

/// The mapping a new connection adds to this process.
fn new_mapping(connect: impl FnOnce() -> ProbeBlockingClient) -> (ProbeBlockingClient, (u64, u64)) {
    let me = std::process::id().to_string();
    let before: BTreeSet<_> = segment_mappings(&me).into_iter().collect();
    let client = connect();
    let after: BTreeSet<_> = segment_mappings(&me).into_iter().collect();
    let added: Vec<_> = after.difference(&before).copied().collect();
    assert_eq!(added.len(), 1, "expected one new mapping, got {added:?}");
    (client, added[0])
}

#[test]
fn garbage_in_a_live_segment_fails_that_connection_only() {
    let _turn = one_at_a_time();
    const RING: u64 = 256 * 1024;
    const HEADER: u64 = 128;
    const CONTROL: u64 = 512;
    const HEAD: u64 = 0;
    let address = format!("shm://{}", unique_name("probe-hostile"));
    let _server = Process::server(&address);
    let connect = || {
        ProbeBlockingClient::connect_with(
            &address,
            ClientOptions::default().call_timeout(Some(LIMIT)),
        )
        .unwrap()
    };
    let bystander = connect();

    // Each ring's consumer counter is written only by its consumer, which does not look at it
    // again: poisoned, it is the producer that must reject it.
    // The server-to-client ring's consumer counter: the server, replying, must reject it.
    let (victim, (base, _)) = new_mapping(connect);
    assert_eq!(victim.add(1, 1).unwrap(), 2);
    let to_client = base + HEADER + CONTROL + RING;
    scribble(to_client + HEAD, &u64::MAX.to_le_bytes());
    let outcome = victim.add(1, 1);
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    assert_eq!(bystander.add(2, 2).unwrap(), 4);

    // The client-to-server ring's consumer counter: the client, calling, must reject it.
    let (victim, (base, _)) = new_mapping(connect);
    assert_eq!(victim.add(1, 1).unwrap(), 2);
    scribble(base + HEADER + HEAD, &(1u64 << 40).to_le_bytes());
    let outcome = victim.add(1, 1);
    match &outcome {
        Err(RpcError::Disconnected { reason }) => {
            assert!(reason.contains("corrupted"), "{reason}")
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
    assert_eq!(bystander.add(3, 3).unwrap(), 6);

    // Random bytes over the whole segment, header and both rings.
    let (victim, (base, end)) = new_mapping(connect);
    assert_eq!(victim.add(1, 1).unwrap(), 2);
    let mut noise = vec![0u8; (end - base) as usize];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for byte in noise.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    scribble(base, &noise);
    let outcome = victim.add(1, 1);
    assert!(
        outcome.is_err(),
        "a call through a scribbled segment succeeded: {outcome:?}"
    );
    assert!(
        matches!(
            outcome,
            Err(RpcError::Disconnected { .. } | RpcError::DeadlineExceeded { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(bystander.add(4, 4).unwrap(), 8);
    assert_eq!(
        connect().add(5, 5).unwrap(),
        10,
        "the server stopped accepting"
    );
}

#[test]
fn the_mmap_file_survives_restarts_as_documented() {
    let _turn = one_at_a_time();
    let dir = TempDir::new();
    let file = dir.0.join("segments");
    let address = format!("mmap://{}", file.display());
    let header = || {
        rpc_core::transport::shm::read_header(&std::fs::File::open(&file).unwrap())
            .unwrap()
            .expect("a valid header")
    };
    let mut server = Process::server(&address);
    let first = ProbeBlockingClient::connect(&address).unwrap();
    let second = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(first.add(1, 2).unwrap() + second.add(3, 4).unwrap(), 10);
    let written = header();
    assert_eq!(written.slot_count, 2);
    assert_eq!(
        written.capacity as usize,
        rpc_core::transport::DEFAULT_SHM_RING_CAPACITY
    );

    server.kill_9();
    drop((first, second));
    assert_eq!(header(), written, "kill -9 changed the file header");

    let mut server = Process::server(&address);
    assert_eq!(
        header(),
        written,
        "a restart over a compatible file keeps it"
    );
    let again = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(again.add(20, 22).unwrap(), 42);
    assert_eq!(header().slot_count, 2, "a freed slot is reused");
    drop(again);
    assert!(server.terminate().success());
    assert!(file.exists(), "the data file is the user's and stays");
    let socket = format!("{}.sock", file.display());
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the rendezvous socket is removed"
    );

    // A file that is not a segment file is replaced, not trusted.
    std::fs::write(&file, b"not a segment file").unwrap();
    let _server = Process::server(&address);
    assert_eq!(header().slot_count, 0);
    assert_eq!(
        ProbeBlockingClient::connect(&address)
            .unwrap()
            .add(1, 1)
            .unwrap(),
        2
    );
}

#[test]
fn a_64_mib_echo_crosses_without_raising_the_ring_size() {
    let _turn = one_at_a_time();
    let address = format!("shm://{}", unique_name("probe-big"));
    let _server = Process::server(&address);
    let options = ClientOptions::default().max_frame_size(128 * 1024 * 1024);
    let payload: Vec<u8> = (0..64 * 1024 * 1024).map(|i| (i % 253) as u8).collect();
    let blocking = ProbeBlockingClient::connect_with(&address, options.clone()).unwrap();
    assert_eq!(blocking.echo(payload.clone()).unwrap(), payload);
    let runtime = runtime();
    let echoed = runtime.block_on(async {
        let probe = ProbeClient::connect_with(&address, options).await.unwrap();
        probe.echo(payload.clone()).await.unwrap()
    });
    assert_eq!(echoed, payload);
}

#[test]
fn a_full_ring_is_backpressure_and_loses_nothing() {
    let _turn = one_at_a_time();
    // A 4 KiB ring: 200 concurrent 900-byte echoes cannot all fit, so senders must wait for
    // space (both directions), and every reply must still match its request.
    let dir = TempDir::new();
    let address = format!("shm://{}/small-ring.sock", dir.0.display());
    let runtime = runtime();
    runtime.block_on(async {
        let mut config = rpc_core::ServerConfig::default();
        config.transport =
            rpc_core::transport::TransportConfig::default().with_shm_ring_capacity(4096);
        let server = rpc_core::Server::with_config(config)
            .start(
                rpc_tests::ProbeServer::new(rpc_tests::ProbeImpl::default()),
                &[&address],
            )
            .await
            .unwrap();
        let probe = ProbeClient::connect(&address).await.unwrap();
        let calls: Vec<_> = (0..200u32)
            .map(|i| {
                let probe = probe.clone();
                tokio::spawn(async move {
                    let payload = vec![(i % 251) as u8; 900];
                    let echoed = probe.echo(payload.clone()).await.unwrap();
                    assert_eq!(echoed, payload, "call {i} got another call's reply");
                })
            })
            .collect();
        for call in calls {
            tokio::time::timeout(LIMIT, call).await.unwrap().unwrap();
        }
        // Over a quarter of the ring, messages go through bulk regions: 64 of them in flight
        // exceed what the sender may have unreleased, so it must wait rather than fail.
        let calls: Vec<_> = (0..64u32)
            .map(|i| {
                let probe = probe.clone();
                tokio::spawn(async move {
                    let payload = vec![(i % 251) as u8; 2000 + i as usize];
                    let echoed = probe.echo(payload.clone()).await.unwrap();
                    assert_eq!(echoed, payload, "large call {i} got another call's reply");
                })
            })
            .collect();
        for call in calls {
            tokio::time::timeout(LIMIT, call).await.unwrap().unwrap();
        }
        // Blocking clients share the same small ring size.
        let blocking = tokio::task::spawn_blocking({
            let address = address.clone();
            move || {
                let probe = ProbeBlockingClient::connect(&address).unwrap();
                let big = vec![3u8; 3000];
                assert_eq!(probe.echo(big.clone()).unwrap(), big);
            }
        });
        tokio::time::timeout(LIMIT, blocking)
            .await
            .unwrap()
            .unwrap();
        server.shutdown().await;
    });
}
