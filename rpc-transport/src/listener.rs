//! [`connect`], [`Listener`]: from an [`Address`] to connections, through the transport
//! registered for its scheme.

use std::fmt;

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::Connection;
use crate::error::TransportError;
use crate::registry;
use crate::transport::Acceptor;

/// Opens a connection to `address`.
pub async fn connect(
    address: &Address,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    registry::lookup(address)?.connect(address, config).await
}

/// Accepts connections on one address. Dropping it stops listening and frees the address
/// (a Unix socket file is removed, a `mem://` name unregistered).
pub struct Listener {
    acceptor: Box<dyn Acceptor>,
    local: Address,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Listener({})", self.local)
    }
}

impl Listener {
    /// Starts listening on `address`.
    pub async fn bind(
        address: &Address,
        config: &TransportConfig,
    ) -> Result<Listener, TransportError> {
        let acceptor = registry::lookup(address)?.bind(address, config).await?;
        Ok(Listener::from_acceptor(acceptor))
    }

    /// A listener over an acceptor made by hand (a transport's own, not registered).
    pub fn from_acceptor(acceptor: Box<dyn Acceptor>) -> Listener {
        let local = acceptor.local_address();
        Listener { acceptor, local }
    }

    /// The address clients connect to (for `tcp://HOST:0`, with the port the system chose).
    pub fn local_address(&self) -> &Address {
        &self.local
    }

    /// Waits for the next connection. Cancellation safe. [`TransportError::Closed`] means the
    /// listener will accept no more (`stdio` serves exactly one connection).
    pub async fn accept(&self) -> Result<Connection, TransportError> {
        self.acceptor.accept().await
    }
}
