//! `tcp://HOST:PORT`: TCP with `TCP_NODELAY` and keepalive.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream, lookup_host};

use crate::address::Address;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::{TransportConfig, stream};

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
        stream::StreamSender::new(write, config.max_frame_size).into(),
        stream::StreamReceiver::new(read, config.max_frame_size, config.socket_spin).into(),
        peer,
    ))
}

/// Connects to `host:port`, trying each resolved address in turn.
pub(crate) async fn connect(
    address: &Address,
    host: &str,
    port: u16,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let connect_error = |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    let mut last_error = None;
    for candidate in lookup_host((host, port)).await.map_err(connect_error)? {
        match TcpStream::connect(candidate).await {
            Ok(stream) => return into_connection(stream, config),
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

#[derive(Debug)]
pub(crate) struct TcpAcceptor {
    listener: TcpListener,
}

impl TcpAcceptor {
    pub(crate) async fn bind(
        address: &Address,
        host: &str,
        port: u16,
    ) -> Result<(Self, Address), TransportError> {
        let listener = bind_listener(host, port).await.map_err(|source| {
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
        let bound = Address::Tcp {
            host: local.ip().to_string(),
            port: local.port(),
        };
        Ok((TcpAcceptor { listener }, bound))
    }

    pub(crate) async fn accept(
        &self,
        config: &TransportConfig,
    ) -> Result<Connection, TransportError> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            // A connection that fails its setup (reset already, say) costs only itself.
            match into_connection(stream, config) {
                Ok(connection) => return Ok(connection),
                Err(error) => {
                    tracing::debug!(%error, "dropping a TCP connection that failed setup")
                }
            }
        }
    }
}
