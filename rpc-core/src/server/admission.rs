//! Admission: connections still in their handshake are tracked apart from established ones,
//! so silent or slow peers cannot take the slots of clients that say `Hello`.
//!
//! - A connection counts against `max_connections` only once its handshake succeeds (the
//!   permit is taken in the handshake, see `handshake.rs`).
//! - At most `max_pending_handshakes` connections wait for their handshake at once; when one
//!   more arrives, the one that has waited longest is dropped. A well-behaved client finishes
//!   its handshake in a round trip, so only a flood newer than it could evict it.
//! - Each handshake is bounded by `handshake_timeout` (2 s by default).
//! - With `max_connections_per_peer`, one IP address (TCP) or one uid (local transports) holds
//!   at most that many established connections ([`PeerCounts`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use rpc_transport::PeerInfo;
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

/// Who a per-peer limit counts: an IP address, or a local uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum PeerKey {
    Ip(IpAddr),
    Uid(u32),
}

impl PeerKey {
    fn of(peer: &PeerInfo) -> Option<PeerKey> {
        match peer {
            PeerInfo::Tcp(addr) | PeerInfo::Tls { addr, .. } => Some(PeerKey::Ip(addr.ip())),
            PeerInfo::Unix { uid, .. } | PeerInfo::Local { uid: Some(uid), .. } => {
                Some(PeerKey::Uid(*uid))
            }
            _ => None,
        }
    }
}

/// The established connections of each peer.
#[derive(Debug, Default)]
pub(crate) struct PeerCounts {
    counts: Mutex<HashMap<PeerKey, usize>>,
}

/// One established connection of a peer; dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    key: PeerKey,
    registry: Arc<PeerCounts>,
}

impl PeerCounts {
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<PeerKey, usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more connection of `peer`, or `Err(limit)` when it has `limit`
    /// already. `Ok(None)` without a limit, or for a peer not counted (in-process, pipes).
    pub(crate) fn take(
        self: &Arc<Self>,
        peer: &PeerInfo,
        limit: Option<usize>,
    ) -> Result<Option<PeerSlot>, usize> {
        let (Some(limit), Some(key)) = (limit, PeerKey::of(peer)) else {
            return Ok(None);
        };
        let mut counts = self.counts();
        let count = counts.entry(key).or_insert(0);
        if *count >= limit {
            return Err(limit);
        }
        *count += 1;
        Ok(Some(PeerSlot {
            key,
            registry: self.clone(),
        }))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.registry.counts();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
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

    #[test]
    fn a_peer_holds_at_most_its_limit_and_gets_places_back() {
        let peers = Arc::new(PeerCounts::default());
        let alice: PeerInfo = PeerInfo::Tcp("10.0.0.1:5000".parse().unwrap());
        let alice_again: PeerInfo = PeerInfo::Tcp("10.0.0.1:5001".parse().unwrap());
        let bob: PeerInfo = PeerInfo::Tcp("10.0.0.2:5000".parse().unwrap());
        let first = peers.take(&alice, Some(2)).unwrap();
        let _second = peers.take(&alice_again, Some(2)).unwrap();
        assert_eq!(peers.take(&alice, Some(2)).unwrap_err(), 2);
        assert!(peers.take(&bob, Some(2)).unwrap().is_some());
        drop(first);
        assert!(peers.take(&alice, Some(2)).unwrap().is_some());
        assert!(peers.take(&PeerInfo::Mem, Some(0)).unwrap().is_none());
        assert!(peers.take(&alice, None).unwrap().is_none());
    }
}
