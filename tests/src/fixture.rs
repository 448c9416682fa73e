//! The transports the suites run on ([`Transport`]: the built-in ones, and any a program
//! registers, as [`Transport::Custom`]) and the [`Fixture`] that serves the probe on one.

use std::sync::atomic::{AtomicUsize, Ordering};

use rpc_core::{ClientOptions, Server, ServerHandle};

use crate::{ProbeImpl, ProbeServer, SpawnedServers};

/// The transports the conformance suite runs on. Each later built-in transport adds a variant
/// here; a transport of a user's own runs as [`Transport::Custom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A transport registered outside this repository, described by a [`CustomTransport`].
    Custom(&'static CustomTransport),
    /// `tcp://127.0.0.1:0`.
    Tcp,
    /// `unix:///tmp/...` in a fresh directory.
    Unix,
    /// `unix:@...`, Linux's abstract namespace.
    UnixAbstract,
    /// `mem://...`.
    Mem,
    /// `shm://NAME`: shared memory, rendezvous socket in the per-user runtime directory.
    ShmNamed,
    /// `shm:///tmp/.../NAME.sock`: shared memory, explicit rendezvous socket.
    Shm,
    /// `mmap:///tmp/.../segments`: shared-memory rings in a regular file.
    Mmap,
    /// `spawn:probe-server ... stdio`: every connection spawns its own server child.
    Spawn,
    /// `fifo:///tmp/...`: named pipes.
    Fifo,
    /// `mq://NAME`: POSIX message queues.
    Mq,
    /// `sysv-shm://NAME`: the shared-memory rings in a System V segment per connection.
    SysvShm,
    /// `sysv-mq://NAME`: System V message queues.
    SysvMq,
}

/// A fresh name for this test process.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// Creates the directory.
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(unique_name("rpc-test"));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the suites use a transport of a user's own: a `static` of this, passed as
/// [`Transport::Custom`]. Every function is called before each test body.
#[derive(Debug)]
pub struct CustomTransport {
    /// Registers the transport's scheme, if not done yet (called first, any number of times).
    pub register: fn(),
    /// A listen address no other test uses; the directory may hold its files.
    pub fresh_address: fn(&TempDir) -> String,
    /// The server's settings for this transport (`Server::transport_setting`), if any.
    pub server: fn(Server) -> Server,
    /// A client's options for this transport (`ClientOptions::transport_setting`), if any.
    pub client: fn(ClientOptions) -> ClientOptions,
}

impl PartialEq for CustomTransport {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for CustomTransport {}

impl Transport {
    /// `server` with the settings this transport needs (certificates, say).
    pub fn server(self, server: Server) -> Server {
        match self {
            Transport::Custom(custom) => {
                (custom.register)();
                (custom.server)(server)
            }
            _ => server,
        }
    }

    /// Client options for this transport, from the defaults.
    pub fn client_options(self) -> ClientOptions {
        self.client_options_from(ClientOptions::default())
    }

    /// `options` with what this transport needs added.
    pub fn client_options_from(self, options: ClientOptions) -> ClientOptions {
        match self {
            Transport::Custom(custom) => {
                (custom.register)();
                (custom.client)(options)
            }
            _ => options,
        }
    }

    /// An address no other test uses; `dir` holds any files it needs.
    pub fn fresh_address(self, dir: &TempDir) -> String {
        match self {
            Transport::Custom(custom) => {
                (custom.register)();
                (custom.fresh_address)(dir)
            }
            Transport::Tcp => "tcp://127.0.0.1:0".to_owned(),
            Transport::Unix => format!("unix://{}/{}.sock", dir.0.display(), unique_name("s")),
            Transport::UnixAbstract => format!("unix:@{}", unique_name("rpc-test")),
            Transport::Mem => format!("mem://{}", unique_name("probe")),
            Transport::ShmNamed => format!("shm://{}", unique_name("probe")),
            Transport::Shm => format!("shm://{}/{}.sock", dir.0.display(), unique_name("s")),
            Transport::Mmap => format!("mmap://{}/{}", dir.0.display(), unique_name("m")),
            Transport::Spawn => unreachable!("a spawn: address is made by SpawnedServers"),
            Transport::Fifo => format!("fifo://{}/{}", dir.0.display(), unique_name("f")),
            Transport::Mq => format!("mq://{}", unique_name("probe")),
            Transport::SysvShm => format!("sysv-shm://{}", unique_name("probe")),
            Transport::SysvMq => format!("sysv-mq://{}", unique_name("probe")),
        }
    }
}

/// The server side of a [`Fixture`]: a server in this process, or the children a `spawn:`
/// address starts.
#[derive(Debug)]
pub enum FixtureServer {
    /// A server running in this process.
    InProcess(ServerHandle),
    /// One `probe-server stdio` child per connection.
    Spawned(SpawnedServers),
}

impl FixtureServer {
    /// Connections being served now.
    pub fn connections(&self) -> usize {
        match self {
            FixtureServer::InProcess(handle) => handle.connections(),
            FixtureServer::Spawned(children) => children.connections(),
        }
    }

