//! Tests of `sysv-shm://`: the segment's lifecycle, the orphan sweep, the checks on a segment
//! handed over, and the system limits (in a private IPC namespace).
//!
//! The process-level cases (a server or client killed with SIGKILL, another user refused) are
//! in `tests/tests/sysv_shm_process.rs` and `tests/tests/access_sysv_shm.rs` of `rpc-tests`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::ipc::{self, SHM_DEST};
use super::{create_segment, is_our_key, listed_segments, next_key, open_segment, sweep};
use crate::shm::segment::segment_len;
use crate::{Address, Frame, Listener, TransportConfig, TransportError, connect};

/// The tests that look at this process's segments run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const LIMIT: Duration = Duration::from_secs(10);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn address(tag: &str) -> Address {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("sysv-shm://sysv-test-{tag}-{}-{n}", std::process::id())
        .parse()
        .unwrap()
}

/// The ids of the System V segments attached to this process: in `/proc/self/maps` such a
/// mapping is named `/SYSV<key>` and its inode is the segment's id.
fn attached_ids() -> BTreeSet<i32> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|line| line.contains("/SYSV"))
        .filter_map(|line| line.split_whitespace().nth(4)?.parse().ok())
        .collect()
}

/// The segments of ours (by key) this process created and has not marked yet.
fn unmarked_of_ours() -> Vec<i32> {
    let me = std::process::id() as i32;
    listed_segments()
        .into_iter()
        .filter(|&(key, _, _, creator, _, _)| is_our_key(key) && creator == me)
        .map(|(_, id, ..)| id)
        .collect()
}

fn gone(id: i32) -> bool {
    ipc::stat(id).is_err() && !listed_segments().iter().any(|s| s.1 == id)
}

fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// Removes the segments it names when dropped, so a failed test leaves none.
struct Remove(Vec<i32>);

impl Drop for Remove {
    fn drop(&mut self) {
        for &id in &self.0 {
            let _ = ipc::mark_removed(id);
        }
    }
}

#[test]
fn a_connection_shares_one_marked_segment_and_frees_it_on_close() {
    let _serial = serial();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(one_connection_life());
}

async fn one_connection_life() {
    let config = TransportConfig::default().with_shm_ring_capacity(4096);
    let address = address("life");
    let listener = Listener::bind(&address, &config).await.unwrap();
    let before = attached_ids();
    let (client, server) = tokio::join!(connect(&address, &config), listener.accept());
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    // A small message in the ring, and one past a quarter of it (a memfd bulk region).
    for len in [16, 100_000] {
        let payload = vec![7u8; len];
        client.send(Frame::from_payload(&payload)).await.unwrap();
        assert_eq!(server.recv().await.unwrap().unwrap().payload(), payload);
        server.send(Frame::from_payload(&payload)).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap().payload(), payload);
    }
    let added: Vec<i32> = attached_ids().difference(&before).copied().collect();
    assert_eq!(
        added.len(),
        1,
        "one System V segment per connection: {added:?}"
    );
    let id = added[0];
    // A child that another test forks at this moment shares our attachments until it execs.
    assert!(
        wait_until(|| ipc::stat(id).is_ok_and(|stat| stat.attached == 2)),
        "server and client attached: {:?}",
        ipc::stat(id)
    );
    let stat = ipc::stat(id).unwrap();
    assert_ne!(stat.mode & SHM_DEST, 0, "marked for removal: {stat:?}");
    assert_eq!(stat.mode & 0o777, 0o600);
    assert_eq!(stat.key, 0, "a marked segment has no key left: {stat:?}");
    assert_eq!(stat.size, segment_len(4096));
    assert!(unmarked_of_ours().is_empty(), "{:?}", unmarked_of_ours());

    drop((client, server));
    assert!(
        wait_until(|| gone(id) && !attached_ids().contains(&id)),
        "segment {id} outlived its connection: {:?}",
        ipc::stat(id)
    );

    // The blocking client holds and frees its segment the same way.
    let before = attached_ids();
    let blocking = tokio::task::spawn_blocking({
        let (address, config) = (address.clone(), config.clone());
        move || crate::connect_blocking(&address, &config, LIMIT)
    });
    let mut server = listener.accept().await.unwrap();
    let mut blocking = blocking.await.unwrap().unwrap();
    server.send(Frame::from_payload(b"hi")).await.unwrap();
    let deadline = crate::Deadline::At(Instant::now() + LIMIT);
    assert_eq!(blocking.recv(deadline).unwrap().unwrap().payload(), b"hi");
    let added: Vec<i32> = attached_ids().difference(&before).copied().collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(
        wait_until(|| ipc::stat(added[0]).is_ok_and(|stat| stat.attached == 2)),
        "{:?}",
        ipc::stat(added[0])
    );
    drop((blocking, server, listener));
    assert!(
        wait_until(|| gone(added[0])),
        "the blocking client's segment stayed"
    );
}

