//! Peers that try to make the server hold memory: before the handshake a connection may send
//! only a small frame (64 KiB by default), refused at its length prefix; after it, a frame
//! announced but not sent costs the server (in resident memory) only the bytes that came.

use std::io::{Read, Write};
use std::time::Duration;

use rpc_core::Server;
use rpc_tests::{ProbeClient, ProbeImpl, ProbeServer, TempDir};

/// This process's resident set, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends a length prefix announcing `announced` bytes, then up to `send` bytes of it, and says
/// whether the server hung up (end of stream or a reset) before the socket's read timeout.
fn announce<S: Read + Write>(mut socket: S, announced: u32, send: usize) -> bool {
    let _ = socket.write_all(&announced.to_le_bytes());
    let _ = socket.write_all(&vec![0xAB; send]);
    let mut byte = [0u8; 1];
    match socket.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_handshake_a_large_frame_is_refused_at_its_prefix() {
    let dir = TempDir::new();
    let unix = format!("unix://{}/probe.sock", dir.0.display());
    let handle = Server::new()
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &["tcp://127.0.0.1:0", &unix],
        )
        .await
        .unwrap();
    let tcp = handle.local_addresses()[0].to_string();
    let tcp_addr = tcp.trim_start_matches("tcp://").to_owned();
    let path = dir.0.join("probe.sock");
    let before = rss_kib();
    let hung_up = tokio::task::spawn_blocking(move || {
        for _ in 0..30 {
            let socket = std::net::TcpStream::connect(&tcp_addr).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            socket
                .set_write_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            if !announce(socket, 16 << 20, 1 << 20) {
                return false;
            }
            let socket = std::os::unix::net::UnixStream::connect(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            socket
                .set_write_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            if !announce(socket, 16 << 20, 1 << 20) {
                return false;
            }
        }
        true
    })
    .await
    .unwrap();
    assert!(
        hung_up,
        "the server kept a connection that announced 16 MiB before its Hello"
    );
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "60 connections announcing 16 MiB grew the process by {grown} KiB"
    );
    // Everyone else is served as ever.
    let probe = ProbeClient::connect(&unix).await.unwrap();
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    let probe = ProbeClient::connect(&tcp).await.unwrap();
    assert_eq!(probe.echo(vec![7; 1 << 20]).await.unwrap().len(), 1 << 20);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_announced_after_the_handshake_costs_only_what_has_arrived() {
    use rpc_core::transport::Frame;
    use rpc_core::wire::{self, Header, Hello, Kind};

    let handle = Server::new()
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &["tcp://127.0.0.1:0"],
        )
        .await
        .unwrap();
    let address = handle.local_address();
    let hello = Hello::new(ProbeClient::schema(), 16 << 20);
    let frame: Frame = wire::message_frame(
        Header {
            kind: Kind::Hello,
            method: 0,
            call_id: 0,
        },
        None,
        &hello,
    )
    .unwrap();
    let hello_bytes = frame.payload().to_vec();
    let tcp_addr = address.trim_start_matches("tcp://").to_owned();
    let before = rss_kib();
    // 30 connections say Hello, then announce a 16 MiB frame and send 64 KiB of it.
    let sockets = tokio::task::spawn_blocking(move || {
        let mut sockets = Vec::new();
        for _ in 0..30 {
            let mut socket = std::net::TcpStream::connect(&tcp_addr).unwrap();
            socket
                .write_all(&(hello_bytes.len() as u32).to_le_bytes())
                .unwrap();
            socket.write_all(&hello_bytes).unwrap();
            let mut len = [0u8; 4];
            socket.read_exact(&mut len).unwrap();
            let mut welcome = vec![0u8; u32::from_le_bytes(len) as usize];
            socket.read_exact(&mut welcome).unwrap();
            socket.write_all(&(16u32 << 20).to_le_bytes()).unwrap();
            socket.write_all(&vec![0xCD; 64 << 10]).unwrap();
            sockets.push(socket);
        }
        sockets
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "30 half-sent 16 MiB frames grew the process by {grown} KiB (480 MiB if allocated up front)"
    );
    drop(sockets);
    let probe = ProbeClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    handle.shutdown().await;
}

/// Raises this process's descriptor limit toward `wanted`; returns what it got.
fn raise_nofile(wanted: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let target = wanted.min(hard).max(soft);
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).unwrap();
    }
    target
}

