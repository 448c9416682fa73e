//! The `shm` and `mmap` transports, and the trait implementations of their halves (which
//! `sysv-shm`, in `sysv/`, shares).

use std::time::Duration;

use super::endpoint::{ShmReceiver, ShmSender};
use super::rendezvous::{ShmAcceptor, connect, connect_blocking, socket_path};
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

/// `shm://NAME` and `shm:///abs/rendezvous.sock`: rings in a sealed memfd per connection.
pub(crate) struct Shm;

/// `mmap:///abs/file`: rings in slots of a regular file.
pub(crate) struct Mmap;

/// The check of `shm://` and `sysv-shm://` addresses: a name, or an absolute socket path.
pub(super) fn check_name_or_path(address: &Address) -> Result<(), TransportError> {
    match address.target() {
        Some(path) if path.starts_with('/') => address.absolute_path().map(drop),
        _ => address.name().map(drop),
    }
}

/// Binds a listener of any of the shared-memory schemes.
pub(super) fn bind<'a>(
    address: &'a Address,
    config: &'a TransportConfig,
) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
    Box::pin(async move {
        let acceptor = ShmAcceptor::bind(address, config)?;
        Ok(Box::new(acceptor) as Box<dyn Acceptor>)
    })
}

/// Connects without a runtime to a listener of any of the shared-memory schemes.
pub(super) fn connect_blocking_shm(
    address: &Address,
    config: &TransportConfig,
    timeout: Duration,
) -> Result<BlockingConnection, TransportError> {
    let (sender, receiver, peer) = connect_blocking(address, config, timeout)?;
    Ok(BlockingConnection::new(
        BlockingSender::new(sender),
        BlockingReceiver::new(receiver),
        peer,
    ))
}

impl Transport for Shm {
    fn scheme(&self) -> &str {
        "shm"
    }

    fn forms(&self) -> Vec<String> {
        vec!["shm://NAME".into(), "shm:///abs/rendezvous.sock".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        check_name_or_path(address)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(connect(address, config))
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        bind(address, config)
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        connect_blocking_shm(address, config, timeout)
    }
}

impl Transport for Mmap {
    fn scheme(&self) -> &str {
        "mmap"
    }

    fn forms(&self) -> Vec<String> {
        vec!["mmap:///abs/file".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        socket_path(address).map(drop)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(connect(address, config))
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        bind(address, config)
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        connect_blocking_shm(address, config, timeout)
    }
}

impl Acceptor for ShmAcceptor {
    fn local_address(&self) -> Address {
        self.address.clone()
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(ShmAcceptor::accept(self))
    }
}

impl SendFrames for ShmSender {
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(ShmSender::send(self, frame))
    }

    fn try_send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        ShmSender::try_send_with(self, len, fill)
    }

    fn writes_in_place(&self) -> bool {
        true
    }

    fn mechanism(&self) -> &'static str {
        "shm"
    }

    fn max_frame_size(&self) -> usize {
        ShmSender::max_frame_size(self)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        ShmSender::close(self);
        Box::pin(std::future::ready(Ok(())))
    }

    fn into_blocking(self: Box<Self>) -> Result<Box<dyn BlockingSendFrames>, Box<dyn SendFrames>> {
        Ok(self)
    }
}

impl ReceiveFrames for ShmReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(ShmReceiver::recv(self))
    }

    fn set_max_frame_size(&mut self, limit: usize) {
        ShmReceiver::set_max_frame_size(self, limit)
    }

    fn peer_gone(&self) -> bool {
        ShmReceiver::peer_gone(self)
    }

    fn has_buffered(&self) -> bool {
        ShmReceiver::has_buffered(self)
    }

    fn set_spinning(&mut self, spinning: &mut dyn FnMut() -> bool) {
        ShmReceiver::set_spinning(self, spinning())
    }

    fn drain(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(ShmReceiver::drain(self))
    }

    fn into_blocking(
        self: Box<Self>,
    ) -> Result<Box<dyn BlockingReceiveFrames>, Box<dyn ReceiveFrames>> {
        Ok(self)
    }
}

impl BlockingSendFrames for ShmSender {
    fn send(&mut self, frame: Frame, deadline: Deadline) -> Result<(), TransportError> {
        self.send_blocking(frame, deadline)
    }

    fn send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        self.send_with_blocking(len, fill, deadline)
    }

    fn try_send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        ShmSender::try_send_with(self, len, fill)
    }

    fn mechanism(&self) -> &'static str {
        "shm"
    }

    fn max_frame_size(&self) -> usize {
        ShmSender::max_frame_size(self)
    }

    fn close(&mut self) {
        ShmSender::close(self)
    }
}

impl BlockingReceiveFrames for ShmReceiver {
    fn recv(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError> {
        self.recv_blocking(deadline)
    }

    fn peer_gone(&self) -> bool {
        ShmReceiver::peer_gone(self)
    }

    fn interrupter(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        let interrupter = ShmReceiver::interrupter(self);
        Some(Box::new(move || interrupter.interrupt()))
    }
}
