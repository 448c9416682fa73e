//! `sysv-mq://` against hostile neighbours and sudden deaths, with real processes: another
//! user's silent connections, a ledger directory squatted by another user or holding hostile
//! records, a server stopped or killed in the middle of a handshake, raw clients that vanish
//! after the transport hello, and many connections made and dropped (threads and queues
//! counted). Everything runs one test at a time: threads and queues are counted.

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rpc_core::{ClientOptions, Server};
use rpc_tests::stranger::{STRANGER, StrangerBinary};
use rpc_tests::{
    ProbeBlockingClient, ProbeClient, ProbeImpl, ProbeServer, TempDir, bounded, eventually,
    probe_server_path, unique_name,
};

const LIMIT: Duration = Duration::from_secs(20);

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// The ids of every System V queue.
fn listed() -> Vec<i32> {
    std::fs::read_to_string("/proc/sysvipc/msg")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

async fn assert_gone(ids: &[i32], what: &str) {
    let gone = eventually(LIMIT, || listed().iter().all(|id| !ids.contains(id))).await;
    assert!(gone, "{what}: queues {ids:?} still listed: {:?}", listed());
}

/// The queues recorded in ledger records of process `pid` in `dir`.
fn recorded(dir: &Path, pid: u32) -> Vec<i32> {
    let prefix = format!("{pid}-");
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .flat_map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .filter_map(|l| l.split_once(' ')?.0.parse().ok())
                        .collect::<Vec<i32>>()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The default ledger directory of this user (no `XDG_RUNTIME_DIR` of ours here, or it).
fn default_ledger() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base)
            if std::fs::metadata(&base)
                .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0) =>
        {
            Path::new(&base).join("rpc-sysv-mq")
        }
        _ => std::env::temp_dir().join(format!("rpc-sysv-mq-{uid}")),
    }
}

/// A `probe-server` child serving `address` with its temporary directory at `tmpdir` (so its
/// ledger is `tmpdir/rpc-sysv-mq-UID`) and its address space limited to `memory` bytes;
/// killed on drop.
struct ProbeChild {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ProbeChild {
    fn spawn(address: &str, tmpdir: Option<&Path>, memory: Option<u64>) -> ProbeChild {
        let mut command = Command::new(probe_server_path());
        command
            .arg(address)
            .env_remove("XDG_RUNTIME_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(dir) = tmpdir {
            command.env("TMPDIR", dir);
        }
        if let Some(bytes) = memory {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_AS,
                        bytes,
                        bytes,
                    )
                    .map_err(std::io::Error::from)
                });
            }
        }
        let mut child = command.spawn().expect("spawn probe-server");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        ProbeChild { child, lines }
    }

    /// Whether it printed `listening on` within `limit`.
    fn listens_within(&self, limit: Duration) -> bool {
        self.lines
            .recv_timeout(limit)
            .is_ok_and(|line| line.starts_with("listening on"))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).unwrap();
    }
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- another user ---------------------------------------------------------------------

/// In the child: when the variable names a socket, connect to it as the stranger, say nothing,
/// and print how long until the server answered or closed, and how many bytes it sent.
#[test]
fn stranger_silent_child() {
    let Ok(name) = std::env::var("SYSV_MQ_ATTACKS_SILENT") else {
        return;
    };
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    let mut socket = std::os::unix::net::UnixStream::connect_addr(&address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    println!(
        "SILENT {} {}",
        started.elapsed().as_millis(),
        String::from_utf8_lossy(&answer).trim_matches('\0')
    );
}

/// Another user's connection that never says hello is refused at once, with the reason,
/// rather than holding a task and a descriptor of the server for the 5 s a hello may take
/// (anyone may connect to the abstract socket: a flood of them cost the server only its own
/// user's clients would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_silent_connection_is_refused_at_once() {
    let _serial = serial().await;
    let Some(stranger) = StrangerBinary::new("sysv-mq-attacks-child", "UNUSED_VARIABLE") else {
        return;
    };
    let name = unique_name("silent");
    let handle = Server::new()
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &[&format!("sysv-mq://{name}")],
        )
        .await
        .unwrap();
    let socket = format!("rpc-sysv-mq/{name}");
    let lines = stranger
        .run(
            "stranger_silent_child",
            &[("SYSV_MQ_ATTACKS_SILENT", &socket)],
            "SILENT",
        )
        .await;
    let (millis, answer) = lines[0].split_once(' ').unwrap();
    let millis: u64 = millis.parse().unwrap();
    assert!(
        millis < 1000,
        "the server held the stranger for {millis} ms"
    );
    assert!(
        answer.contains(&format!("uid {STRANGER}")),
        "the refusal says why: {answer:?}"
    );
    handle.shutdown().await;
}

