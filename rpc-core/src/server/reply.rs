//! [`ReplySink`]: where a connection's responses go, from tasks and from its own thread.

use std::sync::Arc;
use std::time::Duration;

use rpc_transport::{BlockingSender, Deadline, Frame, FrameSender, TransportError};

use crate::wire::{self, Header, Kind, WireError};

/// How long a reply may wait for space in a full shared-memory ring before the connection is
/// given up.
const BLOCKING_SEND_LIMIT: Duration = Duration::from_secs(30);

/// The sending half of a server connection, shared by every call on it.
#[derive(Clone)]
pub(crate) enum ReplySink {
    /// An async transport half.
    Async(Arc<tokio::sync::Mutex<FrameSender>>),
    /// A blocking half (shared memory served from a dedicated thread).
    Blocking(Arc<std::sync::Mutex<BlockingSender>>),
}

impl ReplySink {
    fn lock_blocking(
        sender: &std::sync::Mutex<BlockingSender>,
    ) -> std::sync::MutexGuard<'_, BlockingSender> {
        sender.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `frame` from async code.
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), TransportError> {
        match self {
            ReplySink::Async(sender) => sender.lock().await.send(frame).await,
            ReplySink::Blocking(sender) => {
                Self::lock_blocking(sender).send(frame, Deadline::After(BLOCKING_SEND_LIMIT))
            }
        }
    }

    /// Sends `frame` from the connection's own thread (blocking sinks only).
    pub(crate) fn send_blocking(&self, frame: Frame) -> Result<(), TransportError> {
        match self {
            ReplySink::Blocking(sender) => {
                Self::lock_blocking(sender).send(frame, Deadline::After(BLOCKING_SEND_LIMIT))
            }
            ReplySink::Async(_) => unreachable!("async sinks are only used from tasks"),
        }
    }

    /// Closes the sending direction.
    pub(crate) async fn close(&self) {
        match self {
            ReplySink::Async(sender) => {
                let _ = sender.lock().await.close().await;
            }
            ReplySink::Blocking(sender) => Self::lock_blocking(sender).close(),
        }
    }
}

/// An `Error` frame for call `call_id` of `method` (call id 0: the whole connection).
pub(crate) fn error_frame(method: u32, call_id: u64, error: &WireError) -> Frame {
    let header = Header {
        kind: Kind::Error,
        method,
        call_id,
    };
    wire::message_frame(header, None, error).expect("wire errors always encode")
}
