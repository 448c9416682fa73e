//! One thread per process that watches every `sysv-mq` rendezvous socket for its peer's end.
//!
//! System V queues have no descriptor to wait on beside the socket, so no receive or send can
//! also wait for the peer's death the way `mq://` does. Instead this thread waits on all the
//! sockets at once (epoll, for `EPOLLRDHUP`: the peer closed or shut its end, however its
//! process ended) and tells the link ([`Link::on_peer_gone`]), which wakes its reader and
//! removes the peer's queue, waking its writer. It also finishes the links dropped while
//! their peer may still read ([`Linger`]). It costs nothing while no peer goes: nothing else
//! is written to the sockets after the handshake, and reads are not watched.
//!
//! At a normal exit of the process (`atexit`), it removes the queues of the links whose peer
//! is this same process: both ends die at once and no survivor would. A peer in another
//! process removes the queues itself when it sees our end.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::ledger::Record;
use super::link::Link;
use super::queue::Queue;

/// A link dropped on our side while its peer may still be reading what we sent: our socket,
/// shut for writing (the peer sees our end), is kept until the peer closes its own, then the
/// peer's queue is removed (should the peer not have removed it) and the record goes.
#[derive(Debug)]
pub(super) struct Linger {
    pub(super) socket: UnixStream,
    /// The peer's process.
    pub(super) peer_pid: i32,
    pub(super) tx: Queue,
    pub(super) record: Option<Record>,
}

#[derive(Debug)]
enum Entry {
    Live(Weak<Link>),
    Lingering(Linger),
}

#[derive(Debug)]
struct Inner {
    epoll: Epoll,
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

/// The watcher thread's handle.
#[derive(Debug)]
pub(super) struct Watcher(Arc<Inner>);

static WATCHER: OnceLock<Result<Watcher, String>> = OnceLock::new();

/// The process's watcher, started on first use.
pub(super) fn watcher() -> io::Result<&'static Watcher> {
    WATCHER
        .get_or_init(|| Watcher::start().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| io::Error::other(format!("cannot start the sysv-mq watcher: {e}")))
}

const EVENTS: EpollFlags = EpollFlags::EPOLLRDHUP;

impl Watcher {
    fn start() -> io::Result<Watcher> {
        let inner = Arc::new(Inner {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            entries: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let thread = inner.clone();
        std::thread::Builder::new()
            .name("rpc-sysv-mq-watch".into())
            .stack_size(256 * 1024)
            .spawn(move || thread.run())?;
        if let Err(error) = super::sys::at_exit(at_exit) {
            tracing::warn!(%error, "sysv-mq cannot clean up at exit");
        }
        Ok(Watcher(inner))
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.0.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A key for [`watch`](Self::watch).
    pub(super) fn key(&self) -> u64 {
        self.0.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Watches `link`'s socket under `key` (the link keeps it, to [`unwatch`](Self::unwatch)).
    pub(super) fn watch(&self, key: u64, link: &Arc<Link>) -> io::Result<()> {
        let mut entries = self.entries();
        entries.insert(key, Entry::Live(Arc::downgrade(link)));
        if let Err(e) = self
            .0
            .epoll
            .add(link.socket(), EpollEvent::new(EVENTS, key))
        {
            entries.remove(&key);
            return Err(e.into());
        }
        Ok(())
    }

    /// Stops watching `socket` under `key`. Always taken out of the epoll set, even when the
    /// thread took the entry already (it found the link being dropped, say): a duplicate of
    /// the socket may live on in a [`Linger`], and would keep the registration firing.
    pub(super) fn unwatch(&self, key: u64, socket: &UnixStream) {
        self.entries().remove(&key);
        let _ = self.0.epoll.delete(socket);
    }

    /// Keeps `linger` until its peer closes its socket.
    pub(super) fn linger(&self, linger: Linger) {
        let key = self.key();
        let mut entries = self.entries();
        if let Err(error) = self
            .0
            .epoll
            .add(&linger.socket, EpollEvent::new(EVENTS, key))
        {
            tracing::debug!(%error, "cannot watch a closed sysv-mq link; finishing it now");
            drop(entries);
            finish(linger);
            return;
        }
        entries.insert(key, Entry::Lingering(linger));
    }
}

/// At exit: removes the queues of every link whose peer is this process. (Outside the lock:
/// dropping the last handle of a link takes it.)
extern "C" fn at_exit() {
    let Some(Ok(watcher)) = WATCHER.get() else {
        return;
    };
    let own = std::process::id() as i32;
    let mut links = Vec::new();
    let mut lingering = Vec::new();
    for entry in watcher.entries().values() {
        match entry {
            Entry::Live(link) => links.extend(link.upgrade().filter(|l| l.peer_pid() == own)),
            Entry::Lingering(linger) if linger.peer_pid == own => {
                lingering.push(Queue::recorded(linger.tx.id(), linger.tx.ctime()));
            }
            Entry::Lingering(_) => {}
        }
    }
    for link in &links {
        link.rx().remove();
        link.tx().remove();
    }
    for tx in lingering {
        tx.remove();
    }
}

/// A lingering link's peer is done: its queue goes (if the peer left it), then the record.
fn finish(linger: Linger) {
    linger.tx.remove();
    drop(linger.record);
}

impl Inner {
    fn run(&self) {
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    tracing::error!(%error, "the sysv-mq watcher failed; peers' deaths go unseen");
                    return;
                }
            };
            for event in &events[..ready] {
                let entry = self
                    .entries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&event.data());
                match entry {
                    Some(Entry::Live(link)) => {
                        if let Some(link) = link.upgrade() {
                            let _ = self.epoll.delete(link.socket());
                            link.on_peer_gone();
                        }
                    }
                    Some(Entry::Lingering(linger)) => {
                        let _ = self.epoll.delete(&linger.socket);
                        finish(linger);
                    }
                    // Unwatched meanwhile (and taken out of the set: it fires no more).
                    None => {}
                }
            }
        }
    }
}
