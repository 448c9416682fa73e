//! Tokens, a hung server's full backlog, and queues let go of when both sides are dropped.

use std::time::Duration;

use super::{address, pair, queue_exists, setup};
use crate::{Address, Frame, Listener, TransportConfig, TransportError, connect, connect_blocking};

#[test]
fn tokens_are_distinct_nonzero_and_unrelated() {
    let tokens = crate::mq::Tokens::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100_000 {
        let token = tokens.next();
        assert_ne!(token, 0);
        assert!(seen.insert(token), "token {token:#x} repeated");
    }
    // Consecutive tokens share no simple relation (unlike `salt ^ n`).
    let (a, b, c) = (tokens.next(), tokens.next(), tokens.next());
    assert_ne!(a ^ b, b ^ c);
    // Another acceptor's tokens are others.
    let other = crate::mq::Tokens::new();
    assert!(!seen.contains(&other.next()));
}

/// A socket bound at `@rpc-mq/NAME` with a backlog of one that never accepts, filled up.
fn hung_server(name: &str) -> (std::os::fd::OwnedFd, Vec<std::os::unix::net::UnixStream>) {
    use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    let socket = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let addr = UnixAddr::new_abstract(format!("rpc-mq/{name}").as_bytes()).unwrap();
    nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&socket), &addr).unwrap();
    nix::sys::socket::listen(&socket, Backlog::new(1).unwrap()).unwrap();
    let mut pending = Vec::new();
    loop {
        let connecting =
            crate::mq::rendezvous::Connecting::new(&crate::mq::rendezvous::socket_name(name))
                .unwrap();
        if !connecting.attempt().unwrap() {
            return (socket, pending);
        }
        pending.push(connecting.into_stream());
        assert!(pending.len() < 10_000, "the backlog never filled");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_backlog_times_out_instead_of_hanging() {
    let Some(_serial) = setup(
        module_path!(),
        "a_full_backlog_times_out_instead_of_hanging",
    )
    .await
    else {
        return;
    };
    let address = address("backlog");
    let name = &address.name().unwrap();
    let _hung = hung_server(name);
    // Blocking: the given timeout is kept.
    let started = std::time::Instant::now();
    let result = connect_blocking(
        &address,
        &TransportConfig::default(),
        Duration::from_millis(200),
    );
    match result {
        Err(TransportError::Connect { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{source}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // Async: the runtime thread (the only one here) is not blocked, so the caller's timeout
    // fires.
    let result = tokio::time::timeout(
        Duration::from_millis(200),
        connect(&address, &TransportConfig::default()),
    )
    .await;
    assert!(result.is_err(), "connected to a hung server?");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// How many of this process's descriptors are open on queues of `address`.
fn queue_fds(address: &Address) -> usize {
    let name = &address.name().unwrap();
    let name = format!("/{name}");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            let target = target.trim_end_matches(" (deleted)");
            target == name.as_str() || target.starts_with(&format!("{name}."))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_dropped_with_full_queues_let_go_of_them_at_once() {
    let Some(_serial) = setup(
        module_path!(),
        "both_sides_dropped_with_full_queues_let_go_of_them_at_once",
    )
    .await
    else {
        return;
    };
    let address = address("linger");
    let config = TransportConfig::default();
    let listener = Listener::bind(&address, &config).await.unwrap();
    let (mut client, mut server) = pair(&listener, &address).await;
    assert!(queue_fds(&address) >= 2);
    // Nobody reads: fill the client's reply queue, then the server's inbox and queue, each
    // side ending with a send cut short.
    let short = Duration::from_millis(50);
    for (side, name) in [(&mut server, "server"), (&mut client, "client")] {
        let mut sent = 0;
        while tokio::time::timeout(short, side.send(Frame::from_payload(b"x")))
            .await
            .is_ok()
        {
            sent += 1;
            assert!(sent < 100_000, "the {name}'s peer queue never filled");
        }
    }
    // The server first: its routing task ends with the server queue full, which nobody reads
    // any more, so each side's goodbye waits on a queue that only its peer could drain.
    drop((server, listener));
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(client);
    let started = std::time::Instant::now();
    while queue_fds(&address) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{} queue descriptors still open after {:?}",
            queue_fds(&address),
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!queue_exists(&address));
}
