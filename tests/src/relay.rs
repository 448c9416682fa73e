//! [`Relay`]: a TCP relay between a client and a server that can go silent, the way a link
//! that is cut (or a firewall that starts dropping) leaves both ends' sockets open while no
//! byte gets through: a half-open connection, made on one machine for the quick tests (the
//! cross-host suite cuts real links between network namespaces).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Relays every connection made to [`Relay::address`] to a target address.
pub struct Relay {
    address: String,
    silent: Arc<AtomicBool>,
    /// Tells every relayed connection to close (both of its sockets).
    closing: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Relay {
    /// A relay on 127.0.0.1 to `target` (`HOST:PORT`).
    pub async fn start(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let address = format!("tcp://{}", listener.local_addr().expect("relay address"));
        let silent = Arc::new(AtomicBool::new(false));
        let (closing, _) = watch::channel(0);
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        let target = target.to_owned();
        let (s, c, a) = (silent.clone(), closing.clone(), accepted.clone());
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                connections.spawn(relay_one(client, server, s.clone(), c.subscribe()));
            }
        });
        Relay {
            address,
            silent,
            closing,
            accepted,
            tasks,
        }
    }

    /// The address clients connect to (`tcp://127.0.0.1:PORT`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// From now on no byte gets through, either way; every socket stays open.
    pub fn go_silent(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Bytes flow again (those held back while silent are dropped, as on a lossy link).
    pub fn speak(&self) {
        self.silent.store(false, Ordering::SeqCst);
    }

    /// Closes every relayed connection (both sockets), as a server restart would.
    pub fn close_all(&self) {
        self.closing.send_modify(|n| *n += 1);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn relay_one(
    client: TcpStream,
    server: TcpStream,
    silent: Arc<AtomicBool>,
    mut closing: watch::Receiver<u64>,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, silent.clone()) => {}
        _ = pump(server_read, client_write, silent) => {}
        _ = closing.changed() => {}
    }
    // Both sockets are dropped here; a silent relay keeps them open (the pumps never end).
}

/// Copies `from` to `to`, dropping what arrives while `silent`; ends when `from` ends.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    silent: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                if silent.load(Ordering::SeqCst) {
                    // A silent link carries no end either: stay half-open.
                    std::future::pending::<()>().await;
                }
                return;
            }
            Ok(n) => n,
        };
        if silent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// How long to wait, at most, for something the relay tests expect.
pub const RELAY_WAIT: Duration = Duration::from_secs(10);
