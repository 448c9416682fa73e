//! `mq://` against the system's limits and killed processes, in a test binary of its own:
//! lowering `RLIMIT_MSGQUEUE` here hurts no other test, and killed children are this binary
//! run again with an environment variable naming their part.
//!
//! Budget: `RLIMIT_MSGQUEUE` is per user, and other processes of ours may hold most of it.
//! The tests that need some of it run under a uid of their own when we are root (see
//! `own_uid.rs`), one at a time; the one that needs root itself (to run a stranger) runs on
//! what root has left, its queues shrinking to fit; the one that lowers the soft limit to
//! nearly nothing tests the refusal, which needs no budget.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mqueue::{MQ_OFlag, mq_close, mq_open};
use nix::sys::stat::Mode;
use rpc_transport::{Address, Frame, Listener, TransportConfig, TransportError, connect};

#[path = "../src/mq/tests/own_uid.rs"]
mod own_uid;

/// Runs the calling test under a uid of its own if we may (see `own_uid.rs`): `true` once it
/// passed there.
fn delegated(name: &str) -> bool {
    own_uid::delegated(&own_uid::test_path(module_path!(), name))
}

/// Every wait is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);
/// The child's part: `server NAME` or `client NAME`.
const CHILD_ENV: &str = "RPC_MQ_LIMITS_CHILD";

/// The tests change process-wide limits and count queues: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn name(tag: &str) -> String {
    format!("rpc-limits-{}-{tag}", std::process::id())
}

fn queue_exists(name: &str) -> bool {
    match mq_open(
        format!("/{name}").as_str(),
        MQ_OFlag::O_RDONLY,
        Mode::empty(),
        None,
    ) {
        Ok(q) => {
            let _ = mq_close(q);
            true
        }
        Err(Errno::ENOENT) => false,
        Err(e) => panic!("mq_open /{name}: {e}"),
    }
}

/// The soft and hard `RLIMIT_MSGQUEUE`.
fn msgqueue_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid `rlimit` for the call to write.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut limit) };
    assert_eq!(status, 0);
    limit
}

fn set_soft_msgqueue_limit(bytes: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: msgqueue_limit().rlim_max,
    };
    // SAFETY: `limit` is a valid, initialized `rlimit` the call only reads.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MSGQUEUE, &limit) }, 0);
}

/// Restores the soft limit when dropped, even if the test fails.
struct SoftLimit(libc::rlim_t);

