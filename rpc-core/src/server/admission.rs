//! Admission: connections still in their handshake are tracked apart from established ones,
//! so silent or slow peers cannot take the slots of clients that say `Hello`.
//!
//! - A connection counts against `max_connections` only once its handshake succeeds (the
//!   permit is taken in the handshake, see `handshake.rs`).
//! - At most `max_pending_handshakes` connections wait for their handshake at once; when one
//!   more arrives, the one that has waited longest is dropped. A well-behaved client finishes
//!   its handshake in a round trip, so only a flood newer than it could evict it.
//! - Each handshake is bounded by `handshake_timeout` (2 s by default).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The connections waiting for their handshake, oldest first.
#[derive(Debug)]
pub(crate) struct PendingHandshakes {
    max: usize,
    waiting: Mutex<Waiting>,
}

#[derive(Debug, Default)]
struct Waiting {
    next: u64,
    tokens: BTreeMap<u64, CancellationToken>,
}

/// A connection's place among the pending handshakes; leaving it (drop) frees the place.
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    /// Cancelled when a newer connection evicts this one.
    pub(crate) evicted: CancellationToken,
    registry: Arc<PendingHandshakes>,
}

impl PendingHandshakes {
    /// At most `max` handshakes at once (at least one).
    pub(crate) fn new(max: usize) -> Arc<PendingHandshakes> {
        Arc::new(PendingHandshakes {
            max: max.max(1),
            waiting: Mutex::new(Waiting::default()),
        })
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection, evicting the oldest waiting one if there are too many.
    pub(crate) fn enter(self: &Arc<Self>) -> Ticket {
        let evicted = CancellationToken::new();
        let mut waiting = self.waiting();
        let id = waiting.next;
        waiting.next += 1;
        waiting.tokens.insert(id, evicted.clone());
        if waiting.tokens.len() > self.max
            && let Some((_, oldest)) = waiting.tokens.pop_first()
        {
            oldest.cancel();
        }
        Ticket {
            id,
            evicted,
            registry: self.clone(),
        }
    }

    /// Connections waiting for their handshake now.
    pub(crate) fn len(&self) -> usize {
        self.waiting().tokens.len()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.waiting().tokens.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_connection_is_evicted_first() {
        let pending = PendingHandshakes::new(2);
        let first = pending.enter();
        let second = pending.enter();
        assert_eq!(pending.len(), 2);
        let third = pending.enter();
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled() && !third.evicted.is_cancelled());
        assert_eq!(pending.len(), 2);
        drop(second);
        assert_eq!(pending.len(), 1);
        let _fourth = pending.enter();
        assert!(!third.evicted.is_cancelled());
        drop(first);
        assert_eq!(pending.len(), 2);
    }
}
