//! A same-user process against `sysv-mq`: a fake server whose welcome names queues that are
//! not a fresh private pair of ours, and messages written straight into a connection's queue
//! (`msgsnd` on the id `/proc/sysvipc/msg` shows). Each ends that connection with an error at
//! most, never a panic or a hang, and leaves no queue behind.

use super::super::handshake::{self, Welcome};
use super::super::queue::{DATA, Queue};
use super::super::sys::{self, MsgBuf};
use std::time::Duration;

use super::{address, assert_gone, bounded, pair, queues_of};
use crate::{Frame, Listener, TransportConfig, TransportError, connect};
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;

/// Changes a queue's owner and mode (`IPC_SET`; root may give it to anyone).
fn set_owner_and_mode(id: i32, uid: u32, mode: u16) {
    let mut ds = sys::stat(id).unwrap();
    ds.msg_perm.uid = uid;
    ds.msg_perm.mode = mode;
    // SAFETY: `ds` is a valid `msqid_ds` that outlives the call, which only reads it.
    let set = unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) };
    assert_eq!(set, 0, "IPC_SET: {}", std::io::Error::last_os_error());
}

/// Removes a queue by id whatever its owner (root may).
fn remove(id: i32) {
    let _ = sys::remove(id);
}

/// A fake server on `sysv-mq://NAME` (our own uid, as the client requires) that welcomes one
/// client with `welcome`; its socket stays open until the returned sender is dropped.
fn fake_server(name: &str, welcome: Welcome) -> std::sync::mpsc::Sender<()> {
    let socket =
        std::os::unix::net::SocketAddr::from_abstract_name(format!("rpc-sysv-mq/{name}")).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&socket).unwrap();
    let (keep, hold) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut hello = [0u8; handshake::HELLO_LEN];
        stream.read_exact(&mut hello).unwrap();
        stream.write_all(&handshake::welcome(welcome)).unwrap();
        let _ = hold.recv_timeout(super::LIMIT);
    });
    keep
}

