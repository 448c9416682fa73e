//! [`Server`]: accepts connections on one or more addresses and serves its [`Service`]s on
//! each; a connection's handshake names the service it wants (`services.rs`).
//!
//! Every connection is a task (or, for the first shared-memory ones, a thread); a call's handler
//! is polled once where its request is read, and one that waits continues as a task of its
//! own, so one connection's calls run concurrently on a multi-threaded runtime; a handler that
//! computes for long is read around (`takeover.rs`). Limits (connections, calls in flight per
//! connection, frame size, memory) are explicit, and a client that hits one is told which.

mod access;
mod admission;
mod calls;
mod connection;
mod context;
mod dispatch;
mod handling;
mod handshake;
mod ready;
mod reply;
mod service;
mod services;
mod session;
mod session_end;
mod streaming;
mod takeover;
mod threaded;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use rpc_transport::{Address, Listener, TransportConfig, TransportError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use access::Access;
use admission::{PeerCounts, PendingHandshakes};
use connection::serve_connection;
pub use context::Context;
pub(crate) use context::ambient;
pub use service::{
    DispatchError, HandlerFuture, Reply, Request, Service, encode_reply, encode_stream_reply,
};
use services::Services;

use crate::budget::ServerMemory;
use crate::client::parse_address;
use crate::error::RpcError;

/// A server's limits and timeouts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Transport settings, including the largest frame the server accepts.
    pub transport: TransportConfig,
    /// Established connections served at once; one more is refused in the handshake. A
    /// connection counts once its handshake succeeds.
    pub max_connections: usize,
    /// Connections waiting for their handshake at once; when one more arrives, the one that
    /// has waited longest is dropped.
    pub max_pending_handshakes: usize,
    /// Calls running at once on one connection; one more fails with `TooManyCalls`.
    pub max_in_flight: usize,
    /// How long a new connection may take to say `Hello` (2 s by default).
    pub handshake_timeout: Duration,
    /// The largest frame accepted before the handshake is done (a `Hello` is well under
    /// 1 KiB for a small service, about 75 bytes per method).
    pub handshake_max_frame_size: usize,
    /// How long a graceful shutdown waits for running calls.
    pub shutdown_grace: Duration,
    /// Who may connect over local transports (by default only the server's own user).
    pub access: Access,
    /// An established connection with no frame and no call running for this long is closed
    /// (its client sees `Disconnected`). Off by default: long-lived clients stay.
    pub idle_timeout: Option<Duration>,
    /// Pings a silent client and frees its connection when the client stays silent (a dead
    /// peer behind a half-open connection) within [`Keepalive::bound`](crate::Keepalive::bound).
    /// Only clients that announced they answer pings (async clients with keepalive on) are
    /// pinged. Default: a ping after 30 s of silence, given up 20 s later.
    pub keepalive: Option<crate::Keepalive>,
    /// Established connections one peer may hold at once: one IP address over TCP, one uid
    /// over local transports. Off by default.
    pub max_connections_per_peer: Option<usize>,
    /// Bytes one connection may hold, in each of two pools: requests of calls running as
    /// tasks, and replies waiting to be written (4 MiB each by default). When a pool is full
    /// the connection stops reading until its peer reads replies or calls finish, so a peer
    /// that sends without reading holds at most this much. A frame larger than the limit
    /// takes all of it and still goes through, one at a time.
    pub max_connection_memory: usize,
    /// Bytes all connections together may hold, in each of the same two pools (256 MiB each by
    /// default).
    pub max_server_memory: usize,
    /// Shared-memory connections served from a thread of their own, for the lowest latency;
    /// later ones are served by the runtime's workers like every other transport, so the
    /// server's threads stay bounded whatever the number of connections. Default: the number
    /// of CPUs, at least 4 (a server pinned to one CPU still gives a few clients the fast
    /// path; an idle dedicated thread sleeps on its futex and costs no CPU).
    pub dedicated_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            transport: TransportConfig::default(),
            max_connections: 10_000,
            max_pending_handshakes: 1024,
            max_in_flight: 4096,
            handshake_timeout: Duration::from_secs(2),
            handshake_max_frame_size: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
            access: Access::default(),
            idle_timeout: None,
            keepalive: Some(crate::Keepalive::default()),
            max_connections_per_peer: None,
            max_connection_memory: 4 << 20,
            max_server_memory: 256 << 20,
            dedicated_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .max(4),
        }
    }
}

/// Says, once at start, which methods no client can call because a type of theirs could not
/// be described (see [`MethodSchema::error`](crate::MethodSchema::error)).
fn warn_of_uncallable_methods(schema: &crate::ServiceSchema) {
    for method in schema.methods.iter().filter(|m| m.error.is_some()) {
        tracing::warn!(
            service = %schema.name,
            method = %method.name,
            error = method.error.as_deref().unwrap_or_default(),
            "this method cannot be called: a type of it cannot be described"
        );
    }
}

