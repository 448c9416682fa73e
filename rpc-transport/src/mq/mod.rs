//! `mq://NAME`: POSIX message queues. (Interface stub; the implementation lands separately.)

use std::time::Duration;

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, PeerInfo};
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;

fn unavailable(address: &Address) -> TransportError {
    TransportError::Unavailable {
        scheme: "mq",
        address: address.to_string(),
    }
}

/// The sending half of a message-queue connection.
#[derive(Debug)]
pub(crate) struct MqSender {
    limit: usize,
}

/// The receiving half of a message-queue connection.
#[derive(Debug)]
pub(crate) struct MqReceiver {}

impl MqSender {
    pub(crate) fn max_frame_size(&self) -> usize {
        self.limit
    }

    pub(crate) async fn send(&mut self, _frame: Frame) -> Result<(), TransportError> {
        Err(TransportError::Closed)
    }

    pub(crate) fn send_blocking(
        &mut self,
        _frame: Frame,
        _deadline: Deadline,
    ) -> Result<(), TransportError> {
        Err(TransportError::Closed)
    }

    pub(crate) fn close(&mut self) {}
}

impl MqReceiver {
    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        Err(TransportError::Closed)
    }

    pub(crate) fn recv_blocking(
        &mut self,
        _deadline: Deadline,
    ) -> Result<Option<Frame>, TransportError> {
        Err(TransportError::Closed)
    }

    pub(crate) fn has_buffered(&self) -> bool {
        false
    }

    pub(crate) async fn drain(&mut self) {}
}

/// A bound `mq://NAME` listener.
#[derive(Debug)]
pub(crate) struct MqAcceptor {}

impl MqAcceptor {
    pub(crate) fn bind(
        address: &Address,
        _name: &str,
        _config: &TransportConfig,
    ) -> Result<MqAcceptor, TransportError> {
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
    _name: &str,
    _config: &TransportConfig,
) -> Result<Connection, TransportError> {
    Err(unavailable(address))
}

pub(crate) fn connect_blocking(
    address: &Address,
    _name: &str,
    _config: &TransportConfig,
    _timeout: Duration,
) -> Result<(MqSender, MqReceiver, PeerInfo), TransportError> {
    Err(unavailable(address))
}