#[test]
fn a_segment_handed_over_is_checked_before_use() {
    let _serial = serial();
    let own = nix::unistd::geteuid().as_raw();
    let len = segment_len(4096);
    let (segment, id) = create_segment(4096).unwrap();
    assert!(open_segment(id, len, own).is_ok());
    let refused = |id, len, uid| open_segment(id, len, uid).err().unwrap().to_string();
    let other = own.wrapping_add(4242);
    assert!(
        refused(id, len, other).contains(&format!("not by the server's uid {other}")),
        "{}",
        refused(id, len, other)
    );
    assert!(refused(id, len + 1, own).contains("not the"));
    drop(segment);
    assert!(wait_until(|| gone(id)));

    // Not marked for removal, or open to others: refused.
    let unmarked = ipc::get(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600).unwrap();
    let _cleanup = Remove(vec![unmarked]);
    assert!(refused(unmarked, len, own).contains("not marked for removal"));
    // Marked with nothing attached, a segment is gone at once: this one stays attached.
    let open = {
        let open = ipc::get(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o644).unwrap();
        let held = ipc::SysvAttachment::attach(open).unwrap();
        ipc::mark_removed(open).unwrap();
        (open, held)
    };
    assert!(refused(open.0, len, own).contains("has mode 644"));
    // A segment that is not ours at all: an id that does not exist.
    assert!(open_segment(i32::MAX, len, own).is_err());
}

/// Run as a child by the sweep test: creates a segment with a key of ours and one without,
/// attaches neither, prints their ids and exits, as a server killed between `shmget` and
/// `IPC_RMID` would.
#[test]
fn leaves_segments_behind() {
    if std::env::var_os(LEAVE_ENV).is_none() {
        return;
    }
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
    let ours = ipc::get(next_key(), segment_len(4096), flags).unwrap();
    let other = ipc::get(libc::IPC_PRIVATE, segment_len(4096), flags).unwrap();
    // Another program's segments whose keys happen to fall in our range (an `ftok` key can),
    // left on purpose for a later process to attach: not of our size, or not of our mode.
    let foreign_size = ipc::get(next_key(), 1 << 20, flags).unwrap();
    let foreign_mode = ipc::get(
        next_key(),
        segment_len(4096),
        libc::IPC_CREAT | libc::IPC_EXCL | 0o640,
    )
    .unwrap();
    println!("LEFT {ours} {other} {foreign_size} {foreign_mode}");
}

const LEAVE_ENV: &str = "RPC_SYSV_LEAVE_SEGMENTS";

#[test]
fn the_sweep_removes_what_a_killed_creator_left_and_nothing_else() {
    if std::env::var_os(LEAVE_ENV).is_some() {
        return;
    }
    let _serial = serial();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "shm::sysv::tests::leaves_segments_behind",
            "--exact",
            "--nocapture",
        ])
        .env(LEAVE_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let ids: Vec<i32> = stdout
        .lines()
        .find_map(|line| line.strip_prefix("LEFT "))
        .unwrap_or_else(|| panic!("the child printed no ids:\n{stdout}"))
        .split_whitespace()
        .map(|id| id.parse().unwrap())
        .collect();
    let (ours, other, foreign_size, foreign_mode) = (ids[0], ids[1], ids[2], ids[3]);
    // One of ours whose creator (this process) lives, not attached yet: it must stay.
    let living = ipc::get(
        next_key(),
        segment_len(4096),
        libc::IPC_CREAT | libc::IPC_EXCL | 0o600,
    )
    .unwrap();
    let _cleanup = Remove(vec![ours, other, living, foreign_size, foreign_mode]);
    assert_eq!(ipc::stat(ours).unwrap().attached, 0);

    assert!(sweep() >= 1);
    assert!(
        gone(ours),
        "the orphan of ours stayed: {:?}",
        ipc::stat(ours)
    );
    assert!(ipc::stat(other).is_ok(), "a segment not ours was removed");
    assert!(
        ipc::stat(living).is_ok(),
        "a living creator's segment was removed"
    );
    assert!(
        ipc::stat(foreign_size).is_ok(),
        "a segment in our key range but of no size of ours was removed"
    );
    assert!(
        ipc::stat(foreign_mode).is_ok(),
        "a segment in our key range but not of mode 0600 was removed"
    );
}

