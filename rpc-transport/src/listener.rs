//! [`connect`], [`Listener`]: from an [`Address`] to connections.

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::Connection;
use crate::error::TransportError;
use crate::fifo::{self, FifoAcceptor};
use crate::mem::{self, MemAcceptor};
use crate::mq::{self, MqAcceptor};
use crate::pipe::{self, StdioAcceptor};
use crate::shm::{self, ShmAcceptor};
use crate::tcp::{self, TcpAcceptor};
use crate::unix::{self, UnixAcceptor};

fn unavailable(address: &Address) -> TransportError {
    TransportError::Unavailable {
        scheme: address.scheme(),
        address: address.to_string(),
    }
}

/// `stdio` used to connect, or `spawn:` to listen: each is one side's address only.
pub(crate) fn wrong_side(address: &Address) -> TransportError {
    let reason = match address {
        Address::Stdio => {
            "`stdio` is a server's address; a client starts that server with `spawn:PROGRAM ARGS`"
        }
        _ => "`spawn:` is a client's address; the server it starts listens on `stdio`",
    };
    TransportError::InvalidAddress {
        address: address.to_string(),
        reason: reason.into(),
    }
}

/// Opens a connection to `address`.
pub async fn connect(
    address: &Address,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    match address {
        Address::Tcp { host, port } => tcp::connect(address, host, *port, config).await,
        Address::Unix(_) | Address::UnixAbstract(_) => unix::connect(address, config).await,
        Address::Mem(name) => mem::connect(address, name, config).await,
        Address::ShmNamed(_) | Address::ShmPath(_) | Address::Mmap(_) => {
            shm::connect(address, config).await
        }
        Address::Spawn { .. } => pipe::spawn(pipe::command_of(address), config).await,
        Address::Fifo(_) => fifo::connect(address, config).await,
        Address::Mq(name) => mq::connect(address, name, config).await,
        Address::Stdio => Err(wrong_side(address)),
        _ => Err(unavailable(address)),
    }
}

#[derive(Debug)]
enum AcceptorFlavor {
    Tcp(TcpAcceptor),
    Unix(UnixAcceptor),
    Mem(MemAcceptor),
    Shm(ShmAcceptor),
    Stdio(StdioAcceptor),
    Fifo(FifoAcceptor),
    Mq(MqAcceptor),
}

/// Accepts connections on one address. Dropping it stops listening and frees the address
/// (a Unix socket file is removed, a `mem://` name unregistered).
#[derive(Debug)]
pub struct Listener {
    acceptor: AcceptorFlavor,
    local: Address,
    config: TransportConfig,
}

impl Listener {
    /// Starts listening on `address`.
    pub async fn bind(
        address: &Address,
        config: &TransportConfig,
    ) -> Result<Listener, TransportError> {
        let (acceptor, local) = match address {
            Address::Tcp { host, port } => {
                let (acceptor, local) = TcpAcceptor::bind(address, host, *port).await?;
                (AcceptorFlavor::Tcp(acceptor), local)
            }
            Address::Unix(_) | Address::UnixAbstract(_) => (
                AcceptorFlavor::Unix(UnixAcceptor::bind(address, config.socket_mode)?),
                address.clone(),
            ),
            Address::Mem(name) => (
                AcceptorFlavor::Mem(MemAcceptor::bind(address, name)?),
                address.clone(),
            ),
            Address::ShmNamed(_) | Address::ShmPath(_) | Address::Mmap(_) => (
                AcceptorFlavor::Shm(ShmAcceptor::bind(address, config)?),
                address.clone(),
            ),
            Address::Stdio => (
                AcceptorFlavor::Stdio(StdioAcceptor::bind(address, config)?),
                address.clone(),
            ),
            Address::Fifo(_) => (
                AcceptorFlavor::Fifo(FifoAcceptor::bind(address, config)?),
                address.clone(),
            ),
            Address::Mq(name) => (
                AcceptorFlavor::Mq(MqAcceptor::bind(address, name, config)?),
                address.clone(),
            ),
            Address::Spawn { .. } => return Err(wrong_side(address)),
            _ => return Err(unavailable(address)),
        };
        Ok(Listener {
            acceptor,
            local,
            config: config.clone(),
        })
    }

    /// The address clients connect to (for `tcp://HOST:0`, with the port the system chose).
    pub fn local_address(&self) -> &Address {
        &self.local
    }

    /// Waits for the next connection. Cancellation safe. [`TransportError::Closed`] means the
    /// listener will accept no more (`stdio` serves exactly one connection).
    pub async fn accept(&self) -> Result<Connection, TransportError> {
        match &self.acceptor {
            AcceptorFlavor::Tcp(a) => a.accept(&self.config).await,
            AcceptorFlavor::Unix(a) => a.accept(&self.config).await,
            AcceptorFlavor::Mem(a) => a.accept(&self.config).await,
            AcceptorFlavor::Shm(a) => a.accept(&self.config).await,
            AcceptorFlavor::Stdio(a) => a.accept().await,
            AcceptorFlavor::Fifo(a) => a.accept(&self.config).await,
            AcceptorFlavor::Mq(a) => a.accept(&self.config).await,
        }
    }
}
