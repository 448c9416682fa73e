//! The `mq` transport, and the trait implementations of its halves.

use std::time::Duration;

use super::MqAcceptor;
use super::client::{connect, connect_blocking};
use super::endpoint::{MqReceiver, MqSender};
use crate::TransportConfig;
use crate::address::Address;
use crate::blocking::{BlockingConnection, BlockingReceiver, BlockingSender};
use crate::connection::Connection;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::transport::{
    Acceptor, BlockingReceiveFrames, BlockingSendFrames, BoxFuture, ReceiveFrames, SendFrames,
    Transport,
};

/// `mq://NAME`: POSIX message queues.
pub(crate) struct Mq;

impl Transport for Mq {
    fn scheme(&self) -> &str {
        "mq"
    }

    fn forms(&self) -> Vec<String> {
        vec!["mq://NAME".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        address.name().map(drop)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move { connect(address, &address.name()?, config).await })
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(async move {
            let acceptor = MqAcceptor::bind(address, &address.name()?, config)?;
            Ok(Box::new(acceptor) as Box<dyn Acceptor>)
        })
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        let (sender, receiver, peer) =
            connect_blocking(address, &address.name()?, config, timeout)?;
        Ok(BlockingConnection::new(
            BlockingSender::new(sender),
            BlockingReceiver::new(receiver),
            peer,
        ))
    }
}

impl Acceptor for MqAcceptor {
    fn local_address(&self) -> Address {
        self.address.clone()
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(MqAcceptor::accept(self))
    }
}

impl SendFrames for MqSender {
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(MqSender::send(self, frame))
    }

    fn mechanism(&self) -> &'static str {
        "mq"
    }

    fn max_frame_size(&self) -> usize {
        MqSender::max_frame_size(self)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        MqSender::close(self);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl ReceiveFrames for MqReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(MqReceiver::recv(self))
    }

    fn set_max_frame_size(&mut self, limit: usize) {
        MqReceiver::set_max_frame_size(self, limit)
    }

    fn peer_gone(&self) -> bool {
        MqReceiver::peer_gone(self)
    }

    fn has_buffered(&self) -> bool {
        MqReceiver::has_buffered(self)
    }

    fn drain(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(MqReceiver::drain(self))
    }

    fn as_poll(&mut self) -> Option<&mut dyn crate::PollFrames> {
        MqReceiver::as_poll(self)
    }
}

impl BlockingSendFrames for MqSender {
    fn send(&mut self, frame: Frame, deadline: Deadline) -> Result<(), TransportError> {
        self.send_blocking(frame, deadline)
    }

    fn mechanism(&self) -> &'static str {
        "mq"
    }

    fn max_frame_size(&self) -> usize {
        MqSender::max_frame_size(self)
    }

    fn close(&mut self) {
        MqSender::close(self)
    }
}

impl BlockingReceiveFrames for MqReceiver {
    fn recv(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError> {
        self.recv_blocking(deadline)
    }

    fn peer_gone(&self) -> bool {
        MqReceiver::peer_gone(self)
    }
}