// --- the ledger -----------------------------------------------------------------------

/// A ledger directory of our uid in `tmpdir`, as a server whose `TMPDIR` it is makes it.
fn private_ledger(tmpdir: &Path) -> PathBuf {
    let dir = tmpdir.join(format!("rpc-sysv-mq-{}", nix::unistd::geteuid().as_raw()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// `/tmp/rpc-sysv-mq-UID` is where the ledger goes without an `XDG_RUNTIME_DIR` (a service's
/// usual case), and any user may create it first. A server then still serves (without a
/// ledger, saying so), rather than refusing to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_directory_squatted_by_another_user_does_not_stop_a_server() {
    let _serial = serial().await;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: not root, cannot make a directory of another user");
        return;
    }
    let tmp = TempDir::new();
    std::fs::set_permissions(&tmp.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let squatted = tmp
        .0
        .join(format!("rpc-sysv-mq-{}", nix::unistd::geteuid().as_raw()));
    std::fs::create_dir(&squatted).unwrap();
    std::fs::set_permissions(&squatted, std::fs::Permissions::from_mode(0o777)).unwrap();
    nix::unistd::chown(
        &squatted,
        Some(nix::unistd::Uid::from_raw(STRANGER)),
        Some(nix::unistd::Gid::from_raw(STRANGER)),
    )
    .unwrap();
    let address = format!("sysv-mq://{}", unique_name("squatted"));
    let server = ProbeChild::spawn(&address, Some(&tmp.0), None);
    assert!(
        server.listens_within(Duration::from_secs(10)),
        "a server whose ledger directory another user made refused to start"
    );
    let probe = bounded(LIMIT, "connect", ProbeClient::connect(&address))
        .await
        .unwrap();
    assert_eq!(probe.add(2, 2).await.unwrap(), 4);
    assert!(
        std::fs::read_dir(&squatted).unwrap().next().is_none(),
        "nothing written into the other user's directory"
    );
    drop(probe);
    drop(server);
}

/// Records that are not plain files of ours (a FIFO, which blocks a reader forever; a
/// symbolic link to `/dev/zero`, which never ends; a directory) are skipped by the next
/// server's reclaim, which must neither hang nor exhaust its memory; a symbolic link to a
/// file naming a live queue of ours does not get that queue removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ledger_records_neither_hang_nor_exhaust_the_next_server() {
    let _serial = serial().await;
    let tmp = TempDir::new();
    let ledger = private_ledger(&tmp.0);
    // A pid that is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    nix::unistd::mkfifo(
        &ledger.join(format!("{pid}-1-00000000000000aa")),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/dev/zero",
        ledger.join(format!("{pid}-2-00000000000000bb")),
    )
    .unwrap();
    std::fs::create_dir(ledger.join(format!("{pid}-3-00000000000000cc"))).unwrap();
    std::fs::write(ledger.join("garbage name"), "1 2\n").unwrap();
    // A live queue of ours, named by a file elsewhere that a record links to.
    // SAFETY: msgget takes no pointer.
    let live = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
    assert!(live >= 0);
    let mut ds: libc::msqid_ds = unsafe {
        // SAFETY: an all-zero msqid_ds is valid (integers only).
        std::mem::zeroed()
    };
    // SAFETY: `ds` is a valid, writable msqid_ds that outlives the call.
    assert_eq!(unsafe { libc::msgctl(live, libc::IPC_STAT, &mut ds) }, 0);
    let elsewhere = tmp.0.join("elsewhere");
    #[allow(clippy::unnecessary_cast)]
    std::fs::write(&elsewhere, format!("{live} {}\n", ds.msg_ctime as i64)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, ledger.join(format!("{pid}-4-00000000000000dd")))
        .unwrap();

    let address = format!("sysv-mq://{}", unique_name("hostile-ledger"));
    // At most 4 GiB of address space: a reclaim reading /dev/zero fails instead of taking the
    // machine's memory.
    let server = ProbeChild::spawn(&address, Some(&tmp.0), Some(4 << 30));
    let listening = server.listens_within(Duration::from_secs(10));
    let live_left = listed().contains(&live);
    // Unblock a reader stuck on the FIFO, whatever happened.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags_nonblock()
        .open(ledger.join(format!("{pid}-1-00000000000000aa")));
    drop(server);
    // SAFETY: IPC_RMID reads no buffer.
    unsafe { libc::msgctl(live, libc::IPC_RMID, std::ptr::null_mut()) };
    assert!(listening, "the next server never listened");
    assert!(
        live_left,
        "a record linking elsewhere got a live queue removed"
    );
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}

