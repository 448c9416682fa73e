//! Tests on real queues and sockets; `credit.rs` has those of the credit window,
//! `byte_credit.rs` those of its bytes and of frame limits, `direct.rs` those of looking at a
//! reply queue without waiting, `lifecycle.rs` those of tokens, a
//! hung server and queues let go of.
//!
//! Budget: each test that makes queues runs under a uid of its own when we are root
//! (`own_uid.rs`: `RLIMIT_MSGQUEUE` is per user and other processes of ours may hold most of
//! it), one at a time (`setup`). Otherwise it runs on what its uid has left: one server queue
//! (about 82 KB under Linux's defaults) and at most eight reply queues (11 KB each), all of
//! which shrink to smaller messages when that is not free.

mod byte_credit;
mod credit;
mod direct;
mod lifecycle;
mod own_uid;

use std::sync::Once;
use std::time::Duration;

use nix::errno::Errno;
use nix::mqueue::{MQ_OFlag, mq_open};
use nix::sys::stat::Mode;

use crate::{
    Address, Connection, Deadline, Frame, Listener, TransportConfig, TransportError, connect,
    connect_blocking,
};

/// Every wait in these tests is bounded by this.
pub(in crate::mq) const LIMIT: Duration = Duration::from_secs(20);

/// Serializes the tests that make queues, and runs the test `name` of `module`
/// (`module_path!()`) under a uid of its own when we may (see `own_uid.rs`): `None` once such a
/// child passed it, when the caller returns. Otherwise (in the child, or not root) it lifts
/// this test binary's `RLIMIT_MSGQUEUE` where allowed (with `CAP_SYS_RESOURCE`), and the test
/// runs on what its uid has left: one server queue and at most eight reply queues at a time,
/// which shrink to what fits.
pub(super) async fn setup(
    module: &str,
    name: &str,
) -> Option<tokio::sync::MutexGuard<'static, ()>> {
    static ONCE: Once = Once::new();
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let serial = SERIAL.lock().await;
    if own_uid::delegated(&own_uid::test_path(module, name)) {
        return None;
    }
    ONCE.call_once(|| {
        let _ = super::fd::set_msgqueue_limit(256 << 20);
    });
    Some(serial)
}

pub(super) fn address(tag: &str) -> Address {
    format!("mq://rpc-test-{}-{tag}", std::process::id())
        .parse()
        .unwrap()
}

pub(super) fn queue_exists(address: &Address) -> bool {
    let name = &address.name().unwrap();
    match mq_open(
        format!("/{name}").as_str(),
        MQ_OFlag::O_RDONLY,
        Mode::empty(),
        None,
    ) {
        Ok(q) => {
            let _ = nix::mqueue::mq_close(q);
            true
        }
        Err(Errno::ENOENT) => false,
        Err(e) => panic!("mq_open: {e}"),
    }
}

/// The server queue a client's sender writes to (it has no name to open it by).
pub(super) fn server_queue_of(sender: &crate::FrameSender) -> std::sync::Arc<super::queue::Queue> {
    sender
        .downcast_ref::<super::endpoint::MqSender>()
        .expect("an mq half")
        .queue_for_tests()
}

pub(in crate::mq) fn pattern(len: usize, seed: u8) -> Frame {
    Frame::filled(len, |buf| {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8;
        }
    })
}

pub(in crate::mq) async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took over {LIMIT:?}"))
}

