//! `sysv-shm://` between real processes: after a connection closes, after `kill -9` of the
//! server or of a client, and after a server killed at random moments while clients connect,
//! no System V segment of ours is left (`/proc/sysvipc/shm`, what `ipcs -m` reads).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rpc_core::RpcError;
use rpc_tests::{ProbeBlockingClient, ProbeClient, ProbeProcess as Process, unique_name};

const LIMIT: Duration = Duration::from_secs(20);

/// `SHM_DEST` in a segment's mode: marked for removal, gone with its last detach.
const SHM_DEST: u32 = 0o1000;

/// One line of `/proc/sysvipc/shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    key: i64,
    id: i32,
    mode: u32,
    creator: u32,
    attached: u64,
}

fn segments() -> Vec<Segment> {
    std::fs::read_to_string("/proc/sysvipc/shm")
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Segment {
                key: f[0].parse().unwrap(),
                id: f[1].parse().unwrap(),
                mode: u32::from_str_radix(f[2], 8).unwrap(),
                creator: f[4].parse().unwrap(),
                attached: f[6].parse().unwrap(),
            }
        })
        .collect()
}

fn segment(id: i32) -> Option<Segment> {
    segments().into_iter().find(|s| s.id == id)
}

/// Segments created by process `pid`.
fn created_by(pid: u32) -> Vec<Segment> {
    segments()
        .into_iter()
        .filter(|s| s.creator == pid)
        .collect()
}

/// The ids of the System V segments `pid` has attached (in its maps such a mapping is named
/// `/SYSV<key>`, and its inode is the segment's id).
fn attached_by(pid: u32) -> BTreeSet<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("/SYSV"))
        .filter_map(|line| line.split_whitespace().nth(4)?.parse().ok())
        .collect()
}

