//! The `sysv-mq` transport, and the trait implementations of its halves.

use std::time::Duration;

use super::SysvAcceptor;
use super::client::{connect, connect_blocking};
use super::reader::SysvReceiver;
use super::writer::SysvSender;
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

/// `sysv-mq://NAME`: System V message queues.
pub(crate) struct SysvMq;

impl Transport for SysvMq {
    fn scheme(&self) -> &str {
        "sysv-mq"
    }

    fn forms(&self) -> Vec<String> {
        vec!["sysv-mq://NAME".into()]
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
            let acceptor = SysvAcceptor::bind(address, &address.name()?, config)?;
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

impl Acceptor for SysvAcceptor {
    fn local_address(&self) -> Address {
        SysvAcceptor::local_address(self)
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(SysvAcceptor::accept(self))
    }
}

impl SendFrames for SysvSender {
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(SysvSender::send(self, frame))
    }

    fn mechanism(&self) -> &'static str {
        "sysv-mq"
    }

    fn max_frame_size(&self) -> usize {
        SysvSender::max_frame_size(self)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        SysvSender::close(self);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl ReceiveFrames for SysvReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(SysvReceiver::recv(self))
    }

    fn set_max_frame_size(&mut self, limit: usize) {
        SysvReceiver::set_max_frame_size(self, limit)
    }

    fn peer_gone(&self) -> bool {
        SysvReceiver::peer_gone(self)
    }

    fn set_spinning(&mut self, spinning: &mut dyn FnMut() -> bool) {
        SysvReceiver::set_spinning(self, spinning())
    }

    fn drain(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(SysvReceiver::drain(self))
    }

    /// A caller may read its reply itself (see `reader/direct.rs`). Either side's receiver
    /// allows it; only clients do it.
    fn as_poll(&mut self) -> Option<&mut dyn crate::PollFrames> {
        Some(self)
    }
}

impl BlockingSendFrames for SysvSender {
    fn send(&mut self, frame: Frame, deadline: Deadline) -> Result<(), TransportError> {
        self.send_blocking(frame, deadline)
    }

    fn mechanism(&self) -> &'static str {
        "sysv-mq"
    }

    fn max_frame_size(&self) -> usize {
        SysvSender::max_frame_size(self)
    }

    fn close(&mut self) {
        SysvSender::close(self)
    }
}

impl BlockingReceiveFrames for SysvReceiver {
    fn recv(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError> {
        self.recv_blocking(deadline)
    }

    fn peer_gone(&self) -> bool {
        SysvReceiver::peer_gone(self)
    }

    fn interrupter(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        Some(Box::new(SysvReceiver::interrupter(self)))
    }
}
