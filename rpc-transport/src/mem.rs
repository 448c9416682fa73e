//! `mem://NAME`: connections between tasks of one process, over bounded channels.
//!
//! Frames move without a copy. The channel bound (in frames) is the backpressure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::mpsc;

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::frame::Frame;

/// Frames a direction may hold before the sender waits.
const CHANNEL_FRAMES: usize = 256;
/// Connections a listener may have waiting to be accepted.
const BACKLOG: usize = 128;

type Registry = Mutex<HashMap<String, Arc<mpsc::Sender<Connection>>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// The sending half of an in-memory connection.
#[derive(Debug)]
pub(crate) struct MemSender {
    tx: mpsc::Sender<Frame>,
    limit: usize,
}

impl MemSender {
    pub(crate) fn max_frame_size(&self) -> usize {
        self.limit
    }

    pub(crate) async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
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
pub(crate) struct MemReceiver {
    rx: mpsc::Receiver<Frame>,
    limit: usize,
}

impl MemReceiver {
    /// Sets the largest frame accepted from now on.
    pub(crate) fn set_max_frame_size(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Whether the sending half is gone.
    pub(crate) fn peer_gone(&self) -> bool {
        self.rx.is_closed()
    }

    /// Whether a frame is waiting.
    pub(crate) fn has_buffered(&self) -> bool {
        !self.rx.is_empty()
    }

    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        match self.rx.recv().await {
            Some(frame) if frame.len() > self.limit => Err(TransportError::FrameTooLarge {
                size: frame.len(),
                limit: self.limit,
            }),
            other => Ok(other),
        }
    }
}

impl MemReceiver {
    /// Discards frames until the peer closes.
    pub(crate) async fn drain(&mut self) {
        while self.rx.recv().await.is_some() {}
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

/// Connects to the in-process listener named `name`.
pub(crate) async fn connect(
    address: &Address,
    name: &str,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let refused = || TransportError::Connect {
        address: address.to_string(),
        source: std::io::ErrorKind::ConnectionRefused.into(),
    };
    let accept_queue = registry()
        .lock()
        .expect("mem registry poisoned")
        .get(name)
        .cloned()
        .ok_or_else(refused)?;
    // The listener's limit applies to what it receives; it learns ours in the RPC handshake.
    let listener_limit = config.max_frame_size;
    let (to_server, server_rx) = half_pair(config.max_frame_size, listener_limit);
    let (server_tx, from_server) = half_pair(listener_limit, config.max_frame_size);
    let server_side = Connection::new(server_tx.into(), server_rx.into(), PeerInfo::Mem);
    accept_queue
        .send(server_side)
        .await
        .map_err(|_| refused())?;
    Ok(Connection::new(
        to_server.into(),
        from_server.into(),
        PeerInfo::Mem,
    ))
}

/// A listener registered under a name; the name is freed when it is dropped.
#[derive(Debug)]
pub(crate) struct MemAcceptor {
    name: String,
    queue: Arc<mpsc::Sender<Connection>>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
}

impl MemAcceptor {
    pub(crate) fn bind(address: &Address, name: &str) -> Result<Self, TransportError> {
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
            queue,
            incoming: tokio::sync::Mutex::new(rx),
        })
    }

    /// The next connection; its receive limit is set to the listener's configuration.
    pub(crate) async fn accept(
        &self,
        config: &TransportConfig,
    ) -> Result<Connection, TransportError> {
        let mut connection = self
            .incoming
            .lock()
            .await
            .recv()
            .await
            .ok_or(TransportError::Closed)?;
        connection.set_mem_limits(config.max_frame_size);
        Ok(connection)
    }

    pub(crate) fn set_limits(sender: &mut MemSender, receiver: &mut MemReceiver, limit: usize) {
        sender.limit = limit;
        receiver.limit = limit;
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
    pub(crate) fn closed() -> Self {
        let (tx, _) = mpsc::channel(1);
        MemSender { tx, limit: 0 }
    }
}