fn wait_until(condition: impl FnMut() -> bool) -> bool {
    rpc_tests::wait_until(LIMIT, condition)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Checks that each of `ids` is attached by server and client, marked, and keyless.
fn assert_shared_and_marked(ids: &BTreeSet<i32>) {
    for &id in ids {
        // A probe server that another test forks at this moment shares our attachments until
        // it execs.
        assert!(
            wait_until(|| segment(id).is_some_and(|s| s.attached == 2)),
            "{:?}",
            segment(id)
        );
        let s = segment(id).unwrap_or_else(|| panic!("segment {id} is not listed"));
        assert_ne!(s.mode & SHM_DEST, 0, "not marked for removal: {s:?}");
        assert_eq!(s.mode & 0o777, 0o600, "{s:?}");
        assert_eq!(s.key, 0, "a marked segment keeps no key: {s:?}");
    }
}

#[test]
fn a_closed_connection_and_a_stopped_server_leave_no_segment() {
    let address = format!("sysv-shm://{}", unique_name("sysv-close"));
    let mut server = Process::server(&address);
    let pid = server.pid();
    let me = std::process::id();
    let probe = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(probe.add(1, 2).unwrap(), 3);
    let ids = attached_by(pid);
    assert_eq!(ids.len(), 1, "one segment per connection: {ids:?}");
    // Contains, not equals: other tests of this binary attach segments in this process too.
    assert!(
        attached_by(me).is_superset(&ids),
        "the client attached the server's segment"
    );
    assert_shared_and_marked(&ids);
    let id = *ids.first().unwrap();
    drop(probe);
    assert!(
        wait_until(|| segment(id).is_none()),
        "{:?} outlived its connection",
        segment(id)
    );
    // Connected when the server stops (SIGTERM): the client's detach frees it.
    let probe = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(probe.add(2, 2).unwrap(), 4);
    assert!(server.terminate().success());
    drop(probe);
    assert!(
        wait_until(|| created_by(pid).is_empty()),
        "left: {:?}",
        created_by(pid)
    );
}

#[test]
fn a_killed_server_fails_pending_calls_and_leaves_no_segment() {
    let address = format!("sysv-shm://{}", unique_name("sysv-kill-server"));
    let mut server = Process::server(&address);
    let pid = server.pid();
    let runtime = runtime();
    let asynchronous = runtime.block_on(ProbeClient::connect(&address)).unwrap();
    let blocking = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(blocking.add(1, 2).unwrap(), 3);
    assert_eq!(runtime.block_on(asynchronous.add(3, 4)).unwrap(), 7);
    let ids = attached_by(pid);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_shared_and_marked(&ids);
    let pending = std::thread::spawn({
        let probe = blocking.with_timeout(None);
        move || probe.stall()
    });
    std::thread::sleep(Duration::from_millis(200));
    let killed_at = Instant::now();
    server.kill_9();
    let outcome = pending.join().unwrap();
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    // Only our attachments keep them now; dropping the clients frees them.
    drop((asynchronous, blocking));
    assert!(
        wait_until(|| created_by(pid).is_empty()),
        "left after kill -9 of the server: {:?}",
        created_by(pid)
    );
    // A restart over the dead server's socket file works.
    let _restarted = Process::server(&address);
    let probe = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(probe.add(2, 2).unwrap(), 4);
}

#[test]
fn a_killed_client_leaves_no_segment() {
    let address = format!("sysv-shm://{}", unique_name("sysv-kill-client"));
    let server = Process::server(&address);
    let pid = server.pid();
    let mut client = Process::spawn(&["--stall", &address]);
    client.expect_line("stalling");
    let ids = attached_by(pid);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(attached_by(client.pid()), ids);
    assert_shared_and_marked(&ids);
    client.kill_9();
    assert!(
        wait_until(|| created_by(pid).is_empty()),
        "left after kill -9 of the client: {:?}",
        created_by(pid)
    );
    // The server goes on serving.
    let probe = ProbeBlockingClient::connect(&address).unwrap();
    assert_eq!(probe.add(5, 5).unwrap(), 10);
}

/// A server killed at some moment while clients keep connecting: wherever in a hand-over the
/// kill lands, nothing of its is left once its clients are gone and the next `sysv-shm`
/// server has started (which removes what a kill between `shmget` and `IPC_RMID` would leave).
#[test]
fn a_server_killed_while_clients_connect_leaves_nothing() {
    for round in 0..5u64 {
        let address = format!("sysv-shm://{}", unique_name("sysv-kill-busy"));
        let mut server = Process::server(&address);
        let pid = server.pid();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connecting = std::thread::spawn({
            let (address, stop) = (address.clone(), stop.clone());
            move || {
                let mut connected = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(probe) = ProbeBlockingClient::connect(&address) {
                        connected += 1;
                        drop(probe);
                    }
                }
                connected
            }
        });
        std::thread::sleep(Duration::from_millis(50 + 37 * round));
        server.kill_9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let connected = connecting.join().unwrap();
        eprintln!("round {round}: {connected} connections before the kill");
        let _next = Process::server(&format!("sysv-shm://{}", unique_name("sysv-next")));
        assert!(
            wait_until(|| created_by(pid).is_empty()),
            "round {round}: left by the killed server: {:?}",
            created_by(pid)
        );
    }
}

/// Clients killed at moments spread over their connecting (before, during and after the
/// hand-over of the segment and the RPC handshake): the server lets go of every segment it
/// made for them, and goes on serving.
#[test]
fn clients_killed_while_connecting_leave_nothing() {
    let address = format!("sysv-shm://{}", unique_name("sysv-kill-connecting"));
    let server = Process::server(&address);
    let pid = server.pid();
    for round in 0..16u64 {
        let mut client = Process::spawn(&["--stall", &address]);
        std::thread::sleep(Duration::from_millis(round * 3));
        client.kill_9();
    }
    assert!(
        wait_until(|| created_by(pid).is_empty() && attached_by(pid).is_empty()),
        "left by killed clients: {:?}, attached by the server: {:?}",
        created_by(pid),
        attached_by(pid)
    );
    // Served still (by a client in a process of its own: other tests here count the
    // segments this process attaches).
    let client = Process::spawn(&["--stall", &address]);
    client.expect_line("stalling");
}
