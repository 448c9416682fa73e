//! `mq://` against the system's limits and killed processes, in a test binary of its own:
//! lowering `RLIMIT_MSGQUEUE` here hurts no other test, and killed children are this binary
//! run again with an environment variable naming their part.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mqueue::{MQ_OFlag, mq_close, mq_open};
use nix::sys::stat::Mode;
use rpc_transport::{Address, Frame, Listener, TransportConfig, TransportError, connect};

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

/// Runs this binary's `child` test as `part` of `name`; returns once it printed "ready".
fn spawn_child(part: &str, name: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, format!("{part} {name}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
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
    child
}

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
            other => panic!("unknown part {other}"),
        }
    });
}

#[test]
fn a_restart_after_a_killed_server_cleans_up() {
    let _serial = serial();
    let name = name("killed-server");
    let address: Address = format!("mq://{name}").parse().unwrap();
    kill9(spawn_child("server", &name));
    // The killed server's queue is left behind ...
    assert!(queue_exists(&name), "kill -9 should have left /{name}");
    // ... and a new server replaces it and works.
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
    assert!(
        !queue_exists(&name),
        "/{name} must be gone after a normal exit"
    );
}

#[test]
fn a_killed_client_ends_its_server_connection_at_once() {
    let _serial = serial();
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
