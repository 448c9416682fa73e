//! `unix:///path` and `unix:@abstract`: Unix domain stream sockets with peer credentials.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net as std_unix;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};

use crate::address::{Address, check_name};
use crate::blocking::{BlockingConnection, blocking_stream_connection};
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;
use crate::transport::{Acceptor, BoxFuture, Transport};
use crate::{TransportConfig, stream};

/// The `unix` transport.
pub(crate) struct Unix;

/// Where a Unix socket is: a file system path or a name in Linux's abstract namespace.
#[derive(Debug, Clone)]
pub(crate) enum SocketName {
    Path(PathBuf),
    Abstract(String),
}

impl SocketName {
    /// `unix:///abs/path` or `unix:@name`.
    fn of(address: &Address) -> Result<SocketName, TransportError> {
        match address.rest().strip_prefix('@') {
            Some(name) => check_name(address, name).map(SocketName::Abstract),
            None => address.absolute_path().map(SocketName::Path),
        }
    }
}

impl Transport for Unix {
    fn scheme(&self) -> &str {
        "unix"
    }

    fn forms(&self) -> Vec<String> {
        vec!["unix:///abs/path.sock".into(), "unix:@abstract-name".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        SocketName::of(address).map(drop)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move {
            let stream = connect_stream(address, &SocketName::of(address)?).await?;
            into_connection(stream, config)
        })
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(async move {
            let name = SocketName::of(address)?;
            let acceptor = UnixAcceptor::bind(address, &name, config.socket_mode)?;
            Ok(Box::new(UnixListening {
                acceptor,
                address: address.clone(),
                config: config.clone(),
            }) as Box<dyn Acceptor>)
        })
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        let give_up = Instant::now().checked_add(timeout);
        let stream = connect_blocking_stream(address, &SocketName::of(address)?, give_up)?;
        let peer = std_peer(&stream);
        let reader = stream.try_clone()?;
        Ok(blocking_stream_connection(
            stream, reader, config, peer, "unix",
        ))
    }
}

/// A blocking Unix stream's peer credentials (`SO_PEERCRED`).
fn std_peer(stream: &std_unix::UnixStream) -> PeerInfo {
    match nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) => PeerInfo::Unix {
            pid: Some(cred.pid()),
            uid: cred.uid(),
            gid: cred.gid(),
        },
        Err(_) => PeerInfo::Unix {
            pid: None,
            uid: u32::MAX,
            gid: u32::MAX,
        },
    }
}

pub(crate) fn into_connection(
    stream: UnixStream,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let cred = stream.peer_cred()?;
    let peer = PeerInfo::Unix {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
    };
    let (read, write) = stream.into_split();
    Ok(Connection::new(
        FrameSender::new(stream::StreamSender::new(
            write,
            config.max_frame_size,
            "unix",
        )),
        FrameReceiver::new(stream::StreamReceiver::new(
            read,
            config.max_frame_size,
            config.socket_spin,
        )),
        peer,
    ))
}

/// Longest pause between two attempts to connect to a listener whose backlog is full.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(20);

/// A socket connecting to a Unix listener without ever blocking in `connect`: to a listener
/// whose backlog is full (its server stalled or overloaded) a blocking `connect` would wait for
/// as long as that lasts, whatever the caller's timeout, while a nonblocking one fails with
/// `EAGAIN` and is tried again after a pause.
struct Connecting {
    socket: socket2::Socket,
    addr: socket2::SockAddr,
    pause: Duration,
}

impl Connecting {
    fn new(name: &SocketName) -> std::io::Result<Connecting> {
        let addr = match name {
            SocketName::Path(path) => socket2::SockAddr::unix(path)?,
            SocketName::Abstract(name) => socket2::SockAddr::unix(format!("\0{name}"))?,
        };
        let socket =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM.cloexec(), None)?;
        socket.set_nonblocking(true)?;
        Ok(Connecting {
            socket,
            addr,
            pause: Duration::from_millis(1),
        })
    }

    /// One attempt: `Ok(true)` once connected, `Ok(false)` while the backlog is full.
    fn attempt(&self) -> std::io::Result<bool> {
        loop {
            match self.socket.connect(&self.addr) {
                Ok(()) => return Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::EISCONN) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// The pause before the next attempt (growing), at most `left`.
    fn next_pause(&mut self, left: Option<Duration>) -> Duration {
        let pause = left.map_or(self.pause, |left| self.pause.min(left));
        self.pause = (self.pause * 2).min(CONNECT_RETRY_MAX);
        pause
    }

    /// The connected socket, nonblocking.
    fn into_std(self) -> std_unix::UnixStream {
        std_unix::UnixStream::from(std::os::fd::OwnedFd::from(self.socket))
    }
}

/// The error for a listener that did not take a connection before the caller gave up.
fn backlog_full(address: &Address) -> TransportError {
    TransportError::Connect {
        address: address.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the server did not take the connection in time (its backlog stayed full: it is \
             overloaded or hung)",
        ),
    }
}