impl NonBlock for std::fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

// --- deaths during the handshake ------------------------------------------------------

/// A client of a stopped server (its backlog takes the connection, nobody answers) gives up at
/// its connect timeout, async and blocking; once the server runs again it finds those clients
/// gone and keeps no queue for them; killed then, it leaves none either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_stopped_server_give_up_in_time_and_leave_nothing() {
    use nix::sys::signal::Signal;
    let _serial = serial().await;
    let address = format!("sysv-mq://{}", unique_name("stopped"));
    let server = ProbeChild::spawn(&address, None, None);
    assert!(server.listens_within(LIMIT));
    server.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let options = ClientOptions::default().connect_timeout(Duration::from_millis(500));
    let outcome = bounded(
        LIMIT,
        "connect",
        ProbeClient::connect_with(&address, options.clone()),
    )
    .await;
    assert!(outcome.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let blocking = {
        let address = address.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let outcome = ProbeBlockingClient::connect_with(&address, options).map(drop);
            (outcome.is_err(), started.elapsed())
        })
    };
    let (failed, took) = bounded(LIMIT, "blocking connect", blocking).await.unwrap();
    assert!(failed && took < Duration::from_secs(3), "{took:?}");
    server.signal(Signal::SIGCONT);
    // It answers the two stale hellos to sockets that are closed: no queue stays.
    let ledger = default_ledger();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        eventually(LIMIT, || recorded(&ledger, server.pid()).is_empty()).await,
        "queues {:?} kept for clients that left",
        recorded(&ledger, server.pid())
    );
    // And it serves.
    let probe = bounded(LIMIT, "connect", ProbeClient::connect(&address))
        .await
        .unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    drop(probe);
    assert!(eventually(LIMIT, || recorded(&ledger, server.pid()).is_empty()).await);

    // Stopped again with a client waiting for its welcome, then killed: the client fails at
    // once, not at its 10 s connect timeout.
    server.signal(Signal::SIGSTOP);
    let waiting = tokio::spawn({
        let address = address.clone();
        async move {
            let options = ClientOptions::default().connect_timeout(Duration::from_secs(10));
            ProbeClient::connect_with(&address, options).await.map(drop)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut server = server;
    let killed = Instant::now();
    let _ = server.child.kill();
    let _ = server.child.wait();
    let outcome = bounded(LIMIT, "the waiting connect", waiting)
        .await
        .unwrap();
    let error = outcome.expect_err("its server was killed");
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "failed {:?} after the kill: {error}",
        killed.elapsed()
    );
    // Usually the transport's welcome never came; on a loaded machine the server may have
    // welcomed the transport connection before the stop took hold, and then the RPC handshake
    // is what the kill cuts short. Either way the client is told the server went away.
    let error = error.to_string();
    assert!(
        error.contains("before welcoming us")
            || error.contains("the server closed the connection during the handshake"),
        "{error}"
    );
    assert!(recorded(&ledger, server.pid()).is_empty());
}

/// The transport's hello and welcome, by hand: the queues the server made for us.
fn raw_handshake(name: &str, read_welcome: bool) -> (std::os::unix::net::UnixStream, [i32; 2]) {
    let address =
        std::os::unix::net::SocketAddr::from_abstract_name(format!("rpc-sysv-mq/{name}")).unwrap();
    let mut socket = std::os::unix::net::UnixStream::connect_addr(&address).unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let mut hello = [0u8; 16];
    hello[..8].copy_from_slice(b"rpcsvmqH");
    socket.write_all(&hello).unwrap();
    if !read_welcome {
        return (socket, [-1, -1]);
    }
    let mut welcome = [0u8; 32];
    socket.read_exact(&mut welcome).unwrap();
    assert_eq!(&welcome[..8], b"rpcsvmqW");
    let id = |at: usize| i32::from_le_bytes(welcome[at..at + 4].try_into().unwrap());
    (socket, [id(24), id(28)])
}

/// A client that vanishes right after the transport's hello, before or after the welcome, or
/// that keeps its socket and never speaks, leaves no queue once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_handshake_leaves_no_queue() {
    let _serial = serial().await;
    let address = format!("sysv-mq://{}", unique_name("vanish"));
    let name = address.trim_start_matches("sysv-mq://").to_owned();
    let server = ProbeChild::spawn(&address, None, None);
    assert!(server.listens_within(LIMIT));
    let ledger = default_ledger();

    // Gone before reading the welcome.
    let (socket, _) = raw_handshake(&name, false);
    drop(socket);
    // Gone right after it.
    let (socket, ids) = raw_handshake(&name, true);
    assert!(ids.iter().all(|id| listed().contains(id)));
    drop(socket);
    assert_gone(&ids, "after a client vanished after the welcome").await;
    // Silent after it: the server's RPC handshake gives up (2 s), and its queue goes; ours
    // (the one to the client) goes once we close.
    let (socket, ids) = raw_handshake(&name, true);
    assert_gone(&ids[..1], "the server's queue after its handshake timeout").await;
    drop(socket);
    assert_gone(&ids, "after the silent client closed").await;
    assert!(
        eventually(LIMIT, || recorded(&ledger, server.pid()).is_empty()).await,
        "records left: {:?}",
        recorded(&ledger, server.pid())
    );
    drop(server);
}

