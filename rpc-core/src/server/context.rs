//! [`Context`]: what a handler may know about the call it serves.

use std::sync::Arc;
use std::time::Instant;

use rpc_transport::{PeerCertificate, PeerInfo};

use crate::telemetry::{Ambient, TraceParent};

tokio::task_local! {
    static CURRENT: Context;
}

/// The call a handler is serving: method, caller's metadata, deadline and peer.
///
/// Read it inside a handler with [`Context::current`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Context {
    /// The call's id on its connection.
    pub call_id: u64,
    /// The method's name.
    pub method: &'static str,
    /// Key-value pairs the caller attached.
    pub metadata: Vec<(String, String)>,
    /// When the caller stops waiting, if it set a timeout.
    pub deadline: Option<Instant>,
    /// Who called, as the transport knows it (for Unix sockets, the peer's pid, uid and gid).
    pub peer: Arc<PeerInfo>,
    /// The caller's trace context, if it sent a valid `traceparent`.
    pub(crate) trace_parent: Option<TraceParent>,
    /// This call's own trace context: the trace id, and the server span's id.
    pub(crate) trace: TraceParent,
}

impl Context {
    /// The context of the call being served by this task, or `None` outside a handler.
    pub fn current() -> Option<Context> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The value of metadata `key`, if the caller attached it.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The verified certificate the caller presented over `tls://` (under mutual TLS): its
    /// subject and subject alternative names. `None` for other transports, and for TLS
    /// clients that presented none.
    pub fn peer_certificate(&self) -> Option<&PeerCertificate> {
        match &*self.peer {
            PeerInfo::Tls { certificate, .. } => certificate.as_ref(),
            _ => None,
        }
    }

    /// The caller's W3C trace context (its `traceparent` metadata), if it sent a valid one.
    /// Calls this handler makes carry the same trace id on their own.
    pub fn trace_parent(&self) -> Option<TraceParent> {
        self.trace_parent
    }

    /// This call's place in its trace: the trace id (the caller's, or a new one) and the span
    /// id of the server's span for this call.
    pub fn trace(&self) -> TraceParent {
        self.trace
    }

    /// Runs `future` as the handler of this call; calls it makes inherit its trace and deadline
    /// (see [`ambient`]).
    pub(crate) async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

/// Runs `f` (one poll of a handler) as the handler of the call `context` describes.
pub(crate) fn in_scope<R>(context: Context, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(context, f)
}

/// What a call made by the running handler inherits from the call it serves: its trace and
/// deadline. `None` outside a handler.
pub(crate) fn ambient() -> Option<Ambient> {
    CURRENT
        .try_with(|context| Ambient {
            trace: context.trace,
            deadline: context.deadline,
        })
        .ok()
}