/// Looks at `rx` without waiting (its `PollFrames`), yielding in between, until a frame is
/// whole; bounded.
pub(in crate::mq) async fn look_until_frame(rx: &mut crate::FrameReceiver) -> Frame {
    bounded("a whole frame", async {
        loop {
            let poll = rx.as_poll().expect("a receiver that can be looked at");
            if let Some(frame) = poll.try_recv().unwrap() {
                return frame;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

/// Binds `address` once the listener just dropped there has let go of its name: a child that
/// another test forks at that moment holds a copy of its socket until it execs (close-on-exec),
/// so the name may stay taken for a moment; retried for up to a second.
pub(in crate::mq) async fn bind_once_free(address: &Address, config: &TransportConfig) -> Listener {
    let mut again = Listener::bind(address, config).await;
    for _ in 0..100 {
        if !matches!(again, Err(TransportError::AddressInUse { .. })) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        again = Listener::bind(address, config).await;
    }
    again.unwrap()
}

pub(in crate::mq) async fn pair(
    listener: &Listener,
    address: &Address,
) -> (Connection, Connection) {
    let config = TransportConfig::default();
    let (client, server) = bounded("connect", async {
        tokio::join!(connect(address, &config), listener.accept())
    })
    .await;
    (client.unwrap(), server.unwrap())
}

/// The token a client's sender puts in its messages.
pub(super) fn token_of(sender: &crate::FrameSender) -> u64 {
    sender
        .downcast_ref::<super::endpoint::MqSender>()
        .expect("an mq half")
        .token_for_tests()
}

/// On a server connection's receiver: the most bytes of frames the routing task held for it.
pub(super) fn most_held_of(receiver: &crate::FrameReceiver) -> u64 {
    receiver
        .downcast_ref::<super::endpoint::MqReceiver>()
        .expect("an mq half")
        .most_held_for_tests()
}

pub(super) fn link_of(sender: &crate::FrameSender) -> std::sync::Arc<super::link::Link> {
    sender
        .downcast_ref::<super::endpoint::MqSender>()
        .expect("an mq half")
        .link_for_tests()
}

const SIZES: [usize; 10] = [
    0,
    1,
    100,
    8175,
    8176,
    8177,
    65536,
    100_000,
    1 << 20,
    16 << 20,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_many_sizes_cross_both_ways() {
    let Some(_serial) = setup(module_path!(), "frames_of_many_sizes_cross_both_ways").await else {
        return;
    };
    let address = address("sizes");
    let config = TransportConfig::default();
    let listener = Listener::bind(&address, &config).await.unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (mut client_tx, mut client_rx, peer) = client.split();
    assert!(
        matches!(peer, crate::PeerInfo::Unix { pid: Some(pid), .. } if pid == std::process::id() as i32),
        "{peer:?}"
    );
    let (mut server_tx, mut server_rx, _) = server.split();
    // The server echoes each frame back.
    let echo = tokio::spawn(async move {
        while let Some(frame) = server_rx.recv().await.unwrap() {
            server_tx.send(frame).await.unwrap();
        }
        server_tx.close().await.unwrap();
    });
    let sending = tokio::spawn(async move {
        for (i, len) in SIZES.into_iter().enumerate() {
            client_tx.send(pattern(len, i as u8)).await.unwrap();
        }
        // Refused without harm:
        assert!(matches!(
            client_tx.send(Frame::filled((16 << 20) + 1, |_| ())).await,
            Err(TransportError::FrameTooLarge { .. })
        ));
        client_tx.close().await.unwrap();
        client_tx
    });
    bounded("echo of every size", async {
        for (i, len) in SIZES.into_iter().enumerate() {
            let frame = client_rx.recv().await.unwrap().expect("a frame");
            assert_eq!(frame.len(), len);
            assert!(
                frame == pattern(len, i as u8),
                "frame {i} of {len} bytes differs"
            );
        }
        assert_eq!(client_rx.recv().await.unwrap(), None);
        echo.await.unwrap();
        sending.await.unwrap();
    })
    .await;
}

/// Eight clients of one server at `address` (which must be free), each sending 40 frames of
/// mixed sizes while reading the echoes: every frame comes back whole, in order, to its own
/// client. Shared by `mq://` and `sysv-mq://`.
pub(in crate::mq) async fn eight_clients_interleave(address: &Address) {
    let config = TransportConfig::default();
    let listener = Listener::bind(address, &config).await.unwrap();
    let server = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let connection = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let (mut tx, mut rx, _) = connection.split();
                let mut n = 0;
                while let Some(frame) = rx.recv().await.unwrap() {
                    tx.send(frame).await.unwrap();
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        (total, listener)
    });
    let mut clients = Vec::new();
    for c in 0..8u8 {
        let address = address.clone();
        clients.push(tokio::spawn(async move {
            let connection = connect(&address, &TransportConfig::default())
                .await
                .unwrap();
            let (mut tx, mut rx, _) = connection.split();
            let sizes = [0usize, 10, 9000, 30_000, 200];
            let writer = tokio::spawn(async move {
                for round in 0..40usize {
                    let len = sizes[round % sizes.len()];
                    tx.send(pattern(len, c.wrapping_add(round as u8)))
                        .await
                        .unwrap();
                }
                tx
            });
            for round in 0..40usize {
                let len = sizes[round % sizes.len()];
                let frame = rx.recv().await.unwrap().expect("an echo");
                assert!(
                    frame == pattern(len, c.wrapping_add(round as u8)),
                    "client {c} round {round}"
                );
            }
            drop(writer.await.unwrap()); // says goodbye
            assert_eq!(rx.recv().await.unwrap(), None);
        }));
    }
    bounded("eight clients", async {
        for client in clients {
            client.await.unwrap();
        }
        let (total, listener) = server.await.unwrap();
        assert_eq!(total, 8 * 40);
        drop(listener);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_interleave_on_one_server() {
    let Some(_serial) = setup(module_path!(), "eight_clients_interleave_on_one_server").await
    else {
        return;
    };
    let address = address("eight");
    eight_clients_interleave(&address).await;
    assert!(!queue_exists(&address));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_ends_the_client_promptly() {
    let Some(_serial) = setup(module_path!(), "a_dropped_server_ends_the_client_promptly").await
    else {
        return;
    };
    let address = address("server-gone");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (mut tx, mut rx, _) = client.split();
    let (server_tx, _server_rx, _) = server.split();
    // Flood the server, which reads nothing: its inbox fills up to the credit window, and a
    // send waits for credit that never comes.
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let blocked = tokio::spawn({
        let count = count.clone();
        async move {
            let mut sent = 0usize;
            loop {
                let result = tx.send(pattern(100, 1)).await;
                if result.is_err() {
                    return (result, sent, tx);
                }
                sent += 1;
                count.store(sent, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let window = super::link::CREDIT_WINDOW as usize;
    bounded("filling the window", async {
        while count.load(std::sync::atomic::Ordering::SeqCst) < window {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !blocked.is_finished(),
        "the flood must be waiting for credit"
    );
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), window);
    // The server "dies" without saying goodbye (its sender forgotten, so no BYE): the client
    // must see the socket close.
    let link = link_of(&server_tx);
    std::mem::forget(server_tx);
    drop(_server_rx);
    drop(listener);
    link.shutdown_for_tests();
    let started = std::time::Instant::now();
    let (result, sent, mut tx) = bounded("the blocked send", blocked).await.unwrap();
    assert!(matches!(result, Err(TransportError::Closed)), "{result:?}");
    assert_eq!(sent, window);
    assert!(matches!(
        tx.send(Frame::from_payload(b"x")).await,
        Err(TransportError::Closed)
    ));
    assert_eq!(bounded("recv", rx.recv()).await.unwrap(), None);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!queue_exists(&address));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_ends_the_server_connection() {
    let Some(_serial) = setup(
        module_path!(),
        "a_dropped_client_ends_the_server_connection",
    )
    .await
    else {
        return;
    };
    let address = address("client-gone");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    // Said goodbye: everything sent arrives, then the end.
    let (mut client, mut server) = pair(&listener, &address).await;
    client
        .send(Frame::from_payload(b"last words"))
        .await
        .unwrap();
    drop(client);
    let frame = bounded("recv", server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"last words")));
    assert_eq!(bounded("recv", server.recv()).await.unwrap(), None);
    // Vanished without a goodbye (its sender forgotten, so no BYE is sent): the socket's
    // close ends the connection, after what it sent.
    let (client, mut server) = pair(&listener, &address).await;
    let (mut tx, rx, _) = client.split();
    tx.send(Frame::from_payload(b"before dying")).await.unwrap();
    let link = link_of(&tx);
    std::mem::forget(tx);
    drop(rx);
    link.shutdown_for_tests();
    let frame = bounded("recv", server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"before dying")));
    assert_eq!(bounded("recv", server.recv()).await.unwrap(), None);
    assert!(matches!(
        server.send(Frame::from_payload(b"x")).await,
        Err(TransportError::Closed)
    ));
}

#[tokio::test]
async fn a_second_server_gets_address_in_use() {
    let Some(_serial) = setup(module_path!(), "a_second_server_gets_address_in_use").await else {
        return;
    };
    let address = address("twice");
    let config = TransportConfig::default();
    let first = Listener::bind(&address, &config).await.unwrap();
    let second = Listener::bind(&address, &config).await;
    assert!(
        matches!(second, Err(TransportError::AddressInUse { .. })),
        "{second:?}"
    );
    // The server queue never keeps its name, and the failed bind did not disturb the live
    // server: it still serves.
    assert!(!queue_exists(&address));
    let (mut client, mut server) = pair(&first, &address).await;
    client.send(Frame::from_payload(b"first")).await.unwrap();
    let frame = bounded("recv", server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"first")));
    drop((client, server, first));
    drop(bind_once_free(&address, &config).await);
}

#[tokio::test]
async fn a_stale_queue_is_replaced_and_nothing_is_left() {
    let Some(_serial) = setup(
        module_path!(),
        "a_stale_queue_is_replaced_and_nothing_is_left",
    )
    .await
    else {
        return;
    };
    let address = address("stale");
    let name = &address.name().unwrap();
    // What a killed server leaves: the queue, with a message in it.
    let stale = mq_open(
        format!("/{name}").as_str(),
        MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_WRONLY,
        Mode::S_IRUSR | Mode::S_IWUSR,
        Some(&nix::mqueue::MqAttr::new(0, 4, 64, 0)),
    )
    .unwrap();
    nix::mqueue::mq_send(&stale, b"garbage from the old life", 0).unwrap();
    let _ = nix::mqueue::mq_close(stale);
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    // Replaced by a queue without a name.
    assert!(!queue_exists(&address));
    let (mut client, mut server) = pair(&listener, &address).await;
    client.send(Frame::from_payload(b"fresh")).await.unwrap();
    let frame = bounded("recv", server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"fresh")));
    drop((client, server, listener));
    assert!(!queue_exists(&address));
}

#[tokio::test]
async fn connecting_to_nobody_is_a_connect_error() {
    let Some(_serial) = setup(module_path!(), "connecting_to_nobody_is_a_connect_error").await
    else {
        return;
    };
    let address = address("nobody");
    let result = connect(&address, &TransportConfig::default()).await;
    match result {
        Err(TransportError::Connect { source, .. }) => {
            assert!(source.to_string().contains("no server"), "{source}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_client_without_a_runtime_talks_to_an_async_server() {
    let Some(_serial) = setup(
        module_path!(),
        "a_blocking_client_without_a_runtime_talks_to_an_async_server",
    )
    .await
    else {
        return;
    };
    let address = address("blocking");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let connection = listener.accept().await.unwrap();
        let (mut tx, mut rx, _) = connection.split();
        while let Some(frame) = rx.recv().await.unwrap() {
            tx.send(frame).await.unwrap();
        }
        tx.close().await.unwrap();
        listener
    });
    let client_address = address.clone();
    let client = std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let config = TransportConfig::default();
        let mut connection = connect_blocking(&client_address, &config, LIMIT).unwrap();
        // Nothing to read yet: the deadline is kept.
        let started = std::time::Instant::now();
        assert!(matches!(
            connection.recv(Deadline::After(Duration::from_millis(50))),
            Err(TransportError::TimedOut)
        ));
        assert!(started.elapsed() >= Duration::from_millis(50));
        for (i, len) in [0usize, 5, 8176, 8177, 300_000].into_iter().enumerate() {
            connection
                .send(pattern(len, i as u8), Deadline::After(LIMIT))
                .unwrap();
            let frame = connection.recv(Deadline::After(LIMIT)).unwrap().unwrap();
            assert!(frame == pattern(len, i as u8), "frame of {len} bytes");
        }
        let (mut tx, mut rx, _) = connection.split();
        tx.close();
        assert_eq!(rx.recv(Deadline::After(LIMIT)).unwrap(), None);
    });
    bounded("the blocking client", async {
        while !client.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    client.join().unwrap();
    let listener = bounded("the server", server).await.unwrap();
    drop(listener);
    assert!(!queue_exists(&address));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_with_extra_descriptors_is_refused_and_none_leak() {
    use super::rendezvous::tests::{marker, open_on, send_dups};
    let Some(_serial) = setup(
        module_path!(),
        "a_hello_with_extra_descriptors_is_refused_and_none_leak",
    )
    .await
    else {
        return;
    };
    let address = address("extra-fds");
    let config = TransportConfig::default();
    let listener = std::sync::Arc::new(Listener::bind(&address, &config).await.unwrap());
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let accepting = tokio::spawn({
        let listener = listener.clone();
        async move {
            loop {
                let connection = listener.accept().await.unwrap();
                if accepted_tx.send(connection).is_err() {
                    return;
                }
            }
        }
    });
    let name = &address.name().unwrap();
    let (path, file) = marker("fds-hello");
    let connecting =
        super::rendezvous::Connecting::new(&super::rendezvous::socket_name(name)).unwrap();
    assert!(connecting.attempt().unwrap());
    let socket = tokio::net::UnixStream::from_std(connecting.into_stream()).unwrap();
    // A hello with seven descriptors instead of one.
    send_dups(&socket, &super::rendezvous::hello(), &file, 7);
    // The server hangs up without a welcome ...
    bounded("the refusal", async {
        let mut scrap = [0u8; 64];
        loop {
            socket.readable().await.unwrap();
            match socket.try_read(&mut scrap) {
                Ok(0) => return,
                Ok(n) => panic!("the server answered a bad hello with {n} bytes"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
    // ... having closed every descriptor it was sent ...
    assert_eq!(open_on(&path), 1);
    drop(file);
    let _ = std::fs::remove_file(&path);
    // ... and keeps serving.
    let mut client = bounded("connect", connect(&address, &config))
        .await
        .unwrap();
    let mut server = bounded("accept", accepted.recv()).await.unwrap();
    client
        .send(Frame::from_payload(b"still here"))
        .await
        .unwrap();
    let frame = bounded("recv", server.recv()).await.unwrap();
    assert_eq!(frame, Some(Frame::from_payload(b"still here")));
    accepting.abort();
    let _ = accepting.await;
    drop((client, server));
    drop(std::sync::Arc::into_inner(listener).expect("the only listener"));
    assert!(!queue_exists(&address));
}