/// How long an async connect keeps trying a listener whose backlog is full (the caller may
/// give up sooner), as `mq://` does.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Opens a connected Unix stream socket to a path or an abstract name. While the listener's
/// backlog is full it tries again, for at most [`CONNECT_WAIT`] (the caller may stop sooner).
pub(crate) async fn connect_stream(
    address: &Address,
    name: &SocketName,
) -> Result<UnixStream, TransportError> {
    let connect_error = |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    let give_up = Instant::now() + CONNECT_WAIT;
    let mut connecting = Connecting::new(name).map_err(connect_error)?;
    while !connecting.attempt().map_err(connect_error)? {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(backlog_full(address));
        }
        tokio::time::sleep(connecting.next_pause(Some(left))).await;
    }
    Ok(UnixStream::from_std(connecting.into_std())?)
}

/// [`connect_stream`] for blocking code: a blocking socket, or a
/// [`Connect`](TransportError::Connect) error of kind `TimedOut` if the listener's backlog
/// stays full until `give_up` (`None`: no limit).
pub(crate) fn connect_blocking_stream(
    address: &Address,
    name: &SocketName,
    give_up: Option<Instant>,
) -> Result<std_unix::UnixStream, TransportError> {
    let connect_error = |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    let mut connecting = Connecting::new(name).map_err(connect_error)?;
    while !connecting.attempt().map_err(connect_error)? {
        let left = give_up.map(|at| at.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left.is_zero()) {
            return Err(backlog_full(address));
        }
        std::thread::sleep(connecting.next_pause(left));
    }
    let stream = connecting.into_std();
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Removes a listener's socket file when the listener goes, if the file is still the one it bound.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    inode: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.inode
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a listening socket at `path` whose file has `mode`: bind, chmod, then listen.
fn bind_path(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    UnixListener::from_std(std_unix::UnixListener::from(std::os::fd::OwnedFd::from(
        socket,
    )))
}

/// A bound Unix listener; a path-bound one removes its socket file when dropped.
#[derive(Debug)]
pub(crate) struct UnixAcceptor {
    listener: UnixListener,
    _file: Option<SocketFile>,
}

impl UnixAcceptor {
    /// Binds `address`. A socket file left by a dead server is replaced; a live one is
    /// [`TransportError::AddressInUse`]. A socket file gets `mode` (whatever the umask) before
    /// the socket listens, so no one connects through a wider mode in between.
    pub(crate) fn bind(
        address: &Address,
        name: &SocketName,
        mode: u32,
    ) -> Result<Self, TransportError> {
        let in_use = || TransportError::AddressInUse {
            address: address.to_string(),
        };
        let bind_error = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                in_use()
            } else {
                TransportError::Bind {
                    address: address.to_string(),
                    source,
                }
            }
        };
        let path = match name {
            SocketName::Path(path) => path,
            SocketName::Abstract(name) => {
                let addr = std_unix::SocketAddr::from_abstract_name(name).map_err(bind_error)?;
                let listener = std_unix::UnixListener::bind_addr(&addr).map_err(bind_error)?;
                listener.set_nonblocking(true)?;
                return Ok(UnixAcceptor {
                    listener: UnixListener::from_std(listener)?,
                    _file: None,
                });
            }
        };
        let listener = match bind_path(path, mode) {
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                let is_socket = std::fs::symlink_metadata(path)
                    .map(|meta| meta.file_type().is_socket())
                    .unwrap_or(false);
                // Someone listens if a connection is taken, or would be once its full
                // backlog has room; asked without waiting for that room.
                let listening = || Connecting::new(name).and_then(|c| c.attempt()).is_ok();
                if !is_socket || listening() {
                    return Err(in_use());
                }
                tracing::info!(path = %path.display(), "replacing a stale socket file");
                std::fs::remove_file(path).map_err(bind_error)?;
                bind_path(path, mode).map_err(bind_error)?
            }
            other => other.map_err(bind_error)?,
        };
        let meta = std::fs::symlink_metadata(path)?;
        Ok(UnixAcceptor {
            listener,
            _file: Some(SocketFile {
                path: path.to_owned(),
                inode: (meta.dev(), meta.ino()),
            }),
        })
    }

    /// Accepts the next raw stream.
    pub(crate) async fn accept_stream(&self) -> Result<UnixStream, TransportError> {
        Ok(self.listener.accept().await?.0)
    }
}

/// A `unix://` listener.
struct UnixListening {
    acceptor: UnixAcceptor,
    address: Address,
    config: TransportConfig,
}