// --- many connections -----------------------------------------------------------------

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// 150 connections made and dropped, async and blocking, with small calls and replies large
/// enough to need a writer thread, some dropped with a reply still queued: afterwards the
/// process has no more threads than before and no queue of theirs is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_made_and_dropped_leave_no_thread_and_no_queue() {
    let _serial = serial().await;
    let address = format!("sysv-mq://{}", unique_name("cycles"));
    let handle = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[&address])
        .await
        .unwrap();
    // A first connection starts the watcher, once per process.
    let warm = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(warm.add(1, 1).await.unwrap(), 2);
    drop(warm);
    let baseline_queues = listed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (sysv_before, all_before) = (threads_named("rpc-sysv-mq-"), threads());
    for round in 0..100u32 {
        let probe = bounded(LIMIT, "connect", ProbeClient::connect(&address))
            .await
            .unwrap();
        assert_eq!(probe.add(round as i64, 1).await.unwrap(), round as i64 + 1);
        if round % 3 == 0 {
            let reply = probe.echo(vec![7; 100_000]).await.unwrap();
            assert_eq!(reply.len(), 100_000);
        }
        if round % 5 == 0 {
            // Dropped while a large reply is on its way.
            let probe = probe.clone();
            let call = tokio::spawn(async move { probe.echo(vec![1; 300_000]).await });
            tokio::time::sleep(Duration::from_millis(1)).await;
            call.abort();
        }
        drop(probe);
    }
    let blocking = {
        let address = address.clone();
        tokio::task::spawn_blocking(move || {
            for round in 0..50i64 {
                let probe = ProbeBlockingClient::connect(&address).unwrap();
                assert_eq!(probe.add(round, 2).unwrap(), round + 2);
                if round % 4 == 0 {
                    assert_eq!(probe.echo(vec![3; 70_000]).unwrap().len(), 70_000);
                }
            }
        })
    };
    bounded(LIMIT, "blocking rounds", blocking).await.unwrap();
    let settled = eventually(LIMIT, || {
        threads_named("rpc-sysv-mq-") <= sysv_before && handle.connections() == 0
    })
    .await;
    assert!(
        settled,
        "{} sysv-mq threads now, {sysv_before} before; {} connections",
        threads_named("rpc-sysv-mq-"),
        handle.connections()
    );
    let all_now = threads();
    assert!(
        all_now <= all_before + 4,
        "{all_now} threads now, {all_before} before"
    );
    let new_queues = || -> Vec<i32> {
        listed()
            .into_iter()
            .filter(|id| !baseline_queues.contains(id))
            .collect()
    };
    assert!(
        eventually(LIMIT, || new_queues().is_empty()).await,
        "queues left: {:?}",
        new_queues()
    );
    handle.shutdown().await;
}

