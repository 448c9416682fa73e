//! The `tls://` listener: [`Acceptor::accept`] accepts TCP connections and runs each one's
//! TLS handshake in a task of its own, under a time limit, handing finished connections to
//! the next call.
//!
//! So a client that connects and says nothing, or sends garbage, costs only its own task (at
//! most the handshake timeout) and never delays anyone else's accept. A failed handshake is
//! logged (`warn`, with the reason) and the listener goes on.
//!
//! At most [`MAX_PENDING_HANDSHAKES`] handshakes run at once. When they all run and one more
//! connection arrives, one of them gives way to it ([`Running::evictable`]): the oldest that
//! has sent nothing at all for [`SILENT_AGE`] since its task first looked, else the oldest, once
//! it has run for [`STALLED_AGE`]; until then the new connection waits. A real client sends
//! its ClientHello as it connects, so a flood of silent connections delays real clients by
//! about a second instead of locking them out for the handshake timeout, and a herd of real
//! clients larger than the limit (waiting for the CPU, say) is served in turn rather than
//! evicted by its own members. At most as many finished connections wait for `accept`.
//!
//! The listening socket belongs to the acceptor itself (no background task owns it), so
//! dropping the acceptor frees the port at once; the handshakes still running are aborted
//! with it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;

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

/// Handshakes at most running at once (as many as the RPC handshakes a server admits by
/// default); also the finished connections at most waiting for [`Acceptor::accept`].
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 1024;

/// A handshake whose client has sent nothing for this long since its task first read may give
/// way to a new connection (the handshake timeout, if shorter).
pub(crate) const SILENT_AGE: Duration = Duration::from_secs(1);

/// Any handshake that has run this long may give way to a new connection (the handshake
/// timeout, if shorter): a client that trickles its handshake out holds its place no longer.
pub(crate) const STALLED_AGE: Duration = Duration::from_secs(3);

/// How often a full listener looks again for a handshake that may give way (besides each time
/// one ends).
const RECHECK: Duration = Duration::from_millis(100);

/// How far a handshake has got, as its socket saw it.
#[derive(Debug, Default)]
struct Progress {
    /// The handshake read the socket (its task has run).
    read: AtomicBool,
    /// The client sent something.
    heard: AtomicBool,
}

/// A server's TCP stream noting the handshake's [`Progress`].
struct Watched {
    stream: TcpStream,
    progress: Arc<Progress>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if !self.progress.heard.load(Ordering::Relaxed) {
            if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                self.progress.heard.store(true, Ordering::Relaxed);
            }
            self.progress.read.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl AsFd for Watched {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

/// A running handshake.
#[derive(Debug)]
struct Entry {
    began: Instant,
    progress: Arc<Progress>,
    task: AbortHandle,
}

/// The handshakes running, oldest first: to choose one to give way when one more connection
/// arrives, and to abort them all when the acceptor goes.
#[derive(Debug, Default)]
struct Running {
    next: u64,
    tasks: BTreeMap<u64, Entry>,
}

/// How long handshakes hold their place before they may give way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ages {
    silent: Duration,
    stalled: Duration,
}

impl Running {
    /// The handshake to give way to a new connection at `now`, if one may: the oldest whose
    /// task has read and heard nothing for `ages.silent`, else the oldest if it has run for
    /// `ages.stalled`. One not read yet (its task waits for the CPU) is not silent: its
    /// ClientHello may be waiting in the socket.
    fn evictable(&self, now: Instant, ages: Ages) -> Option<u64> {
        let mut oldest = None;
        for (&id, entry) in &self.tasks {
            let age = now.saturating_duration_since(entry.began);
            if age < ages.silent {
                break;
            }
            oldest.get_or_insert((id, age));
            if entry.progress.read.load(Ordering::Relaxed)
                && !entry.progress.heard.load(Ordering::Relaxed)
            {
                return Some(id);
            }
        }
        oldest
            .filter(|(_, age)| *age >= ages.stalled)
            .map(|(id, _)| id)
    }

    /// `None` if a new handshake may start now (there is room, or a handshake may give way);
    /// else when to look again.
    fn room(&self, now: Instant, ages: Ages) -> Option<Instant> {
        if self.tasks.len() < MAX_PENDING_HANDSHAKES || self.evictable(now, ages).is_some() {
            return None;
        }
        Some(now + RECHECK)
    }
}

/// What the acceptor and its handshake tasks share.
#[derive(Debug, Default)]
struct Shared {
    running: Mutex<Running>,
    /// A handshake ended: there may be room.
    ended: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handshake `id` ended.
    fn ended(&self, id: u64) {
        self.lock().tasks.remove(&id);
        self.ended.notify_one();
    }
}

/// A listening `tls://` socket.
pub(crate) struct TlsAcceptor {
    tcp: TcpAcceptor,
    local: SocketAddr,
    handshake: Arc<Handshake>,
    ages: Ages,
    shared: Arc<Shared>,
    ready_tx: mpsc::Sender<Connection>,
    ready: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
}

impl TlsAcceptor {
    /// Listens on `address`.
    pub(crate) async fn bind(
        address: &Address,
        settings: &TlsServerSettings,
        config: &TransportConfig,
    ) -> Result<TlsAcceptor, TransportError> {
        let tcp = TcpAcceptor::bind(address, config).await?;
        let local = tcp.local_addr();
        let (ready_tx, ready) = mpsc::channel(MAX_PENDING_HANDSHAKES);
        let timeout = settings.handshake_timeout();
        let handshake = Handshake {
            acceptor: tokio_rustls::TlsAcceptor::from(settings.config()),
            timeout,
            config: config.clone(),
        };
        Ok(TlsAcceptor {
            tcp,
            local,
            ages: Ages {
                silent: SILENT_AGE.min(timeout),
                stalled: STALLED_AGE.min(timeout),
            },
            handshake: Arc::new(handshake),
            shared: Arc::default(),
            ready_tx,
            ready: tokio::sync::Mutex::new(ready),
        })
    }

