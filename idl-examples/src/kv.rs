//! The `Kv` service: a key-value store with streamed listings and a live stream of changes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rpc_core::Streaming;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
}

/// A change to the store, as `watch` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// `key` was set to `value`.
    Put {
        /// The key.
        key: String,
        /// Its new value.
        value: Vec<u8>,
    },
    /// `key` was deleted.
    Deleted {
        /// The key.
        key: String,
    },
}

impl Change {
    /// The key changed.
    pub fn key(&self) -> &str {
        match self {
            Change::Put { key, .. } | Change::Deleted { key } => key,
        }
    }
}

/// A key-value store, served over any transport.
#[rpc_core::service]
pub trait Kv {
    /// The value of `key`, if it has one.
    #[rpc(idempotent)]
    async fn get(&self, key: String) -> Option<Vec<u8>>;
    /// Sets `key` to `value`; returns the value it replaced.
    async fn put(&self, key: String, value: Vec<u8>) -> Option<Vec<u8>>;
    /// Deletes `key`; returns the value it had.
    async fn delete(&self, key: String) -> Option<Vec<u8>>;
    /// Every entry whose key starts with `prefix`, in key order (a snapshot).
    #[rpc(idempotent)]
    async fn list(&self, prefix: String) -> Streaming<Entry>;
    /// Every change to a key starting with `prefix` from now on, as it happens, until the call
    /// is cancelled. A watcher that falls more than 1,024 changes behind is ended with an error.
    #[rpc(timeout = "none")]
    async fn watch(&self, prefix: String) -> Streaming<Change>;
}

/// How many changes a slow watcher may fall behind before its stream ends.
const WATCH_BACKLOG: usize = 1024;

/// The store the example binaries serve: in memory.
#[derive(Debug)]
pub struct KvStore {
    entries: Mutex<BTreeMap<String, Vec<u8>>>,
    changes: broadcast::Sender<Change>,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore {
            entries: Mutex::default(),
            changes: broadcast::channel(WATCH_BACKLOG).0,
        }
    }
}

impl KvStore {
    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Kv for KvStore {
    async fn get(&self, key: String) -> Option<Vec<u8>> {
        self.entries().get(&key).cloned()
    }

    async fn put(&self, key: String, value: Vec<u8>) -> Option<Vec<u8>> {
        // The change is announced under the lock, so watchers see changes in their order.
        let mut entries = self.entries();
        let _ = self.changes.send(Change::Put {
            key: key.clone(),
            value: value.clone(),
        });
        entries.insert(key, value)
    }

    async fn delete(&self, key: String) -> Option<Vec<u8>> {
        let mut entries = self.entries();
        let old = entries.remove(&key);
        if old.is_some() {
            let _ = self.changes.send(Change::Deleted { key });
        }
        old
    }

    async fn list(&self, prefix: String) -> Streaming<Entry> {
        let snapshot: Vec<Entry> = self
            .entries()
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, value)| Entry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        Streaming::from_iter(snapshot)
    }

    async fn watch(&self, prefix: String) -> Streaming<Change> {
        let changes = self.changes.subscribe();
        let stream = futures_util::stream::unfold(changes, move |mut changes| {
            let prefix = prefix.clone();
            async move {
                loop {
                    match changes.recv().await {
                        Ok(change) if change.key().starts_with(&prefix) => {
                            return Some((Ok(change), changes));
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            let reason = format!("the watcher fell {missed} changes behind");
                            return Some((Err(reason), changes));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Streaming::try_from_stream(stream)
    }
}