    /// Stops at once: every connection dropped (a spawned child is killed with SIGKILL).
    pub async fn abort(self) {
        match self {
            FixtureServer::InProcess(handle) => handle.abort().await,
            FixtureServer::Spawned(children) => children.abort().await,
        }
    }

    /// Stops gracefully, letting running calls finish (a spawned child gets SIGTERM).
    pub async fn shutdown(self) {
        match self {
            FixtureServer::InProcess(handle) => handle.shutdown().await,
            FixtureServer::Spawned(children) => children.shutdown().await,
        }
    }
}

/// A probe server on a fresh address of `transport`, with `server`'s settings.
pub struct Fixture {
    /// The running server.
    pub handle: FixtureServer,
    /// The address clients connect to.
    pub address: String,
    /// The implementation, to look at its counters.
    pub probe: ProbeImpl,
    /// What a client of this transport connects with (the defaults, plus what the transport
    /// needs).
    pub options: ClientOptions,
    _dir: TempDir,
    /// Dropped after `handle`, once the server's queues are gone.
    _mq_budget: Option<std::sync::MutexGuard<'static, ()>>,
}

impl Fixture {
    /// Starts a probe server.
    pub async fn start(transport: Transport, server: Server) -> Fixture {
        let dir = TempDir::new();
        if transport == Transport::Spawn {
            let children = SpawnedServers::new(&dir, server.config());
            return Fixture {
                address: children.address().to_owned(),
                probe: ProbeImpl::counting_in(children.stalled()),
                options: transport.client_options(),
                handle: FixtureServer::Spawned(children),
                _dir: dir,
                _mq_budget: None,
            };
        }
        let mq_budget = (transport == Transport::Mq).then(hold_mq_budget);
        let probe = ProbeImpl::default();
        let handle = transport
            .server(server)
            .start(
                ProbeServer::new(probe.clone()),
                &[&transport.fresh_address(&dir)],
            )
            .await
            .expect("start probe server");
        Fixture {
            address: handle.local_address(),
            handle: FixtureServer::InProcess(handle),
            probe,
            options: transport.client_options(),
            _dir: dir,
            _mq_budget: mq_budget,
        }
    }
}

/// Held by every `mq://` fixture of this process: message queues of one user share
/// `RLIMIT_MSGQUEUE` (800 KiB by default, which an unprivileged process cannot raise), and a
/// server with 64 clients uses nearly all of it, so two such fixtures at once would hit it.
static MQ_BUDGET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hold_mq_budget() -> std::sync::MutexGuard<'static, ()> {
    MQ_BUDGET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Fixture {
    /// A probe client connected with [`options`](Self::options).
    pub async fn client(&self) -> Result<crate::ProbeClient, rpc_core::RpcError> {
        crate::ProbeClient::connect_with(&self.address, self.options.clone()).await
    }

    /// A raw connection that has said `Hello` as a probe client would; see
    /// [`raw_probe_connection`](crate::raw_probe_connection).
    pub async fn raw_connection(&self, max_frame_size: usize) -> rpc_core::transport::Connection {
        let config = self
            .options
            .transport
            .clone()
            .with_max_frame_size(max_frame_size);
        crate::raw::raw_probe_connection_with(&self.address, config).await
    }
}
