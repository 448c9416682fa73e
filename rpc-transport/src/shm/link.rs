//! The rendezvous socket of one connection, from one side: liveness and large-message
//! descriptors.
//!
//! The socket stays open for the connection's life. The process's one watcher thread
//! (`watcher.rs`) reads it whenever it is readable: each message on it carries the memfd of one
//! large message (queued for the receiving half); end of stream means the peer is gone,
//! whatever way it ended, and the watcher wakes every sleeper of this side at once so pending
//! calls fail immediately.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::MsgFlags;

use super::file_slots::SlotLease;
use super::region::{self, futex_wake};
use super::ring::{READER_SLEEP, RingMemory, WRITER_SLEEP};
use super::segment::Segment;
use crate::error::TransportError;

/// Region descriptors a peer may send ahead of announcing them in the ring.
const MAX_QUEUED_REGIONS: usize = 16; // well above the sender's bound (bulk.rs, MAX_RETIRED)

/// Messages [`Link::receive_pending`] reads per call: more than a well-behaved peer can have
/// waiting (MAX_QUEUED_REGIONS), so it needs one call, while a flood waits its turn.
const MAX_READS_PER_WAKE: usize = MAX_QUEUED_REGIONS + 1;

/// A large message's descriptor as announced on the socket: sequence number, length, memfd.
pub(crate) struct LargeFd {
    pub(crate) seq: u64,
    pub(crate) len: u64,
    pub(crate) fd: OwnedFd,
}

/// Which ring this side consumes and which it produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Consumes ring 1 (server to client), produces ring 0.
    Client,
    /// Consumes ring 0 (client to server), produces ring 1.
    Server,
}

/// One side's view of the connection outside the rings.
pub(crate) struct Link {
    pub(crate) socket: UnixStream,
    pub(crate) segment: Segment,
    pub(crate) side: Side,
    /// Eventfd waking an async consumer of our incoming ring (the peer signals it; so do we,
    /// on death).
    pub(crate) incoming_event: OwnedFd,
    /// Eventfd waking the peer's async consumer of our outgoing ring.
    pub(crate) outgoing_event: OwnedFd,
    dead: AtomicBool,
    /// Set by [`Link::interrupt`]: a blocked receive returns early once.
    interrupted: AtomicBool,
    reason: Mutex<Option<String>>,
    inbox: Mutex<VecDeque<LargeFd>>,
    arrived: Condvar,
    /// How the peer wrote the last large message received (`store_choice.rs`): 0 before any,
    /// then 1 + `Stores::index`. The server writes its own large messages the same way.
    pub(crate) peer_stores: std::sync::atomic::AtomicUsize,
    /// The file slot this connection occupies (mmap://), freed with the link.
    _lease: Option<SlotLease>,
}

impl Link {
    /// Sets up this side and hands it to the process's watcher thread, which keeps it alive
    /// until the socket ends.
    pub(crate) fn start(
        socket: UnixStream,
        segment: Segment,
        side: Side,
        incoming_event: OwnedFd,
        outgoing_event: OwnedFd,
        lease: Option<SlotLease>,
    ) -> std::io::Result<Arc<Link>> {
        let link = Arc::new(Link {
            socket,
            segment,
            side,
            incoming_event,
            outgoing_event,
            dead: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            reason: Mutex::new(None),
            inbox: Mutex::new(VecDeque::new()),
            arrived: Condvar::new(),
            peer_stores: std::sync::atomic::AtomicUsize::new(0),
            _lease: lease,
        });
        super::watcher::watch(link.clone())?;
        Ok(link)
    }

    /// Reads, without blocking, what the peer has sent on the socket: each message queues the
    /// descriptor of one large message and wakes its receiver. Returns why the connection is
    /// over if it is (end of stream, a socket error, a malformed message, or more descriptors
    /// than the peer may send ahead), `None` once nothing more is waiting.
    ///
    /// Called by the process's watcher thread (`watcher.rs`) whenever the socket is readable.
    /// Reads at most [`MAX_READS_PER_WAKE`] messages, so one peer cannot hold the watcher; if
    /// more are waiting, the socket stays readable and the watcher comes back.
    pub(crate) fn receive_pending(&self) -> Option<String> {
        let mut message = [0u8; 16];
        for _ in 0..MAX_READS_PER_WAKE {
            match region::recv_fds(self.socket.as_fd(), &mut message, MsgFlags::MSG_DONTWAIT) {
                Ok((0, _)) => return Some("the peer closed the connection".to_owned()),
                Ok((16, mut fds)) if fds.len() == 1 => {
                    let large = LargeFd {
                        seq: u64::from_le_bytes(message[..8].try_into().expect("8 bytes")),
                        len: u64::from_le_bytes(message[8..].try_into().expect("8 bytes")),
                        fd: fds.pop().expect("one descriptor"),
                    };
                    let mut inbox = self.lock_inbox();
                    if inbox.len() >= MAX_QUEUED_REGIONS {
                        return Some(
                            "the peer sent more region descriptors than it announced".to_owned(),
                        );
                    }
                    inbox.push_back(large);
                    drop(inbox);
                    self.arrived.notify_all();
                }
                Ok((n, fds)) => {
                    return Some(format!(
                        "the peer sent a malformed control message ({n} bytes, {} descriptors)",
                        fds.len()
                    ));
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Some(format!("the rendezvous socket failed: {error}")),
            }
        }
        None
    }

    fn lock_inbox(&self) -> std::sync::MutexGuard<'_, VecDeque<LargeFd>> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the connection gone and wakes every sleeper of this side.
    pub(crate) fn mark_dead(&self, reason: &str) {
        self.note_reason(reason);
        self.dead.store(true, Ordering::SeqCst);
        let (incoming, outgoing) = self.rings();
        futex_wake(incoming.reader_word());
        futex_wake(outgoing.writer_word());
        signal_event(&self.incoming_event);
        self.arrived.notify_all();
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    /// Records why the connection ends (unless a reason is already recorded), ahead of
    /// [`mark_dead`](Self::mark_dead): for when the peer may see the end and close first, so
    /// this side's errors still give this reason rather than the peer's close.
    pub(crate) fn note_reason(&self, reason: &str) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| reason.to_owned());
    }

