//! Many connections opened and closed, async and blocking, on `sysv-shm://` and on a
//! transport registered by the program (`xtcp://`, as in `custom_transport.rs`, but a plain
//! copy of TCP here): afterwards the process holds no more descriptors, threads or System V
//! segments than after the first few.
//!
//! Each case runs in a child process of its own (this binary, re-run on one test), so the
//! counts of `/proc/self` are its alone.

use std::time::{Duration, Instant};

use rpc_core::transport::{
    Acceptor, Address, BlockingConnection, BoxFuture, Connection, PeerInfo, Transport,
    TransportConfig, TransportError, framed,
};
use rpc_core::{ClientOptions, Server};
use rpc_tests::{ProbeBlockingClient, ProbeClient, ProbeImpl, ProbeServer, unique_name};
use tokio::net::{TcpListener, TcpStream};

const CHILD: &str = "RPC_CONNECTION_CYCLES_CHILD";
const LIMIT: Duration = Duration::from_secs(30);
const CYCLES: usize = 150;

/// Runs test `name` of this binary in a child process, which does the work; passes if it does.
fn in_child(name: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child running {name} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success() && stdout.contains(&format!("{name} ... ok")),
        "{name} failed in its child:\n{stdout}\n{stderr}"
    );
    true
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Descriptors and threads of this process.
fn usage() -> (usize, usize) {
    (count("/proc/self/fd"), count("/proc/self/task"))
}

/// System V segments created by this process that still exist.
fn own_segments() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_to_string("/proc/sysvipc/shm")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| line.split_whitespace().nth(4) == Some(me.as_str()))
        .count()
}

/// Opens and closes `cycles` async and blocking connections to `address`, each making a call.
fn cycle(runtime: &tokio::runtime::Runtime, address: &str, options: &ClientOptions, cycles: usize) {
    for i in 0..cycles as i64 {
        let probe = runtime
            .block_on(ProbeClient::connect_with(address, options.clone()))
            .unwrap();
        assert_eq!(runtime.block_on(probe.add(i, 1)).unwrap(), i + 1);
        drop(probe);
        let blocking = ProbeBlockingClient::connect_with(address, options.clone()).unwrap();
        assert_eq!(blocking.add(i, 2).unwrap(), i + 2);
        drop(blocking);
    }
}

/// Serves the probe on `address` and checks that `CYCLES` connections leave nothing behind.
fn leaves_nothing(address: &str, server: Server, options: ClientOptions) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let handle = runtime
        .block_on(server.start(ProbeServer::new(ProbeImpl::default()), &[address]))
        .unwrap();
    let address = handle.local_address();
    let settled = |handle: &rpc_core::ServerHandle| {
        rpc_tests::wait_until(LIMIT, || handle.connections() == 0 && own_segments() == 0)
    };
    // The first connections start what lives on (watcher thread, pools).
    cycle(&runtime, &address, &options, 5);
    assert!(settled(&handle), "connections or segments left");
    std::thread::sleep(Duration::from_millis(200));
    let (fds, threads) = usage();
    cycle(&runtime, &address, &options, CYCLES);
    assert!(
        settled(&handle),
        "connections or segments left after the cycles"
    );
    // Threads of the runtime's blocking pool idle out; descriptors close with connections.
    let grown =
        |(now_fds, now_threads): (usize, usize)| now_fds > fds + 4 || now_threads > threads + 4;
    rpc_tests::wait_until(LIMIT, || !grown(usage()));
    let now = usage();
    assert!(
        !grown(now),
        "{CYCLES} cycles: descriptors {fds} -> {}, threads {threads} -> {}",
        now.0,
        now.1
    );
    eprintln!(
        "{CYCLES} cycles: descriptors {fds} -> {}, threads {threads} -> {}",
        now.0, now.1
    );
    runtime.block_on(handle.shutdown());
}

#[test]
fn sysv_shm_cycles_leave_nothing() {
    if in_child("sysv_shm_cycles_leave_nothing") {
        return;
    }
    let address = format!("sysv-shm://{}", unique_name("cycles"));
    leaves_nothing(&address, Server::new(), ClientOptions::default());
    assert_eq!(own_segments(), 0);
}

/// TCP, registered by the program under `ptcp`.
struct PlainTcp;

struct PlainListener(TcpListener, TransportConfig);

fn connection(stream: TcpStream, config: &TransportConfig) -> Result<Connection, TransportError> {
    let peer = PeerInfo::Other(format!("ptcp {}", stream.peer_addr()?));
    let (read, write) = stream.into_split();
    let (sender, receiver) = framed(read, write, config, "ptcp");
    Ok(Connection::new(sender, receiver, peer))
}

async fn connect(
    address: &Address,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let (host, port) = address.host_port()?;
    connection(TcpStream::connect((host.as_str(), port)).await?, config)
}

impl Acceptor for PlainListener {
    fn local_address(&self) -> Address {
        Address::from_target("ptcp", &self.0.local_addr().unwrap().to_string())
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move { connection(self.0.accept().await?.0, &self.1) })
    }
}

impl Transport for PlainTcp {
    fn scheme(&self) -> &str {
        "ptcp"
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        address.host_port().map(drop)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(connect(address, config))
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(async move {
            let (host, port) = address.host_port()?;
            let listener = TcpListener::bind((host.as_str(), port)).await?;
            Ok(Box::new(PlainListener(listener, config.clone())) as Box<dyn Acceptor>)
        })
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        BlockingConnection::over_runtime(address, timeout, || connect(address, config))
    }
}

#[test]
fn registered_transport_cycles_leave_nothing() {
    if in_child("registered_transport_cycles_leave_nothing") {
        return;
    }
    rpc_core::transport::register(PlainTcp).unwrap();
    leaves_nothing(
        "ptcp://127.0.0.1:0",
        Server::new(),
        ClientOptions::default(),
    );
}
