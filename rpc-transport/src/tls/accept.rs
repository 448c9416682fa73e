//! The `tls://` listener: a background task accepts TCP connections and runs each one's TLS
//! handshake in a task of its own, under a time limit, handing finished connections to
//! [`Acceptor::accept`].
//!
//! So a client that connects and says nothing, or sends garbage, costs only its own task (at
//! most the handshake timeout) and never delays anyone else's accept. A failed handshake is
//! logged (`warn`, with the reason) and the listener goes on. At most
//! [`MAX_PENDING_HANDSHAKES`] connections are between the TCP accept and the server's accept
//! at once (handshaking, or done and waiting); past that, new connections wait in the
//! kernel's backlog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinSet;

use super::halves;
use super::identity::peer_certificate;
use super::reason::{self, Role};
use super::settings::TlsServerSettings;
use crate::address::Address;
use crate::config::TransportConfig;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::tcp::{TcpAcceptor, target_of};
use crate::transport::{Acceptor, BoxFuture};

/// Connections at most between the TCP accept and [`Acceptor::accept`] at once.
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 256;

/// How long the accept loop pauses after the listening socket fails (out of descriptors,
/// say), rather than spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// A listening `tls://` socket.
pub(crate) struct TlsAcceptor {
    local: SocketAddr,
    ready: Mutex<mpsc::Receiver<Result<Connection, TransportError>>>,
    /// The accept loop; aborted (with every handshake it runs) when the acceptor is dropped.
    task: tokio::task::AbortHandle,
}

impl TlsAcceptor {
    /// Listens on `address` and starts the accept loop.
    pub(crate) async fn bind(
        address: &Address,
        settings: &TlsServerSettings,
        config: &TransportConfig,
    ) -> Result<TlsAcceptor, TransportError> {
        let tcp = TcpAcceptor::bind(address, config).await?;
        let local = tcp.local_addr();
        let (ready_tx, ready) = mpsc::channel(MAX_PENDING_HANDSHAKES);
        let handshake = Handshake {
            acceptor: tokio_rustls::TlsAcceptor::from(settings.config()),
            timeout: settings.handshake_timeout(),
            config: config.clone(),
        };
        let task = tokio::spawn(accept_loop(tcp, handshake, ready_tx)).abort_handle();
        Ok(TlsAcceptor {
            local,
            ready: Mutex::new(ready),
            task,
        })
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Acceptor for TlsAcceptor {
    fn local_address(&self) -> Address {
        Address::from_target("tls", &target_of(self.local))
    }

    /// Cancellation safe: the connection stays in the queue until a receive takes it.
    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let mut ready = self.ready.lock().await;
            ready.recv().await.unwrap_or(Err(TransportError::Closed))
        })
    }
}

/// What every handshake of one listener needs.
struct Handshake {
    acceptor: tokio_rustls::TlsAcceptor,
    timeout: Duration,
    config: TransportConfig,
}

impl Handshake {
    /// The TLS handshake with a client over `stream`, within the time limit.
    async fn run(&self, stream: TcpStream, addr: SocketAddr) -> Result<Connection, String> {
        let tls = tokio::time::timeout(self.timeout, self.acceptor.accept(stream))
            .await
            .map_err(|_| {
                format!(
                    "the client did not complete the TLS handshake within {:?}",
                    self.timeout
                )
            })?
            .map_err(|error| match reason::rustls_error(&error) {
                Some(tls) => reason::describe(tls, Role::Server),
                None => format!("the connection failed during the TLS handshake: {error}"),
            })?;
        let certificate = match tls.get_ref().1.peer_certificates() {
            Some([end_entity, ..]) => Some(peer_certificate(end_entity)?),
            _ => None,
        };
        Ok(halves::connection(
            tls.into(),
            PeerInfo::Tls { addr, certificate },
            addr.to_string(),
            Role::Server,
            &self.config,
        ))
    }
}

/// Accepts TCP connections for as long as the acceptor lives, each handshake in its own
/// task; the tasks end with the loop (a [`JoinSet`] aborts them when dropped).
async fn accept_loop(
    tcp: TcpAcceptor,
    handshake: Handshake,
    ready: mpsc::Sender<Result<Connection, TransportError>>,
) {
    let handshake = Arc::new(handshake);
    let permits = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let mut handshakes = JoinSet::new();
    loop {
        // Reap finished handshakes so the set does not grow.
        while handshakes.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match tcp.accept_stream().await {
            Ok(stream) => stream,
            Err(error) => {
                if ready.send(Err(error)).await.is_err() {
                    return;
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let addr = match stream.peer_addr() {
            Ok(addr) => addr,
            Err(error) => {
                tracing::debug!(%error, "dropping a TCP connection that left before TLS");
                continue;
            }
        };
        let handshake = handshake.clone();
        let ready = ready.clone();
        handshakes.spawn(async move {
            match handshake.run(stream, addr).await {
                Ok(connection) => {
                    // The acceptor is gone if this fails: the connection is dropped with it.
                    let _ = ready.send(Ok(connection)).await;
                }
                Err(reason) => {
                    tracing::warn!(peer = %addr, %reason, "TLS handshake failed; connection dropped");
                }
            }
            drop(permit);
        });
    }
}