    /// Makes this side's blocked (or next) receive return early, once.
    pub(crate) fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        let (incoming, _) = self.rings();
        futex_wake(incoming.reader_word());
    }

    /// Whether an interrupt is pending; clears it.
    pub(crate) fn take_interrupt(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed) && self.interrupted.swap(false, Ordering::SeqCst)
    }

    /// Whether the peer is gone.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// The error for an operation on a dead connection.
    pub(crate) fn closed_error(&self) -> TransportError {
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            reason.unwrap_or_else(|| "connection closed".into()),
        ))
    }

    /// (incoming, outgoing) ring views, for their control words.
    pub(crate) fn rings(&self) -> (RingWords, RingWords) {
        let (to_server, to_client) = (self.segment.to_server(), self.segment.to_client());
        match self.side {
            Side::Client => (RingWords(to_client), RingWords(to_server)),
            Side::Server => (RingWords(to_server), RingWords(to_client)),
        }
    }

    /// Sends the descriptor of large message `seq` to the peer.
    pub(crate) fn send_large(
        &self,
        seq: u64,
        len: u64,
        fd: &OwnedFd,
    ) -> Result<(), TransportError> {
        let mut message = [0u8; 16];
        message[..8].copy_from_slice(&seq.to_le_bytes());
        message[8..].copy_from_slice(&len.to_le_bytes());
        region::send_fds(self.socket.as_fd(), &message, &[fd.as_fd()]).map_err(|e| {
            self.mark_dead(&format!("sending a large message failed: {e}"));
            TransportError::Io(e)
        })
    }

    /// Whether the descriptor of large message `seq` has arrived.
    pub(crate) fn has_large(&self, seq: u64) -> bool {
        self.lock_inbox()
            .front()
            .is_some_and(|large| large.seq == seq)
    }

    /// Waits (at most `limit`) for the descriptor of large message `seq`.
    pub(crate) fn take_large(&self, seq: u64, limit: Duration) -> Result<LargeFd, TransportError> {
        let deadline = Instant::now() + limit;
        let mut inbox = self.lock_inbox();
        loop {
            if let Some(large) = inbox.pop_front() {
                if large.seq != seq {
                    return Err(TransportError::Malformed(format!(
                        "large message {} arrived where {seq} was announced",
                        large.seq
                    )));
                }
                return Ok(large);
            }
            if self.is_dead() {
                return Err(self.closed_error());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TransportError::Malformed(format!(
                    "large message {seq} was announced but its region never came"
                )));
            }
            inbox = self
                .arrived
                .wait_timeout(inbox, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Adds one to an eventfd's counter, waking whoever awaits it.
pub(crate) fn signal_event(event: &OwnedFd) {
    let _ = nix::unistd::write(event, &1u64.to_ne_bytes());
}

/// Resets an eventfd's counter (non-blocking: nothing to read is fine).
pub(crate) fn drain_event(event: &OwnedFd) {
    let mut count = [0u8; 8];
    let _ = nix::unistd::read(event, &mut count);
}

/// The control words of one ring, for waking its sleepers.
pub(crate) struct RingWords(super::ring::RegionRing);

impl RingWords {
    fn reader_word(&self) -> &std::sync::atomic::AtomicU32 {
        self.0.word32(READER_SLEEP)
    }

    fn writer_word(&self) -> &std::sync::atomic::AtomicU32 {
        self.0.word32(WRITER_SLEEP)
    }
}

/// Shuts the socket when the last half of a connection is dropped, which ends the watching of
/// both sides (and so frees both links).
pub(crate) struct LinkOwner(pub(crate) Arc<Link>);

impl Drop for LinkOwner {
    fn drop(&mut self) {
        let _ = self.0.socket.shutdown(std::net::Shutdown::Both);
    }
}
