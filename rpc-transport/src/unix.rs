//! `unix:///path` and `unix:@abstract`: Unix domain stream sockets with peer credentials.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net as std_unix;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        _timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        let connect_error = |source| TransportError::Connect {
            address: address.to_string(),
            source,
        };
        let stream = match SocketName::of(address)? {
            SocketName::Path(path) => std_unix::UnixStream::connect(path),
            SocketName::Abstract(name) => std_unix::SocketAddr::from_abstract_name(name)
                .and_then(|addr| std_unix::UnixStream::connect_addr(&addr)),
        }
        .map_err(connect_error)?;
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

/// Opens a connected Unix stream socket to a path or an abstract name.
pub(crate) async fn connect_stream(
    address: &Address,
    name: &SocketName,
) -> Result<UnixStream, TransportError> {
    let connect_error = |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    match name {
        SocketName::Abstract(name) => {
            let addr = std_unix::SocketAddr::from_abstract_name(name).map_err(connect_error)?;
            let stream = std_unix::UnixStream::connect_addr(&addr).map_err(connect_error)?;
            stream.set_nonblocking(true)?;
            Ok(UnixStream::from_std(stream)?)
        }
        SocketName::Path(path) => UnixStream::connect(path).await.map_err(connect_error),
    }
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
                if !is_socket || std_unix::UnixStream::connect(path).is_ok() {
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