/// Connects to a fake server welcoming with `to_server` and `to_client`: the error's text.
async fn refused(tag: &str, to_server: i32, to_client: i32) -> String {
    let address = address(tag);
    let name = address.name().unwrap();
    let keep = fake_server(
        &name,
        Welcome {
            token: 7,
            msgsize: 4096,
            to_server,
            to_client,
        },
    );
    let outcome = bounded("connect", connect(&address, &TransportConfig::default())).await;
    drop(keep);
    match outcome {
        Ok(_) => format!("ACCEPTED queues {to_server} and {to_client}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_naming_queues_that_are_not_a_fresh_private_pair_of_ours_is_refused() {
    let root = nix::unistd::geteuid().is_root();
    let good = Queue::create("test").unwrap();
    let other = Queue::create("test").unwrap();

    // The same queue both ways: the client would read its own messages.
    let text = refused("same-queue", good.id(), good.id()).await;
    assert!(text.contains("for both directions"), "{text}");

    // A queue that does not exist.
    let text = refused("missing", good.id(), i32::MAX).await;
    assert!(text.contains("cannot look at it"), "{text}");

    // A queue of mode 0666 (anyone may read it).
    set_owner_and_mode(other.id(), nix::unistd::geteuid().as_raw(), 0o666);
    let text = refused("mode", good.id(), other.id()).await;
    assert!(text.contains("mode 666"), "{text}");

    // A queue with a key (anyone who knows the key finds it).
    let key = 0x5eed_0000 | (std::process::id() as i32 & 0xffff);
    // SAFETY: msgget takes no pointer.
    let keyed = unsafe { libc::msgget(key, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) };
    assert!(keyed >= 0, "{}", std::io::Error::last_os_error());
    let text = refused("keyed", keyed, good.id()).await;
    assert!(text.contains("not a private queue"), "{text}");
    remove(keyed);

    // A queue of another user (root can make one).
    if root {
        set_owner_and_mode(other.id(), 65534, 0o600);
        let text = refused("stranger", good.id(), other.id()).await;
        assert!(text.contains("owned by uid 65534"), "{text}");
    }
    remove(other.id());
    assert!(good.remove());
}

/// Writes one raw message (`mtype`, `text`) into queue `id`, as any process of our user can.
fn inject(id: i32, mtype: i64, text: &[u8]) {
    let mut buf = MsgBuf::new(text.len());
    buf.load(mtype, text);
    sys::send(id, &buf, true).unwrap();
}

/// A wire header: kind, length, token.
fn header(kind: u8, length: u32, token: u64) -> Vec<u8> {
    let mut out = vec![kind, 0, 0, 0];
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&token.to_le_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_written_into_a_connections_queue_end_it_cleanly_at_most() {
    let address = address("inject");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    // Each case on a fresh connection: what is written into the server's queue, and whether
    // the connection survives it.
    let cases: [(&str, i64, Vec<u8>, bool); 6] = [
        ("a stranger's token", DATA, header(1, 5, 0xdead), false),
        ("a short message", DATA, vec![1, 2, 3], false),
        ("an empty message", DATA, Vec::new(), false),
        ("a message of another type", 77, b"whatever".to_vec(), true),
        ("a wake-up with text", 2, vec![9; 100], true),
        (
            "a huge frame announced",
            DATA,
            header(1, u32::MAX, 0xdead),
            false,
        ),
    ];
    for (what, mtype, text, survives) in cases {
        let (client, server) = pair(&listener, &address).await;
        let (mut client_tx, client_rx, _) = client.split();
        let (server_tx, mut server_rx, _) = server.split();
        let ids = queues_of(&client_tx);
        // The queue the client writes and the server reads.
        inject(ids[1], mtype, &text);
        client_tx.send(Frame::from_payload(b"real")).await.unwrap();
        let got = bounded(what, server_rx.recv()).await;
        if survives {
            assert_eq!(got.unwrap(), Some(Frame::from_payload(b"real")), "{what}");
        } else {
            assert!(
                matches!(
                    got,
                    Err(TransportError::Malformed(_) | TransportError::FrameTooLarge { .. })
                ),
                "{what}: {got:?}"
            );
            // The end sticks.
            assert!(bounded(what, server_rx.recv()).await.is_err(), "{what}");
        }
        drop((client_tx, client_rx, server_tx, server_rx));
        assert_gone(&ids).await;
    }
    // A queue flooded with junk of another type: the reader skips it, and the real frame
    // (bigger than what is left of the queue) still gets through.
    let (client, server) = pair(&listener, &address).await;
    let (mut client_tx, client_rx, _) = client.split();
    let (server_tx, mut server_rx, _) = server.split();
    let ids = queues_of(&client_tx);
    let mut junk = MsgBuf::new(1000);
    junk.load(77, &[0; 1000]);
    while sys::send(ids[1], &junk, true).is_ok() {}
    let sending = tokio::spawn(async move {
        client_tx
            .send(Frame::from_payload(&[3; 50_000]))
            .await
            .unwrap();
        client_tx
    });
    let got = bounded("through the junk", server_rx.recv()).await.unwrap();
    assert_eq!(got.map(|f| f.len()), Some(50_000));
    let client_tx = bounded("the send", sending).await.unwrap();
    drop((client_tx, client_rx, server_tx, server_rx, listener));
    assert_gone(&ids).await;
}

/// A queue's size lowered (`IPC_SET`, by its owner: any process of our user) below the
/// message size while a large frame waits for room in it: the send fails naming
/// `kernel.msgmnb`, rather than its writer thread waiting forever in `msgsnd` for room for a
/// message that can never fit.
///
/// Ignored: it hangs. A `msgsnd` without `IPC_NOWAIT` of a message larger than the queue
/// sleeps until the queue is removed (the kernel wakes it at `IPC_SET`, and it sleeps again),
/// and only the peer's death or our close timer remove it, by an identity check on
/// `msg_ctime` that this very `IPC_SET` may have changed. Only a process of the same user can
/// shrink the queue (`kernel.msgmnb` itself applies to new queues only), and calls have their
/// own timeouts above the transport; the fix (the send's wait looking at the queue's size, and
/// a removal that survives a changed `msg_ctime`) is left for later.
#[ignore = "hangs: a writer thread blocked in msgsnd never sees its queue shrunk"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_shrunk_under_a_waiting_send_fails_it_by_name() {
    let address = address("shrunk");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (mut client_tx, client_rx, _) = client.split();
    let (server_tx, mut server_rx, _) = server.split();
    let ids = queues_of(&client_tx);
    // A frame far larger than the queue: its writer thread waits for room.
    let sending = tokio::spawn(async move {
        let result = client_tx.send(Frame::filled(1 << 20, |_| ())).await;
        (result, client_tx)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    sys::set_qbytes(ids[1], 1024).unwrap();
    // The server drains what fits; the next message never will.
    let receiving = tokio::spawn(async move {
        let result = server_rx.recv().await;
        (result, server_rx)
    });
    let (result, client_tx) = bounded("the send into a shrunk queue", sending)
        .await
        .unwrap();
    match result {
        Err(TransportError::LimitReached { limit, .. }) => assert_eq!(limit, "kernel.msgmnb"),
        other => panic!("{other:?}"),
    }
    drop((client_tx, client_rx));
    let (result, server_rx) = bounded("the receive", receiving).await.unwrap();
    assert!(result.is_err(), "{result:?}");
    drop((server_tx, server_rx, listener));
    // Our own queue (made by the server, whose ctime IPC_SET changed) may stay: remove it.
    for id in ids {
        let _ = sys::remove(id);
    }
}

/// A queue whose settings a process of our user changed (`IPC_SET`, raising or lowering its
/// size: an administrator's tuning) is still removed when its connection ends.
///
/// Ignored: it is left in `ipcs -q`. `IPC_SET` sets the queue's `msg_ctime`, which every
/// removal compares with the creation time it noted, to tell the queue from a later one that
/// took its id; a changed queue looks like another and is never removed, by the connection or
/// by a ledger reclaim. Telling them apart otherwise (a live link trusting the creator and key
/// alone, say) weakens the guard against reused ids, so it is left as a known limit.
#[ignore = "leaks: IPC_SET changes msg_ctime, the identity every removal checks"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_tuned_with_ipc_set_still_goes_with_its_connection() {
    let address = address("tuned");
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let (client, server) = pair(&listener, &address).await;
    let (client_tx, client_rx, _) = client.split();
    let ids = queues_of(&client_tx);
    // A later second than the queues' creation.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sys::set_qbytes(ids[0], 12_000).unwrap();
    drop((client_tx, client_rx, server, listener));
    let started = std::time::Instant::now();
    let left = loop {
        let left: Vec<i32> = super::listed()
            .into_iter()
            .filter(|id| ids.contains(id))
            .collect();
        if left.is_empty() || started.elapsed() > Duration::from_secs(3) {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for id in &left {
        let _ = sys::remove(*id);
    }
    assert!(
        left.is_empty(),
        "queues {left:?} left after their connection ended"
    );
}
