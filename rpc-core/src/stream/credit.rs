//! [`Credit`]: how many more bytes of a stream's items the sending side may send.
//!
//! Every stream starts with [`STREAM_WINDOW`] bytes of credit; the receiver grants more as its
//! consumer takes items (a `Credit` frame). The sender sends an item while any credit is left,
//! so what is in flight (sent, not yet consumed) stays under the window plus one item: a slow
//! consumer bounds the producer's memory.

use std::sync::Mutex;

use tokio::sync::Notify;

use crate::wire::STREAM_WINDOW;

#[derive(Debug)]
struct State {
    /// Bytes the sender may still send (negative after an item overdrew it).
    available: i64,
    /// Set when the call ended: the sender stops.
    closed: bool,
}

/// The sending side's credit on one stream.
#[derive(Debug)]
pub(crate) struct Credit {
    state: Mutex<State>,
    changed: Notify,
}

impl Default for Credit {
    fn default() -> Self {
        Credit {
            state: Mutex::new(State {
                available: STREAM_WINDOW as i64,
                closed: false,
            }),
            changed: Notify::new(),
        }
    }
}

impl Credit {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The receiver granted `bytes` more.
    pub(crate) fn grant(&self, bytes: u64) {
        let mut state = self.lock();
        state.available = state
            .available
            .saturating_add(bytes.min(i64::MAX as u64) as i64);
        drop(state);
        self.changed.notify_waiters();
    }

    /// The call ended: a waiting sender stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_waiters();
    }

    /// Waits until an item may be sent: `false` once the call ended.
    pub(crate) async fn ready(&self) -> bool {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.lock();
                if state.closed {
                    return false;
                }
                if state.available > 0 {
                    return true;
                }
            }
            changed.await;
        }
    }

    /// An item of `bytes` was sent.
    pub(crate) fn spend(&self, bytes: usize) {
        let mut state = self.lock();
        state.available = state.available.saturating_sub(bytes as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sender_waits_for_credit_and_stops_when_closed() {
        let credit = std::sync::Arc::new(Credit::default());
        assert!(credit.ready().await);
        credit.spend(STREAM_WINDOW as usize + 10);
        let waiter = tokio::spawn({
            let credit = credit.clone();
            async move { credit.ready().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        credit.grant(20);
        assert!(waiter.await.unwrap());
        credit.close();
        assert!(!credit.ready().await);
    }
}