/// In a child of this test binary (`FLOOD_ADDRESS` set): opens `FLOOD_SILENT` connections that
/// never say anything and 500 that send half a frame header, prints `READY`, and holds them
/// until its stdin closes. A process of its own, so the flood's descriptors do not count
/// against the server's.
#[test]
fn flood_child() {
    let Ok(address) = std::env::var("FLOOD_ADDRESS") else {
        return; // Not a child: nothing to do.
    };
    let silent: usize = std::env::var("FLOOD_SILENT").unwrap().parse().unwrap();
    raise_nofile(16_384);
    let open = || -> Box<dyn Write> {
        if let Some(tcp) = address.strip_prefix("tcp://") {
            Box::new(std::net::TcpStream::connect(tcp).unwrap())
        } else {
            let path = address.strip_prefix("unix://").unwrap();
            Box::new(std::os::unix::net::UnixStream::connect(path).unwrap())
        }
    };
    let mut held = Vec::with_capacity(silent + 500);
    for _ in 0..silent {
        held.push(open());
    }
    for _ in 0..500 {
        let mut socket = open();
        let _ = socket.write_all(&[0x40, 0x00]);
        held.push(socket);
    }
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

/// Floods a server at `address` from another process with silent and half-sent connections,
/// then times a well-behaved client's connect and first call.
async fn silent_and_half_sent_peers_do_not_keep_a_client_out(address: &str) {
    use tokio::io::AsyncBufReadExt;
    // The floods take turns: each costs the machine over 20,000 descriptors.
    static ONE_FLOOD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_FLOOD_AT_A_TIME.lock().await;
    let limit = raise_nofile(16_384);
    let silent = if limit >= 12_500 {
        10_000
    } else {
        eprintln!("only {limit} descriptors: flooding with fewer than 10,000 connections");
        (limit as usize).saturating_sub(2_500)
    };
    let handle = Server::new()
        .start(ProbeServer::new(ProbeImpl::default()), &[address])
        .await
        .unwrap();
    let bound = handle.local_address();
    let mut flood = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["flood_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("FLOOD_ADDRESS", &bound)
        .env("FLOOD_SILENT", silent.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(flood.stdout.take().unwrap()).lines();
    let opened = std::time::Instant::now();
    let ready = tokio::time::timeout(Duration::from_secs(120), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("READY") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        ready,
        Ok(true),
        "the flood child did not open its connections"
    );
    eprintln!(
        "{silent} silent and 500 half-sent connections opened in {:?}",
        opened.elapsed()
    );
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let probe = ProbeClient::connect(&bound).await?;
        probe.add(20, 22).await
    })
    .await;
    let took = started.elapsed();
    assert_eq!(outcome.expect("the client got in within 10 s").unwrap(), 42);
    assert!(
        took < Duration::from_secs(1),
        "{bound}: with {silent} silent and 500 half-sent connections open, connect + call took {took:?}"
    );
    assert!(
        handle.pending_handshakes() <= 1024,
        "{}",
        handle.pending_handshakes()
    );
    assert!(
        handle.connections() <= 1,
        "the flood counted as established connections: {}",
        handle.connections()
    );
    drop(flood.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), flood.wait()).await;
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_sent_peers_do_not_keep_a_tcp_client_out() {
    silent_and_half_sent_peers_do_not_keep_a_client_out("tcp://127.0.0.1:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_sent_peers_do_not_keep_a_unix_client_out() {
    let dir = TempDir::new();
    let address = format!("unix://{}/flood.sock", dir.0.display());
    silent_and_half_sent_peers_do_not_keep_a_client_out(&address).await;
}
