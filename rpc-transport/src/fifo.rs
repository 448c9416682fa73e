//! `fifo:///abs/dir`: named pipes. (Stub; implemented next.)

use std::time::Duration;

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::pipe::SyncPipe;

fn unavailable(address: &Address) -> TransportError {
    TransportError::Unavailable {
        scheme: "fifo",
        address: address.to_string(),
    }
}

/// A bound `fifo://` listener.
#[derive(Debug)]
pub(crate) struct FifoAcceptor {}

impl FifoAcceptor {
    pub(crate) fn bind(address: &Address) -> Result<FifoAcceptor, TransportError> {
        Err(unavailable(address))
    }

    pub(crate) async fn accept(
        &self,
        _config: &TransportConfig,
    ) -> Result<Connection, TransportError> {
        std::future::pending().await
    }
}

pub(crate) async fn connect(
    address: &Address,
    _config: &TransportConfig,
) -> Result<Connection, TransportError> {
    Err(unavailable(address))
}

pub(crate) fn connect_blocking(
    address: &Address,
    _timeout: Duration,
) -> Result<(SyncPipe, SyncPipe, PeerInfo), TransportError> {
    Err(unavailable(address))
}