// --- system limits, in an IPC namespace of our own --------------------------------------

/// In the child: in a new IPC namespace (its own queues and `kernel.msg*`), serve and connect
/// under the limit `SYSV_MQ_ATTACKS_LIMIT` names, lowered there; print the client's error.
#[test]
fn limits_child() {
    let Ok(limit) = std::env::var("SYSV_MQ_ATTACKS_LIMIT") else {
        return;
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).expect("unshare the IPC namespace");
    let set = |name: &str, value: u64| {
        std::fs::write(format!("/proc/sys/kernel/{name}"), value.to_string()).unwrap()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async {
        let address = format!("sysv-mq://{}", unique_name("limits"));
        let handle = Server::new()
            .start(ProbeServer::new(ProbeImpl::default()), &[&address])
            .await
            .unwrap();
        let options = ClientOptions::default().connect_timeout(Duration::from_secs(5));
        let outcome = match limit.as_str() {
            // Room for one connection's two queues.
            "msgmni" => {
                set("msgmni", 2);
                let first = ProbeClient::connect_with(&address, options.clone()).await;
                assert!(first.is_ok(), "{:?}", first.err());
                ProbeClient::connect_with(&address, options).await.map(drop)
            }
            // New queues too small for a message of 64 bytes and its twin.
            "msgmnb" => {
                set("msgmnb", 100);
                ProbeClient::connect_with(&address, options).await.map(drop)
            }
            // Messages of the running connection over the new maximum.
            "msgmax" => {
                let probe = ProbeClient::connect_with(&address, options).await.unwrap();
                set("msgmax", 100);
                probe.echo(vec![1; 10_000]).await.map(drop)
            }
            other => panic!("{other}"),
        };
        handle.shutdown().await;
        outcome
    });
    match outcome {
        Ok(()) => println!("OUTCOME ok"),
        Err(error) => println!("OUTCOME {error} | {error:?}"),
    }
}

/// The system's limits, hit: the error names the limit, on the client's side (the server
/// runs into `kernel.msgmni` and `kernel.msgmnb` as it makes a connection's queues, and the
/// client used to learn only that the server closed the socket before welcoming it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hit_are_named_to_the_client() {
    let _serial = serial().await;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: not root, cannot make an IPC namespace");
        return;
    }
    for limit in ["msgmni", "msgmnb", "msgmax"] {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(std::env::current_exe().unwrap())
                .args(["limits_child", "--exact", "--nocapture", "--test-threads=1"])
                .env("SYSV_MQ_ATTACKS_LIMIT", limit)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the child finished")
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let outcome = stdout
            .lines()
            .find_map(|line| line.split_once("OUTCOME ").map(|(_, rest)| rest))
            .unwrap_or_else(|| {
                panic!(
                    "{limit}: no outcome:\n{stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        assert!(
            outcome.contains(&format!("kernel.{limit}")),
            "{limit}: {outcome}"
        );
        if limit != "msgmax" {
            // A failed connect, by its type (a call's failure is `Disconnected` with the
            // reason, whatever the transport).
            assert!(outcome.contains("LimitReached"), "{limit}: {outcome}");
        }
    }
}
