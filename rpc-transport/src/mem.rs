//! `mem://NAME`: connections between tasks of one process, over bounded channels.
//!
//! Frames move without a copy. The channel bound (in frames) is the backpressure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::TransportConfig;
use crate::address::Address;
use crate::blocking::BlockingConnection;
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;
use crate::frame::Frame;
use crate::transport::{Acceptor, BoxFuture, ReceiveFrames, SendFrames, Transport};

/// The `mem` transport.
pub(crate) struct Mem;

impl Transport for Mem {
    fn scheme(&self) -> &str {
        "mem"
    }

    fn forms(&self) -> Vec<String> {
        vec!["mem://NAME".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        address.name().map(drop)
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
        Box::pin(async move {
            let acceptor = MemAcceptor::bind(address, config)?;
            Ok(Box::new(acceptor) as Box<dyn Acceptor>)
        })
    }

    /// On a private runtime of its own, so not from inside one.
    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        BlockingConnection::over_runtime(address, timeout, || connect(address, config))
    }
}

/// A connection as it waits in a listener's queue.
type Pending = (MemSender, MemReceiver);

/// Frames a direction may hold before the sender waits.
const CHANNEL_FRAMES: usize = 256;
/// Connections a listener may have waiting to be accepted.
const BACKLOG: usize = 128;

type Registry = Mutex<HashMap<String, Arc<mpsc::Sender<Pending>>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The sending half of an in-memory connection.
#[derive(Debug)]
struct MemSender {
    tx: mpsc::Sender<Frame>,
    limit: usize,
}

impl MemSender {
    async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        if frame.len() > self.limit {
            return Err(TransportError::FrameTooLarge {
                size: frame.len(),
                limit: self.limit,
            });
        }
        self.tx
            .send(frame)
            .await
            .map_err(|_| TransportError::Closed)
    }
}

/// The receiving half of an in-memory connection.
#[derive(Debug)]
struct MemReceiver {
    rx: mpsc::Receiver<Frame>,
    limit: usize,
}

impl MemReceiver {
    async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match self.rx.recv().await {
            Some(frame) if frame.len() > self.limit => Err(TransportError::FrameTooLarge {
                size: frame.len(),
                limit: self.limit,
            }),
            other => Ok(other),
        }
    }
}

fn half_pair(sender_limit: usize, receiver_limit: usize) -> (MemSender, MemReceiver) {
    let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
    (
        MemSender {
            tx,
            limit: sender_limit,
        },
        MemReceiver {
            rx,
            limit: receiver_limit,
        },
    )
}

/// Connects to the in-process listener named by `address`.
async fn connect(
    address: &Address,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let name = address.name()?;
    let refused = || TransportError::Connect {
        address: address.to_string(),
        source: std::io::ErrorKind::ConnectionRefused.into(),
    };
    let accept_queue = registry()
        .lock()
        .expect("mem registry poisoned")
        .get(&name)
        .cloned()
        .ok_or_else(refused)?;
    // The listener's limit applies to what it receives; it learns ours in the RPC handshake.
    let listener_limit = config.max_frame_size;
    let (to_server, server_rx) = half_pair(config.max_frame_size, listener_limit);
    let (server_tx, from_server) = half_pair(listener_limit, config.max_frame_size);
    accept_queue
        .send((server_tx, server_rx))
        .await
        .map_err(|_| refused())?;
    Ok(Connection::new(
        FrameSender::new(to_server),
        FrameReceiver::new(from_server),
        PeerInfo::Mem,
    ))
}

/// A listener registered under a name; the name is freed when it is dropped.
#[derive(Debug)]
struct MemAcceptor {
    name: String,
    address: Address,
    limit: usize,
    queue: Arc<mpsc::Sender<Pending>>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
}

impl MemAcceptor {
    fn bind(address: &Address, config: &TransportConfig) -> Result<Self, TransportError> {
        let name = address.name()?;
        let name = name.as_str();
        let mut names = registry().lock().expect("mem registry poisoned");
        if names.get(name).is_some_and(|queue| !queue.is_closed()) {
            return Err(TransportError::AddressInUse {
                address: address.to_string(),
            });
        }
        let (tx, rx) = mpsc::channel(BACKLOG);
        let queue = Arc::new(tx);
        names.insert(name.to_owned(), queue.clone());
        Ok(MemAcceptor {
            name: name.to_owned(),
            address: address.clone(),
            limit: config.max_frame_size,
            queue,
            incoming: tokio::sync::Mutex::new(rx),
        })
    }
}

impl Acceptor for MemAcceptor {
    fn local_address(&self) -> Address {
        self.address.clone()
    }

    /// The next connection; its limits are set to the listener's configuration.
    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let (mut sender, mut receiver) = self
                .incoming
                .lock()
                .await
                .recv()
                .await
                .ok_or(TransportError::Closed)?;
            sender.limit = self.limit;
            receiver.limit = self.limit;
            Ok(Connection::new(
                FrameSender::new(sender),
                FrameReceiver::new(receiver),
                PeerInfo::Mem,
            ))
        })
    }
}

impl Drop for MemAcceptor {
    fn drop(&mut self) {
        let mut names = registry().lock().expect("mem registry poisoned");
        if names
            .get(&self.name)
            .is_some_and(|queue| Arc::ptr_eq(queue, &self.queue))
        {
            names.remove(&self.name);
        }
    }
}

impl MemSender {
    /// A sender whose receiver is gone: used after `close`, so the peer sees the end.
    fn closed() -> Self {
        let (tx, _) = mpsc::channel(1);
        MemSender { tx, limit: 0 }
    }
}

impl SendFrames for MemSender {
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(MemSender::send(self, frame))
    }

    fn mechanism(&self) -> &'static str {
        "mem"
    }

    fn max_frame_size(&self) -> usize {
        self.limit
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        *self = MemSender::closed();
        Box::pin(std::future::ready(Ok(())))
    }
}

impl ReceiveFrames for MemReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(MemReceiver::recv(self))
    }

    fn set_max_frame_size(&mut self, limit: usize) {
        self.limit = limit;
    }

    fn peer_gone(&self) -> bool {
        self.rx.is_closed()
    }

    fn has_buffered(&self) -> bool {
        !self.rx.is_empty()
    }

    fn drain(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move { while self.rx.recv().await.is_some() {} })
    }
}
