//! [`Context`]: what a handler may know about the call it serves.

use std::sync::Arc;
use std::time::Instant;

use rpc_transport::PeerInfo;

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

    pub(crate) async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}