impl Acceptor for UnixListening {
    fn local_address(&self) -> Address {
        self.address.clone()
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            loop {
                // A connection that fails its setup costs only itself.
                match into_connection(self.acceptor.accept_stream().await?, &self.config) {
                    Ok(connection) => return Ok(connection),
                    Err(error) => {
                        tracing::debug!(%error, "dropping a Unix connection that failed setup")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use socket2::{Domain, SockAddr, Socket, Type};

    use crate::{Address, TransportConfig};

    /// A listening socket at `addr` that never accepts, its backlog filled: a blocking
    /// `connect` to it waits until there is room.
    fn full_listener(addr: &SockAddr) -> (Socket, Vec<Socket>) {
        let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        listener.bind(addr).unwrap();
        listener.listen(0).unwrap();
        let mut queued = Vec::new();
        loop {
            let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            client.set_nonblocking(true).unwrap();
            match client.connect(addr) {
                Ok(()) => queued.push(client),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling the backlog: {e}"),
            }
            assert!(queued.len() < 64, "the backlog never filled");
        }
        (listener, queued)
    }

    /// An async connect to a listener whose backlog is full waits for room (its caller bounds
    /// the wait) rather than failing at once with `EAGAIN` or blocking the runtime's thread,
    /// and completes once the server takes connections again.
    #[test]
    fn an_async_connect_waits_for_room_in_the_backlog() {
        let dir = std::env::temp_dir().join(format!("rpc-unix-room-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let abstract_name = format!("rpc-unix-room-{}", std::process::id());
        let cases = [
            (
                format!("unix://{}/u.sock", dir.display()),
                SockAddr::unix(dir.join("u.sock")).unwrap(),
            ),
            (
                format!("unix:@{abstract_name}"),
                SockAddr::unix(format!("\0{abstract_name}")).unwrap(),
            ),
        ];
        for (text, addr) in cases {
            let address: Address = text.parse().unwrap();
            let (listener, queued) = full_listener(&addr);
            let (done, outcome) = std::sync::mpsc::channel();
            let connecting = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let config = TransportConfig::default();
                let result = runtime.block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), crate::connect(&address, &config))
                        .await
                });
                let _ = done.send(result.map(|r| r.map(drop)));
            });
            let early = outcome.recv_timeout(Duration::from_millis(300));
            assert!(early.is_err(), "{text}: no wait for room: {early:?}");
            // The server takes what waits: room in the backlog.
            for _ in 0..=queued.len() {
                listener.accept().unwrap();
            }
            let late = outcome.recv_timeout(Duration::from_secs(5));
            assert!(matches!(late, Ok(Ok(Ok(())))), "{text}: {late:?}");
            connecting.join().unwrap();
            drop((listener, queued));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A blocking connect gives up after its timeout when the server does not take the
    /// connection (its accept loop stalled, its backlog full), on every transport that meets
    /// over a Unix socket.
    #[test]
    fn a_blocking_connect_to_a_stalled_listener_honours_its_timeout() {
        let dir = std::env::temp_dir().join(format!("rpc-unix-stalled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let abstract_name = format!("rpc-unix-stalled-{}", std::process::id());
        let cases = [
            (
                format!("unix://{}/u.sock", dir.display()),
                SockAddr::unix(dir.join("u.sock")).unwrap(),
            ),
            (
                format!("unix:@{abstract_name}"),
                SockAddr::unix(format!("\0{abstract_name}")).unwrap(),
            ),
            (
                format!("shm://{}/s.sock", dir.display()),
                SockAddr::unix(dir.join("s.sock")).unwrap(),
            ),
            (
                format!("sysv-shm://{}/v.sock", dir.display()),
                SockAddr::unix(dir.join("v.sock")).unwrap(),
            ),
        ];
        let mut hung = Vec::new();
        for (text, addr) in cases {
            let address: Address = text.parse().unwrap();
            let stalled = full_listener(&addr);
            let (done, outcome) = std::sync::mpsc::channel();
            let start = Instant::now();
            std::thread::spawn(move || {
                let result = crate::connect_blocking(
                    &address,
                    &TransportConfig::default(),
                    Duration::from_millis(300),
                );
                let _ = done.send(result.map(drop));
            });
            match outcome.recv_timeout(Duration::from_secs(5)) {
                Ok(result) => {
                    assert!(result.is_err(), "{text}: connected to a stalled listener");
                    eprintln!("{text}: {:?} after {:?}", result, start.elapsed());
                }
                Err(_) => hung.push(text),
            }
            // Closing the listener releases a connect still blocked on it.
            drop(stalled);
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            hung.is_empty(),
            "blocking connects that ignored a 300 ms timeout: {hung:?}"
        );
    }
}