    /// Starts the handshake of a new TCP connection, after the one that gives way to it
    /// should all places be taken (the caller waited until [`Running::room`] allowed it).
    fn start_handshake(&self, stream: TcpStream) {
        let addr = match stream.peer_addr() {
            Ok(addr) => addr,
            Err(error) => {
                tracing::debug!(%error, "dropping a TCP connection that left before TLS");
                return;
            }
        };
        let handshake = self.handshake.clone();
        let ready = self.ready_tx.clone();
        let shared = self.shared.clone();
        let progress = Arc::new(Progress::default());
        let stream = Watched {
            stream,
            progress: progress.clone(),
        };
        // Locked across the spawn, so the task cannot look for its entry before it is there.
        let mut running = self.shared.lock();
        if running.tasks.len() >= MAX_PENDING_HANDSHAKES {
            // Should nothing be evictable any more (it was a moment ago), the oldest.
            let now = Instant::now();
            let id = running
                .evictable(now, self.ages)
                .or_else(|| running.tasks.keys().next().copied());
            if let Some(entry) = id.and_then(|id| running.tasks.remove(&id)) {
                tracing::debug!(
                    age = ?now.saturating_duration_since(entry.began),
                    heard = entry.progress.heard.load(Ordering::Relaxed),
                    "{MAX_PENDING_HANDSHAKES} TLS handshakes running: one gives way to a new \
                     connection"
                );
                entry.task.abort();
            }
        }
        let id = running.next;
        running.next += 1;
        let task = tokio::spawn(async move {
            let outcome = handshake.run(stream, addr).await;
            shared.ended(id);
            match outcome {
                Ok(connection) => {
                    // The acceptor is gone if this fails: the connection is dropped with it.
                    let _ = ready.send(connection).await;
                }
                Err(reason) => {
                    tracing::warn!(peer = %addr, %reason, "TLS handshake failed; connection dropped");
                }
            }
        });
        running.tasks.insert(
            id,
            Entry {
                began: Instant::now(),
                progress,
                task: task.abort_handle(),
            },
        );
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        // The listening socket closes with `tcp`, now; the handshakes still running go too.
        for (_, entry) in std::mem::take(&mut self.shared.lock().tasks) {
            entry.task.abort();
        }
    }
}

impl Acceptor for TlsAcceptor {
    fn local_address(&self) -> Address {
        Address::from_target("tls", &target_of(self.local))
    }

    /// Cancellation safe: a finished connection stays in the queue until a call takes it, and
    /// a TCP connection accepted is handed to its handshake task before anything else.
    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let mut ready = self.ready.lock().await;
            loop {
                // Before the room is looked at, so an end in between is not missed.
                let ended = self.shared.ended.notified();
                let wait = self.shared.lock().room(Instant::now(), self.ages);
                tokio::select! {
                    biased;
                    connection = ready.recv() => {
                        return connection.ok_or(TransportError::Closed);
                    }
                    stream = self.tcp.accept_stream(), if wait.is_none() => {
                        self.start_handshake(stream?);
                    }
                    _ = ended, if wait.is_some() => {}
                    _ = tokio::time::sleep_until(wait.unwrap_or_else(Instant::now)), if wait.is_some() => {}
                }
            }
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
    async fn run(&self, stream: Watched, addr: SocketAddr) -> Result<Connection, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const AGES: Ages = Ages {
        silent: Duration::from_secs(1),
        stalled: Duration::from_secs(3),
    };

    fn progress(read: bool, heard: bool) -> Arc<Progress> {
        Arc::new(Progress {
            read: AtomicBool::new(read),
            heard: AtomicBool::new(heard),
        })
    }

    #[tokio::test]
    async fn silent_handshakes_give_way_after_a_second_busy_ones_after_three() {
        let task = tokio::spawn(std::future::pending::<()>());
        let now = Instant::now();
        let mut running = Running::default();
        let mut add = |id: u64, age: u64, read: bool, heard: bool| {
            running.tasks.insert(
                id,
                Entry {
                    began: now - Duration::from_millis(age),
                    progress: progress(read, heard),
                    task: task.abort_handle(),
                },
            );
        };
        // Oldest first: heard from (2.5 s), not read yet (2 s), silent (1.5 s), young (0.1 s).
        add(0, 2500, true, true);
        add(1, 2000, false, false);
        add(2, 1500, true, false);
        for id in 3..MAX_PENDING_HANDSHAKES as u64 {
            add(id, 100, true, false);
        }
        assert_eq!(
            running.evictable(now, AGES),
            Some(2),
            "the oldest silent one"
        );
        assert_eq!(running.room(now, AGES), None);
        running.tasks.remove(&2);
        running.tasks.insert(
            2,
            Entry {
                began: now,
                progress: progress(true, false),
                task: task.abort_handle(),
            },
        );
        assert_eq!(
            running.evictable(now, AGES),
            None,
            "none silent, none stalled"
        );
        assert_eq!(running.room(now, AGES), Some(now + RECHECK));
        let later = now + Duration::from_millis(600);
        assert_eq!(
            running.evictable(later, AGES),
            Some(0),
            "the oldest has stalled"
        );
        running.tasks.remove(&0);
        assert_eq!(running.room(now, AGES), None, "one ended: room");
        task.abort();
    }
}