/// Writes `value` to `/proc/sys/kernel/NAME` (of the calling thread's IPC namespace).
fn set_sysctl(name: &str, value: u64) {
    std::fs::write(format!("/proc/sys/kernel/{name}"), value.to_string()).unwrap();
}

#[test]
fn system_limits_are_named_with_their_values() {
    // In a thread of its own, moved to an IPC namespace of its own: its limits and segments
    // are private, and go with the thread.
    std::thread::spawn(|| {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC) {
            eprintln!("SKIPPED: no private IPC namespace ({e}): needs CAP_SYS_ADMIN");
            return;
        }
        let limit = |error: TransportError| match error {
            TransportError::LimitReached { limit, detail } => (limit, detail),
            other => panic!("expected a named limit, got {other:?}"),
        };
        set_sysctl("shmmni", 2);
        let held = [create_segment(4096).unwrap(), create_segment(4096).unwrap()];
        let (name, detail) = limit(create_segment(4096).err().unwrap());
        assert_eq!(name, "kernel.shmmni");
        assert!(detail.contains("kernel.shmmni is 2"), "{detail}");

        // A client of a server at that limit is told which.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(async {
            let config = TransportConfig::default().with_shm_ring_capacity(4096);
            let address = address("limit");
            let listener = Listener::bind(&address, &config).await.unwrap();
            let accepting = tokio::spawn(async move { listener.accept().await.map(drop) });
            let outcome = tokio::time::timeout(LIMIT, connect(&address, &config)).await;
            accepting.abort();
            outcome.expect("the client got an answer").err().unwrap()
        });
        assert_eq!(limit(outcome).0, "kernel.shmmni");
        drop(held);

        set_sysctl("shmall", 1);
        let (name, detail) = limit(create_segment(4096).err().unwrap());
        assert_eq!(name, "kernel.shmall");
        assert!(detail.contains("1 pages"), "{detail}");
        set_sysctl("shmall", 1 << 20);

        set_sysctl("shmmax", 4096);
        let (name, detail) = limit(create_segment(4096).err().unwrap());
        assert_eq!(name, "kernel.shmmax");
        assert!(detail.contains("kernel.shmmax is 4096"), "{detail}");
    })
    .join()
    .unwrap();
}

#[test]
fn only_our_user_or_root_is_trusted() {
    let own = nix::unistd::geteuid().as_raw();
    assert!(super::same_user(own) && super::same_user(0));
    assert!(super::require_trusted_server(own).is_ok());
    let stranger = if own == 65534 { 65533 } else { 65534 };
    assert!(!super::same_user(stranger));
    let error = super::require_trusted_server(stranger).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(
        error.to_string().contains("uid 65534") || own == 65534,
        "{error}"
    );
}

/// `sysv-shm://NAME` and `shm://` addresses are different addresses whatever the name: they
/// never share a rendezvous socket (`shm://x.sysv` and `sysv-shm://x` used to, so the second
/// could not bind, and a client of one reached the server of the other).
#[test]
fn names_of_the_two_schemes_never_meet() {
    let tag = format!("meet-{}", std::process::id());
    let sysv: Address = format!("sysv-shm://{tag}").parse().unwrap();
    let plain: Address = format!("shm://{tag}.sysv").parse().unwrap();
    assert_ne!(
        crate::shm::socket_path(&sysv).unwrap(),
        crate::shm::socket_path(&plain).unwrap()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = TransportConfig::default().with_shm_ring_capacity(4096);
        let _plain = Listener::bind(&plain, &config).await.unwrap();
        let _sysv = Listener::bind(&sysv, &config)
            .await
            .expect("sysv-shm://x binds beside shm://x.sysv");
    });
}

#[test]
fn keys_are_ours_and_vary() {
    let keys: BTreeSet<i32> = (0..64).map(|_| next_key()).collect();
    assert!(keys.len() > 32, "{keys:?}");
    assert!(keys.iter().all(|&k| is_our_key(k) && k > 0));
    assert!(!is_our_key(0) && !is_our_key(0x1234_5678));
}
