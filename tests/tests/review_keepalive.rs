//! Review of the keepalive against a peer that is gone while bytes are still on their way: a
//! relay that stops *reading* (rather than reading and dropping, as `Relay::go_silent` does),
//! so the other end's writes block once the sockets' buffers are full, the way they do when
//! the peer's machine lost power with data in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{ClientOptions, Keepalive, RpcError, Server, ServerHandle};
use rpc_tests::relay::RELAY_WAIT;
use rpc_tests::{ProbeClient, ProbeImpl, ProbeServer, bounded, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const QUICK: Duration = Duration::from_millis(200);

/// A relay whose two directions can each stop reading: what is written towards a frozen
/// direction fills the buffers and then blocks the writer.
struct FreezingRelay {
    address: String,
    /// Server to client stops.
    down: Arc<Frozen>,
    /// Client to server stops.
    up: Arc<Frozen>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Frozen {
    flag: AtomicBool,
    changed: Notify,
}

impl Frozen {
    fn freeze(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Returns once this direction may be read (never, once frozen).
    async fn wait_thawed(&self) {
        loop {
            let changed = self.changed.notified();
            if !self.flag.load(Ordering::SeqCst) {
                return;
            }
            changed.await;
        }
    }
}

impl FreezingRelay {
    async fn start(target: &str) -> FreezingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("tcp://{}", listener.local_addr().unwrap());
        let (down, up) = (Arc::new(Frozen::default()), Arc::new(Frozen::default()));
        let target = target.to_owned();
        let (d, u) = (down.clone(), up.clone());
        let task = tokio::spawn(async move {
            let mut pumps = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                pumps.spawn(pump(cr, sw, u.clone()));
                pumps.spawn(pump(sr, cw, d.clone()));
            }
        });
        FreezingRelay {
            address,
            down,
            up,
            task,
        }
    }
}

impl Drop for FreezingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<Frozen>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        frozen.wait_thawed().await;
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        frozen.wait_thawed().await;
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

async fn server(keepalive: Option<Keepalive>) -> ServerHandle {
    Server::new()
        .keepalive(keepalive)
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &["tcp://127.0.0.1:0"],
        )
        .await
        .expect("start the server")
}

fn target(handle: &ServerHandle) -> String {
    handle
        .local_address()
        .trim_start_matches("tcp://")
        .to_owned()
}

/// The client's keepalive gives the connection up: calls still waiting to write their
/// request (the dead peer's buffers are full) must fail too, not wait on for ever.
#[tokio::test]
async fn review_calls_blocked_writing_fail_when_the_clients_keepalive_lapses() {
    let handle = server(None).await;
    let relay = FreezingRelay::start(&target(&handle)).await;
    let keepalive = Keepalive::new(QUICK, QUICK);
    let options = ClientOptions::default()
        .keepalive(Some(keepalive))
        .call_timeout(None);
    let probe = ProbeClient::connect_with(&relay.address, options)
        .await
        .unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    relay.up.freeze();
    relay.down.freeze();
    // 64 MiB of requests: far more than the sockets on the way can hold.
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let probe = probe.clone();
            tokio::spawn(async move { probe.echo(vec![7u8; 4 << 20]).await })
        })
        .collect();
    let frozen = Instant::now();
    for call in calls {
        let outcome = bounded(RELAY_WAIT, "a call on a dead connection", call)
            .await
            .unwrap();
        assert!(
            matches!(&outcome, Err(RpcError::Disconnected { reason }) if reason.contains("keepalive")),
            "{outcome:?}"
        );
    }
    assert!(
        frozen.elapsed() < keepalive.bound() * 10,
        "took {:?}",
        frozen.elapsed()
    );
}

/// The server's keepalive frees the connection of a client that vanished while the server
/// was writing to it (its replies fill the buffers, and the budget of unsent replies).
///
/// Finding, not fixed: while the read loop waits for the replies' budget (`unread`), the
/// keepalive is not watched at all, and a lapse would then wait on `sink.close()` behind the
/// writer stuck on the full socket. Telling a dead reader from a slow one there needs write
/// progress from the transport (a large frame is one write), see the next test.
#[tokio::test]
#[ignore = "review finding: the server's keepalive does not free a connection blocked writing"]
async fn review_the_server_frees_a_vanished_client_it_was_writing_to() {
    let keepalive = Keepalive::new(QUICK, QUICK);
    let handle = server(Some(keepalive)).await;
    let relay = FreezingRelay::start(&target(&handle)).await;
    // The client answers pings but would not give up on its own for a minute.
    let long = Keepalive::new(Duration::from_secs(60), Duration::from_secs(60));
    let options = ClientOptions::default()
        .keepalive(Some(long))
        .call_timeout(None);
    let probe = ProbeClient::connect_with(&relay.address, options)
        .await
        .unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    // Replies stop getting through; the requests for 64 MiB of them still arrive.
    relay.down.freeze();
    let _calls: Vec<_> = (0..16)
        .map(|_| {
            let probe = probe.clone();
            tokio::spawn(async move { probe.fill(4 << 20).await })
        })
        .collect();
    // Give the requests time to arrive, then nothing gets through either way.
    tokio::time::sleep(QUICK).await;
    relay.up.freeze();
    let frozen = Instant::now();
    assert!(
        eventually(RELAY_WAIT, || handle.connections() == 0).await,
        "the server kept a vanished client's connection for {:?} (keepalive bound {:?})",
        frozen.elapsed(),
        keepalive.bound()
    );
}

/// A client that is alive but reads a large reply slowly (a slow link) is not dropped by the
/// server's keepalive while the reply is still making progress. (It passes today partly
/// because the keepalive is not watched while the read loop sends: a fix of the test above
/// must keep it passing.)
#[tokio::test]
async fn review_a_slow_but_alive_reader_is_not_pinged_away() {
    let keepalive = Keepalive::new(Duration::from_millis(100), Duration::from_millis(100));
    let handle = server(Some(keepalive)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    let upstream = target(&handle);
    // A relay that passes the client's bytes at once and the server's at 4 MiB/s.
    let relay = tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(&upstream).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if cw.write_all(&buffer[..n]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        up.abort();
    });
    let options = ClientOptions::default()
        .keepalive(Some(Keepalive::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
        )))
        .call_timeout(Some(RELAY_WAIT));
    let probe = ProbeClient::connect_with(&address, options).await.unwrap();
    // 8 MiB take about two seconds: ten times the server's keepalive bound.
    let data = bounded(RELAY_WAIT, "a slow reply", probe.fill(8 << 20))
        .await
        .expect("the slow reply");
    assert_eq!(data.len(), 8 << 20);
    relay.abort();
}