impl Drop for SoftLimit {
    fn drop(&mut self) {
        set_soft_msgqueue_limit(self.0);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn is_msgqueue_limit(result: &Result<impl std::fmt::Debug, TransportError>) -> bool {
    matches!(
        result,
        Err(TransportError::LimitReached {
            limit: "RLIMIT_MSGQUEUE",
            ..
        })
    )
}

#[test]
fn a_tiny_rlimit_msgqueue_is_reported_by_name() {
    let _serial = serial();
    let _restore = SoftLimit(msgqueue_limit().rlim_cur);
    set_soft_msgqueue_limit(1000);
    let address: Address = format!("mq://{}", name("tiny")).parse().unwrap();
    let result = runtime().block_on(Listener::bind(&address, &TransportConfig::default()));
    assert!(is_msgqueue_limit(&result), "{result:?}");
    if let Err(error) = &result {
        assert!(error.to_string().contains("RLIMIT_MSGQUEUE"), "{error}");
    }
    // Nothing half made is left.
    assert!(!queue_exists(&name("tiny")));
}

#[test]
fn a_client_over_the_limit_gets_the_typed_error_not_a_hang() {
    let _serial = serial();
    if delegated("a_client_over_the_limit_gets_the_typed_error_not_a_hang") {
        return;
    }
    let _restore = SoftLimit(msgqueue_limit().rlim_cur);
    let runtime = runtime();
    let name = name("client");
    let address: Address = format!("mq://{name}").parse().unwrap();
    let listener = runtime
        .block_on(Listener::bind(&address, &TransportConfig::default()))
        .unwrap();
    // Leave the user no room for even the smallest reply queue (the server's queue is already
    // charged, so a soft limit under it leaves none).
    set_soft_msgqueue_limit(1000);
    let started = Instant::now();
    let result = runtime.block_on(async {
        tokio::time::timeout(LIMIT, connect(&address, &TransportConfig::default())).await
    });
    let result = result.expect("connect must not hang at the limit");
    assert!(is_msgqueue_limit(&result), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
    drop(runtime);
    assert!(!queue_exists(&name));
}

/// This binary's `child` test as `part` of `name`.
fn child_command(part: &str, name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, format!("{part} {name}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Runs this binary's `child` test as `part` of `name`; returns once it printed "ready".
fn spawn_child(part: &str, name: &str) -> Child {
    spawn_ready(child_command(part, name), part).unwrap()
}

/// Spawns `command`; returns once it printed "ready" (an error if it cannot be spawned).
fn spawn_ready(mut command: Command, part: &str) -> std::io::Result<Child> {
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line.contains("child ready") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(LIMIT).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the {part} child did not get ready");
    }
    Ok(child)
}

use own_uid::assert_no_queue_of;

fn kill9(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Not a test of its own: the part a killed child plays (a no-op when run normally).
#[test]
fn child() {
    let Ok(part) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (part, name) = part.split_once(' ').unwrap();
    let address: Address = format!("mq://{name}").parse().unwrap();
    runtime().block_on(async {
        let config = TransportConfig::default();
        match part {
            "server" => {
                let listener = Listener::bind(&address, &config).await.unwrap();
                // A connected client too, so the kill leaves a connection's state behind.
                let (client, server) = tokio::join!(connect(&address, &config), listener.accept());
                let (_client, _server) = (client.unwrap(), server.unwrap());
                println!("child ready");
                tokio::time::sleep(LIMIT * 3).await;
            }
            "client" => {
                let mut connection = connect(&address, &config).await.unwrap();
                connection
                    .send(Frame::from_payload(b"hello from the child"))
                    .await
                    .unwrap();
                println!("child ready");
                tokio::time::sleep(LIMIT * 3).await;
            }
            "stranger-server" => {
                let _listener = Listener::bind(&address, &config).await.unwrap();
                println!("child ready");
                tokio::time::sleep(LIMIT * 3).await;
            }
            "stranger-queue" => {
                let attr = nix::mqueue::MqAttr::new(0, 4, 64, 0);
                let queue = mq_open(
                    format!("/{name}").as_str(),
                    MQ_OFlag::O_RDWR | MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL,
                    Mode::from_bits_truncate(0o666),
                    Some(&attr),
                )
                .unwrap();
                println!("child ready");
                tokio::time::sleep(LIMIT * 3).await;
                let _ = nix::mqueue::mq_close(queue);
            }
            "stranger-client" => {
                // A well-formed hello with a real reply queue, by hand: our own client would
                // refuse a server of another uid (not root) before saying anything.
                use std::io::{IoSlice, Read};
                use std::os::fd::AsRawFd;
                use std::os::linux::net::SocketAddrExt;
                use std::os::unix::net::{SocketAddr, UnixStream};
                let at = SocketAddr::from_abstract_name(format!("rpc-mq/{name}")).unwrap();
                let mut socket = UnixStream::connect_addr(&at).unwrap();
                let queue_name = format!("/{name}.stranger");
                let attr = nix::mqueue::MqAttr::new(0, 4, 1024, 0);
                let queue = mq_open(
                    queue_name.as_str(),
                    MQ_OFlag::O_RDWR | MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                    Some(&attr),
                )
                .unwrap();
                let _ = nix::mqueue::mq_unlink(queue_name.as_str());
                let mut hello = [0u8; 16];
                hello[..8].copy_from_slice(b"rpcmq\x02hi");
                let fds = [queue.as_raw_fd()];
                let sent = nix::sys::socket::sendmsg::<()>(
                    socket.as_raw_fd(),
                    &[IoSlice::new(&hello)],
                    &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
                    nix::sys::socket::MsgFlags::empty(),
                    None,
                );
                // The server checks the peer's uid on accept, so it may hang up before the
                // hello is even sent.
                if let Err(errno) = sent {
                    println!("child hello refused: {errno:?}");
                    return;
                }
                socket.set_read_timeout(Some(LIMIT)).unwrap();
                let mut answer = Vec::new();
                let result = socket.read_to_end(&mut answer);
                println!("child result: {result:?} after {} bytes", answer.len());
            }
            other => panic!("unknown part {other}"),
        }
    });
}

#[test]
fn a_restart_after_a_killed_server_cleans_up() {
    let _serial = serial();
    if delegated("a_restart_after_a_killed_server_cleans_up") {
        return;
    }
    let name = name("killed-server");
    let address: Address = format!("mq://{name}").parse().unwrap();
    kill9(spawn_child("server", &name));
    // Neither the killed server's queue nor its client's is left behind (their names went as
    // soon as they were made) ...
    assert_no_queue_of(&name);
    // ... and a new server takes the name over (the dead one's lock died with it) and works.
    let runtime = runtime();
    runtime.block_on(async {
        let config = TransportConfig::default();
        let listener = Listener::bind(&address, &config).await.unwrap();
        let (client, server) = tokio::time::timeout(LIMIT, async {
            tokio::join!(connect(&address, &config), listener.accept())
        })
        .await
        .unwrap();
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        client
            .send(Frame::from_payload(b"after the restart"))
            .await
            .unwrap();
        let frame = tokio::time::timeout(LIMIT, server.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame, Some(Frame::from_payload(b"after the restart")));
    });
    drop(runtime);
    assert_no_queue_of(&name);
}

#[test]
fn a_killed_client_ends_its_server_connection_at_once() {
    let _serial = serial();
    if delegated("a_killed_client_ends_its_server_connection_at_once") {
        return;
    }
    let name = name("killed-client");
    let address: Address = format!("mq://{name}").parse().unwrap();
    let runtime = runtime();
    let listener = runtime
        .block_on(Listener::bind(&address, &TransportConfig::default()))
        .unwrap();
    runtime.block_on(async {
        // The child's connect completes only once we accept.
        let spawning = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || spawn_child("client", &name))
        };
        let mut server = tokio::time::timeout(LIMIT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let child = spawning.await.unwrap();
        let frame = tokio::time::timeout(LIMIT, server.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame, Some(Frame::from_payload(b"hello from the child")));
        kill9(child);
        assert_no_queue_of(&name);
        let started = Instant::now();
        let end = tokio::time::timeout(LIMIT, server.recv()).await.unwrap();
        assert!(matches!(end, Ok(None)), "{end:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Nobody reads its reply queue any more: sends fail, not hang.
        let sent = tokio::time::timeout(LIMIT, server.send(Frame::from_payload(b"x")))
            .await
            .unwrap();
        assert!(matches!(sent, Err(TransportError::Closed)), "{sent:?}");
    });
    drop(listener);
    drop(runtime);
    assert!(!queue_exists(&name));
}

/// The user the `stranger-*` children run as.
const STRANGER: u32 = 65534;

/// This binary's `child` as `part` of `name`, run as [`STRANGER`].
fn stranger(part: &str, name: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = child_command(part, name);
    command.uid(STRANGER).gid(STRANGER);
    command
}

fn permission_denied_naming(result: &Result<impl std::fmt::Debug, TransportError>, what: &str) {
    match result {
        Err(TransportError::Connect { source, .. }) => {
            assert_eq!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{source}"
            );
            assert!(source.to_string().contains(what), "{source}");
        }
        other => panic!("{other:?}"),
    }
}

/// Abstract sockets have no permissions: another user could bind `@rpc-mq/NAME` (or leave a
/// queue `/NAME`) while our server is down, or connect to our server. Each side refuses a peer
/// of another uid. Needs a process that may switch users (root with `CAP_SETUID`); skipped
/// otherwise.
#[test]
fn another_users_server_queue_or_client_is_refused() {
    let _serial = serial();
    if nix::unistd::geteuid().as_raw() == STRANGER {
        eprintln!("skipped: we run as the stranger uid {STRANGER} ourselves");
        return;
    }
    let runtime = runtime();
    let config = TransportConfig::default();

    // A stranger's server on the name: our client refuses it, before sending anything.
    let squatted = name("stranger-server");
    let child = match spawn_ready(stranger("stranger-server", &squatted), "stranger-server") {
        Ok(child) => child,
        Err(error) => {
            eprintln!("skipped: cannot run a child as uid {STRANGER}: {error}");
            return;
        }
    };
    let address: Address = format!("mq://{squatted}").parse().unwrap();
    let result = runtime.block_on(async {
        tokio::time::timeout(LIMIT, connect(&address, &config))
            .await
            .unwrap()
    });
    permission_denied_naming(&result, &format!("uid {STRANGER}"));
    kill9(child);
    let _ = nix::mqueue::mq_unlink(format!("/{squatted}").as_str());

    // (A stranger's queue under the name cannot be slipped in: clients open no queue by name,
    // they get the server queue's descriptor from the server they checked.)

    // A stranger's client gets through the transport, its uid handed up for the layer above
    // to judge (rpc-core refuses it in its handshake unless admitted), and our server goes on.
    let ours = name("stranger-client");
    let address: Address = format!("mq://{ours}").parse().unwrap();
    runtime.block_on(async {
        let listener = Listener::bind(&address, &config).await.unwrap();
        let client = {
            let ours = ours.clone();
            tokio::task::spawn_blocking(move || {
                stranger("stranger-client", &ours)
                    .stdout(Stdio::piped())
                    .output()
                    .unwrap()
            })
        };
        let accepted = tokio::time::timeout(LIMIT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let peer = accepted.peer().clone();
        assert!(
            matches!(
                peer,
                rpc_transport::PeerInfo::Unix {
                    uid: STRANGER,
                    gid: STRANGER,
                    ..
                }
            ),
            "{peer:?}"
        );
        drop(accepted);
        let output = tokio::time::timeout(LIMIT, client).await.unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Welcomed (24 bytes), then hung up on once the connection was dropped.
        assert!(
            stdout.contains("child result: Ok(24) after 24 bytes"),
            "{stdout}"
        );
        let (client, server) = tokio::time::timeout(LIMIT, async {
            tokio::join!(connect(&address, &config), listener.accept())
        })
        .await
        .unwrap();
        let (mut client, mut server) = (client.unwrap(), server.unwrap());
        client.send(Frame::from_payload(b"ours")).await.unwrap();
        let frame = tokio::time::timeout(LIMIT, server.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame, Some(Frame::from_payload(b"ours")));
    });
    drop(runtime);
    assert!(!queue_exists(&ours));
}