/// Builds and runs servers.
///
/// A server serves one service or several on the same addresses: each client names the
/// service it wants in its handshake.
///
/// ```no_run
/// # async fn demo(service: impl rpc_core::Service) -> Result<(), rpc_core::RpcError> {
/// let handle = rpc_core::Server::new()
///     .max_connections(100)
///     .start(service, &["tcp://127.0.0.1:0", "unix:///tmp/demo.sock"])
///     .await?;
/// println!("listening on {}", handle.local_address());
/// handle.shutdown().await;
/// # Ok(()) }
/// # async fn several(
/// #     calculator: impl rpc_core::Service,
/// #     kv: impl rpc_core::Service,
/// # ) -> Result<(), rpc_core::RpcError> {
/// let handle = rpc_core::Server::new()
///     .add(calculator)
///     .add(kv)
///     .listen(&["unix:///tmp/demo.sock"])
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Server {
    config: ServerConfig,
    /// The services added, by name; shared by clones until one adds another.
    services: Arc<Services>,
}

impl Server {
    /// A server with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A server with `config`.
    pub fn with_config(config: ServerConfig) -> Self {
        Server {
            config,
            services: Arc::default(),
        }
    }

    /// Adds `service`, served under its schema's name on every address the server listens on.
    /// A service whose name was added already is refused: listening then fails with
    /// [`RpcError::DuplicateService`].
    #[allow(
        clippy::should_implement_trait,
        reason = "a builder step adding a service, not arithmetic"
    )]
    pub fn add<S: Service>(mut self, service: S) -> Self {
        Arc::make_mut(&mut self.services).add(Arc::new(service));
        self
    }

    /// Sets the maximum number of connections served at once.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// Sets the maximum number of calls running at once on one connection.
    pub fn max_in_flight(mut self, calls: usize) -> Self {
        self.config.max_in_flight = calls;
        self
    }

    /// Sets the largest frame the server sends or accepts.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.transport.max_frame_size = bytes;
        self
    }

    /// Adds a transport's own setting for the listeners this server binds (see
    /// [`TransportConfig::with_setting`]), such as `tls://`'s certificate and key.
    pub fn transport_setting<T: std::any::Any + Send + Sync>(mut self, setting: T) -> Self {
        self.config.transport = self.config.transport.clone().with_setting(setting);
        self
    }

    /// Sets the keepalive (`None`: never ping clients; see [`ServerConfig::keepalive`]).
    pub fn keepalive(mut self, keepalive: Option<crate::Keepalive>) -> Self {
        self.config.keepalive = keepalive;
        self
    }

    /// Closes established connections idle (no frame, no call running) for `timeout`.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Limits the established connections of one peer (IP address or uid).
    pub fn max_connections_per_peer(mut self, connections: Option<usize>) -> Self {
        self.config.max_connections_per_peer = connections;
        self
    }

    /// Sets the bytes one connection may hold in each of its pools (requests being handled,
    /// replies waiting to be written); see [`ServerConfig::max_connection_memory`].
    pub fn max_connection_memory(mut self, bytes: usize) -> Self {
        self.config.max_connection_memory = bytes;
        self
    }

    /// Sets the bytes all connections together may hold in each pool; see
    /// [`ServerConfig::max_server_memory`].
    pub fn max_server_memory(mut self, bytes: usize) -> Self {
        self.config.max_server_memory = bytes;
        self
    }

    /// Sets how many shared-memory connections get a thread of their own; see
    /// [`ServerConfig::dedicated_threads`].
    pub fn dedicated_threads(mut self, threads: usize) -> Self {
        self.config.dedicated_threads = threads;
        self
    }

    /// Sets how long a graceful shutdown waits for running calls.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Also admits these users over local transports (Unix sockets, shared memory, FIFOs,
    /// message queues; by default only the server's own uid may connect). Socket files are
    /// then created 0666, and every peer's credentials are checked on accept. Not over
    /// `sysv-shm://`, whose segments only their owner's user (and root) may attach: there the
    /// transport refuses other users itself.
    pub fn allow_uids(mut self, uids: impl IntoIterator<Item = u32>) -> Self {
        self.config.access.uids.extend(uids);
        self.config.transport.socket_mode = 0o666;
        self
    }

    /// Also admits users whose primary group is one of `gids` (checked on Unix sockets and
    /// shared memory, where the kernel reports the peer's gid). Socket files are then created
    /// 0666, and every peer's credentials are checked on accept.
    pub fn allow_gids(mut self, gids: impl IntoIterator<Item = u32>) -> Self {
        self.config.access.gids.extend(gids);
        self.config.transport.socket_mode = 0o666;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Listens on every address in `addresses` and serves every added service in the
    /// background. Fails before binding anything if no service was added or a name was added
    /// twice.
    pub async fn listen(&self, addresses: &[&str]) -> Result<ServerHandle, RpcError> {
        self.services.check()?;
        let mut listeners = Vec::with_capacity(addresses.len());
        for address in addresses {
            let parsed = parse_address(address)?;
            let listener = Listener::bind(&parsed, &self.config.transport)
                .await
                .map_err(|source| match source {
                    TransportError::Unavailable { .. } => RpcError::Address(source),
                    source => RpcError::Bind {
                        address: address.to_string(),
                        source,
                    },
                })?;
            listeners.push(listener);
        }
        self.listen_on(listeners)
    }

    /// Serves every added service on listeners already bound. Fails if no service was added
    /// or a name was added twice.
    pub fn listen_on(&self, listeners: Vec<Listener>) -> Result<ServerHandle, RpcError> {
        self.services.check()?;
        for service in self.services.iter() {
            warn_of_uncallable_methods(service.schema());
        }
        let handle = ServerHandle {
            addresses: listeners
                .iter()
                .map(|l| l.local_address().clone())
                .collect(),
            stop: CancellationToken::new(),
            kill: CancellationToken::new(),
            tracker: TaskTracker::new(),
            admissions: Arc::new(Semaphore::new(self.config.max_connections)),
            pending: PendingHandshakes::new(self.config.max_pending_handshakes),
            config: Arc::new(self.config.clone()),
        };
        let peers = Arc::new(PeerCounts::default());
        let shared = Arc::new(ServerWide {
            memory: ServerMemory::new(self.config.max_server_memory),
            dedicated: AtomicUsize::new(0),
        });
        for listener in listeners {
            let acceptor = Acceptor {
                listener,
                services: self.services.clone(),
                config: handle.config.clone(),
                admissions: handle.admissions.clone(),
                pending: handle.pending.clone(),
                peers: peers.clone(),
                shared: shared.clone(),
                tracker: handle.tracker.clone(),
                stop: handle.stop.clone(),
                kill: handle.kill.clone(),
            };
            handle.tracker.spawn(acceptor.run());
        }
        Ok(handle)
    }

    /// Serves every added service on `addresses` until `shutdown` completes, then shuts down
    /// gracefully. Returns early once the server has nothing left to do (see
    /// [`ServerHandle::finished`]).
    pub async fn serve_all_until(
        &self,
        addresses: &[&str],
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RpcError> {
        let handle = self.listen(addresses).await?;
        tokio::select! {
            _ = shutdown => {}
            _ = handle.finished() => {}
        }
        handle.shutdown().await;
        Ok(())
    }

    /// Listens on every address in `addresses` and serves `service` (besides any added ones)
    /// in the background.
    pub async fn start<S: Service>(
        &self,
        service: S,
        addresses: &[&str],
    ) -> Result<ServerHandle, RpcError> {
        self.clone().add(service).listen(addresses).await
    }

    /// Serves `service` (besides any added ones) on listeners already bound. Fails only if a
    /// service of its name was added already.
    pub fn start_on<S: Service>(
        &self,
        service: S,
        listeners: Vec<Listener>,
    ) -> Result<ServerHandle, RpcError> {
        self.clone().add(service).listen_on(listeners)
    }

    /// Serves `service` (besides any added ones) on `address` until the process ends (or
    /// binding fails).
    pub async fn serve<S: Service>(&self, service: S, address: &str) -> Result<(), RpcError> {
        self.serve_until(service, &[address], std::future::pending::<()>())
            .await
    }

    /// Serves `service` (besides any added ones) on `addresses` until `shutdown` completes,
    /// then shuts down gracefully. Returns early once the server has nothing left to do (see
    /// [`ServerHandle::finished`]).
    pub async fn serve_until<S: Service>(
        &self,
        service: S,
        addresses: &[&str],
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RpcError> {
        self.clone()
            .add(service)
            .serve_all_until(addresses, shutdown)
            .await
    }
}

/// What a connection task is given by its server.
pub(crate) struct ConnectionEnv {
    /// The services a client may name in its `Hello`.
    pub(crate) services: Arc<Services>,
    pub(crate) config: Arc<ServerConfig>,
    /// Graceful shutdown: take no new calls, finish the running ones.
    pub(crate) stop: CancellationToken,
    /// Immediate shutdown: drop everything.
    pub(crate) kill: CancellationToken,
    /// The permits of established connections (taken in the handshake).
    pub(crate) admissions: Arc<Semaphore>,
    /// The established connections of each peer.
    pub(crate) peers: Arc<PeerCounts>,
    /// What all connections share besides admission.
    pub(crate) shared: Arc<ServerWide>,
}

/// What all of a server's connections share besides admission.
pub(crate) struct ServerWide {
    /// The server-wide side of the memory budgets.
    pub(crate) memory: ServerMemory,
    /// Shared-memory connections served from a thread of their own now.
    pub(crate) dedicated: AtomicUsize,
}

/// One listener's accept loop.
struct Acceptor {
    listener: Listener,
    services: Arc<Services>,
    config: Arc<ServerConfig>,
    admissions: Arc<Semaphore>,
    pending: Arc<PendingHandshakes>,
    peers: Arc<PeerCounts>,
    shared: Arc<ServerWide>,
    tracker: TaskTracker,
    stop: CancellationToken,
    kill: CancellationToken,
}

/// Whether an accept failed because the process or the system ran out of descriptors.
fn out_of_descriptors(error: &TransportError) -> bool {
    matches!(error, TransportError::Io(e) if matches!(e.raw_os_error(), Some(23 | 24)))
}

/// Says why accepting failed, at most once a second, with how many failures it held back.
#[derive(Default)]
struct AcceptLog {
    last: Option<std::time::Instant>,
    held_back: u64,
}

impl AcceptLog {
    fn failed(&mut self, error: &TransportError, address: &Address) {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|last| now - last < Duration::from_secs(1))
        {
            self.held_back += 1;
            return;
        }
        let held_back = std::mem::take(&mut self.held_back);
        tracing::warn!(%error, %address, held_back, "accept failed");
        self.last = Some(now);
    }
}

impl Acceptor {
    /// Out of descriptors, a connection waits in the backlog until its client gives up. Instead,
    /// give back the descriptor kept in reserve, accept the connection and close it at once, so
    /// its client is refused promptly, then take the reserve again.
    async fn refuse_one(&self, reserve: &mut Option<std::fs::File>) {
        *reserve = None;
        if let Ok(Ok(connection)) =
            tokio::time::timeout(Duration::from_millis(10), self.listener.accept()).await
        {
            drop(connection);
        }
        *reserve = std::fs::File::open("/dev/null").ok();
    }

    async fn run(self) {
        let mut reserve = std::fs::File::open("/dev/null").ok();
        let mut log = AcceptLog::default();
        loop {
            let accepted = tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = self.kill.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            if reserve.is_none() {
                reserve = std::fs::File::open("/dev/null").ok();
            }
            match accepted {
                Ok(connection) => {
                    let env = ConnectionEnv {
                        services: self.services.clone(),
                        config: self.config.clone(),
                        stop: self.stop.clone(),
                        kill: self.kill.clone(),
                        admissions: self.admissions.clone(),
                        peers: self.peers.clone(),
                        shared: self.shared.clone(),
                    };
                    let ticket = self.pending.enter();
                    self.tracker
                        .spawn(serve_connection(connection, env, ticket));
                }
                Err(TransportError::Closed) => return,
                Err(error) => {
                    log.failed(&error, self.listener.local_address());
                    if out_of_descriptors(&error) && reserve.is_some() {
                        self.refuse_one(&mut reserve).await;
                    } else {
                        // Back off instead of spinning.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
    }
}

/// A running server. Dropping it stops the server at once; [`shutdown`](Self::shutdown) stops
/// it gracefully.
#[derive(Debug)]
pub struct ServerHandle {
    addresses: Vec<Address>,
    stop: CancellationToken,
    kill: CancellationToken,
    tracker: TaskTracker,
    admissions: Arc<Semaphore>,
    pending: Arc<PendingHandshakes>,
    config: Arc<ServerConfig>,
}

impl ServerHandle {
    /// The addresses served, with ports chosen by the system filled in.
    pub fn local_addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// The first address served, as a string to connect to.
    pub fn local_address(&self) -> String {
        self.addresses
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// Established connections being served now (their handshake succeeded). A connection
    /// whose peer left counts until the calls it was running are aborted and dropped, so 0
    /// means nothing of any established connection remains.
    pub fn connections(&self) -> usize {
        self.config.max_connections - self.admissions.available_permits()
    }

    /// Connections accepted and still in their handshake.
    pub fn pending_handshakes(&self) -> usize {
        self.pending.len()
    }

    /// Completes once every listener has stopped accepting on its own and every connection has
    /// ended: a `stdio` server after its one connection closes. A server with a socket listener
    /// finishes only through [`shutdown`](Self::shutdown) or [`abort`](Self::abort).
    pub async fn finished(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Stops accepting, lets running calls finish (up to the shutdown grace), then closes every
    /// connection and frees the addresses.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tracker.close();
        // `Duration::MAX` (as long as the calls take) must not overflow.
        let grace = self
            .config
            .shutdown_grace
            .saturating_add(Duration::from_secs(1));
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections outlived the shutdown grace; dropping them");
        }
        self.kill.cancel();
        self.tracker.wait().await;
    }

    /// Stops at once: every connection is dropped and every running call aborted.
    pub async fn abort(self) {
        self.kill.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}
