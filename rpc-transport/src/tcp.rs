//! `tcp://HOST:PORT`: TCP with `TCP_NODELAY` and keepalive.

use std::io;
use std::net::ToSocketAddrs;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream, lookup_host};

use crate::address::Address;
use crate::blocking::{BlockingConnection, blocking_stream_connection};
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;
use crate::transport::{Acceptor, BoxFuture, Transport};
use crate::{TransportConfig, stream};

/// The `tcp` transport.
pub(crate) struct Tcp;

impl Transport for Tcp {
    fn scheme(&self) -> &str {
        "tcp"
    }

    fn forms(&self) -> Vec<String> {
        vec!["tcp://HOST:PORT".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        address.host_port().map(drop)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move { into_connection(connect_stream(address).await?, config) })
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(async move {
            let acceptor = TcpAcceptor::bind(address, config).await?;
            Ok(Box::new(acceptor) as Box<dyn Acceptor>)
        })
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        let stream = connect_std(address, timeout)?;
        let peer = PeerInfo::Tcp(stream.peer_addr()?);
        let reader = stream.try_clone()?;
        Ok(blocking_stream_connection(
            stream, reader, config, peer, "tcp",
        ))
    }
}

/// A blocking TCP connection to `address`, trying each resolved address in turn, each for at
/// most `timeout`.
pub(crate) fn connect_std(
    address: &Address,
    timeout: Duration,
) -> Result<std::net::TcpStream, TransportError> {
    let (host, port) = address.host_port()?;
    let connect_error = |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    let mut last = None;
    for candidate in (host.as_str(), port)
        .to_socket_addrs()
        .map_err(connect_error)?
    {
        match std::net::TcpStream::connect_timeout(&candidate, timeout) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last = Some(error),
        }
    }
    Err(connect_error(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")
    })))
}

/// Sets the socket options every TCP connection of ours has.
fn tune(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10));
    SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

fn into_connection(
    stream: TcpStream,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    tune(&stream)?;
    let peer = PeerInfo::Tcp(stream.peer_addr()?);
    let (read, write) = stream.into_split();
    Ok(Connection::new(
        FrameSender::new(stream::StreamSender::new(
            write,
            config.max_frame_size,
            "tcp",
        )),
        FrameReceiver::new(stream::StreamReceiver::new(
            read,
            config.max_frame_size,
            config.socket_spin,
        )),
        peer,
    ))
}

/// A tuned TCP connection to `address`, trying each resolved address in turn.
pub(crate) async fn connect_stream(address: &Address) -> Result<TcpStream, TransportError> {
    let (host, port) = address.host_port()?;
    let connect_error = |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    let mut last_error = None;
    for candidate in lookup_host((host.as_str(), port))
        .await
        .map_err(connect_error)?
    {
        match TcpStream::connect(candidate).await {
            Ok(stream) => {
                tune(&stream)?;
                return Ok(stream);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(connect_error(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "host resolved to no address")
    })))
}

/// A bound TCP listener.
/// The backlog of a listening socket: room for a burst of connections between two accepts
/// (the kernel caps it at `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds and listens on the first address `host:port` resolves to that accepts the bind.
async fn bind_listener(host: &str, port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
        socket.set_reuse_address(true)?;
        match socket.bind(&addr.into()) {
            Ok(()) => {
                socket.listen(LISTEN_BACKLOG)?;
                socket.set_nonblocking(true)?;
                return TcpListener::from_std(std::net::TcpListener::from(socket));
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to bind")
    }))
}

/// A listening TCP socket; `tls.rs` wraps its connections.
#[derive(Debug)]
pub(crate) struct TcpAcceptor {
    listener: TcpListener,
    local: std::net::SocketAddr,
    config: TransportConfig,
}

/// `host:port` as an address target (IPv6 in brackets).
pub(crate) fn target_of(addr: std::net::SocketAddr) -> String {
    match addr {
        std::net::SocketAddr::V4(v4) => v4.to_string(),
        std::net::SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

impl TcpAcceptor {
    pub(crate) async fn bind(
        address: &Address,
        config: &TransportConfig,
    ) -> Result<Self, TransportError> {
        let (host, port) = address.host_port()?;
        let listener = bind_listener(&host, port).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                TransportError::AddressInUse {
                    address: address.to_string(),
                }
            } else {
                TransportError::Bind {
                    address: address.to_string(),
                    source,
                }
            }
        })?;
        let local = listener.local_addr()?;
        Ok(TcpAcceptor {
            listener,
            local,
            config: config.clone(),
        })
    }

    /// The address the socket is bound to.
    #[allow(dead_code)] // for `tls.rs`, which is not on this branch yet
    pub(crate) fn local_addr(&self) -> std::net::SocketAddr {
        self.local
    }

    /// The next tuned connection (one that fails its setup, reset already say, costs only
    /// itself).
    pub(crate) async fn accept_stream(&self) -> Result<TcpStream, TransportError> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            match tune(&stream) {
                Ok(()) => return Ok(stream),
                Err(error) => {
                    tracing::debug!(%error, "dropping a TCP connection that failed setup")
                }
            }
        }
    }
}

impl Acceptor for TcpAcceptor {
    fn local_address(&self) -> Address {
        Address::from_target("tcp", &target_of(self.local))
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            loop {
                let stream = self.accept_stream().await?;
                match into_connection(stream, &self.config) {
                    Ok(connection) => return Ok(connection),
                    Err(error) => {
                        tracing::debug!(%error, "dropping a TCP connection that failed setup")
                    }
                }
            }
        })
    }
}
