//! A connection's link: the rendezvous socket, kept open as the liveness signal, and the
//! connection's two queues, with the rules for who removes them.
//!
//! - A queue is removed by its reader once done with it: its receiver read the end or was
//!   dropped (`reader.rs`).
//! - When the peer is gone (its socket's end closed or shut: [`Link::on_peer_gone`], from the
//!   watcher), its queue is removed by us, the survivor, which also wakes our writer; our own
//!   queue is drained by our reader, then removed.
//! - When both our halves are dropped while the peer may still read what we sent, our socket
//!   is shut for writing (so the peer sees our end) and kept by the watcher until the peer
//!   closes its own ([`Linger`]); its queue is removed then, should it still be there.
//! - Removal is checked against each queue's creation time and owner, so a queue whose id was
//!   reused is never removed by mistake.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::ledger::Record;
use super::queue::Queue;
use super::watch::{Linger, watcher};

/// One connection's socket and queues.
pub(super) struct Link {
    socket: UnixStream,
    dead: AtomicBool,
    /// The queue we read.
    rx: Queue,
    /// The queue the peer reads.
    tx: Queue,
    /// On a server, the connection's ledger record; it goes once both queues have.
    record: Option<Record>,
    /// The watcher's key for the socket.
    key: u64,
    /// The peer's process (`SO_PEERCRED`).
    peer_pid: i32,
    /// Called when the peer goes (the receiver's wake-up).
    on_gone: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl Link {
    /// The link of a connection whose handshake is done, watched from now on.
    pub(super) fn new(
        socket: UnixStream,
        rx: Queue,
        tx: Queue,
        record: Option<Record>,
    ) -> io::Result<Arc<Link>> {
        let peer_pid = super::rendezvous::credentials(&socket)?.pid();
        let watcher = watcher();
        let key = watcher.as_ref().map_or(0, |w| w.key());
        let link = Arc::new(Link {
            on_gone: std::sync::OnceLock::new(),
            peer_pid,
            socket,
            dead: AtomicBool::new(false),
            rx,
            tx,
            record,
            key,
        });
        if let Err(error) = watcher.and_then(|w| w.watch(key, &link)) {
            // Dropped as dead: both queues go now.
            link.dead.store(true, Ordering::SeqCst);
            return Err(error);
        }
        Ok(link)
    }

    /// Has `hook` called when the peer goes (once; a second hook is ignored).
    pub(super) fn on_gone(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_gone.set(hook);
        // The peer may have gone before the hook was there (calling it twice is harmless).
        if let Some(hook) = self.on_gone.get().filter(|_| self.is_dead()) {
            hook();
        }
    }

    pub(super) fn peer_pid(&self) -> i32 {
        self.peer_pid
    }

    pub(super) fn socket(&self) -> &UnixStream {
        &self.socket
    }

    pub(super) fn rx(&self) -> &Queue {
        &self.rx
    }

    pub(super) fn tx(&self) -> &Queue {
        &self.tx
    }

    /// Whether the peer is known to be gone.
    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Whether the peer is gone, asked without waiting (its end of the socket closed even
    /// though the watcher has not said so yet).
    pub(super) fn peer_gone(&self) -> bool {
        self.is_dead() || crate::hangup::hung_up(&self.socket)
    }

    /// The peer is gone (the watcher saw its end of the socket close): wake our reader, which
    /// drains our queue and ends, and remove the peer's queue, which nobody reads any more
    /// (a send waiting on it fails at once).
    pub(super) fn on_peer_gone(&self) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        self.rx.wake();
        self.tx.remove();
        if let Some(hook) = self.on_gone.get() {
            hook();
        }
    }

    /// Does to the peer what this process's death would: our watcher forgets the link (it
    /// would die with us) and the socket is shut. Nothing is removed on our side.
    #[cfg(test)]
    pub(super) fn die_for_tests(&self) {
        if let Ok(watcher) = watcher() {
            watcher.unwatch(self.key, &self.socket);
        }
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("rx", &self.rx)
            .field("tx", &self.tx)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Ok(watcher) = watcher() {
            watcher.unwatch(self.key, &self.socket);
        }
        self.rx.remove();
        let record = self.record.take();
        if self.is_dead() || self.tx.is_removed() {
            self.tx.remove();
            return;
        }
        // The peer may still be reading what we sent: it learns we are done from our end of
        // the socket, and its queue goes once it closes its own.
        let _ = self.socket.shutdown(std::net::Shutdown::Write);
        let tx = Queue::recorded(self.tx.id(), self.tx.ctime());
        match (watcher(), self.socket.try_clone()) {
            (Ok(watcher), Ok(socket)) => watcher.linger(Linger {
                socket,
                peer_pid: self.peer_pid,
                tx,
                record,
            }),
            _ => {
                tx.remove();
            }
        }
    }
}
