//! One thread for the whole process watches the rendezvous socket of every live link.
//!
//! A link registers its socket with the watcher's epoll instance (level-triggered, for
//! readability and hang-up). When a socket is ready the watcher reads it without blocking
//! ([`Link::receive_pending`]: a bounded number of messages, each with `MSG_DONTWAIT`), so no
//! peer can hold the thread, whatever it sends. The watcher owns one `Arc` of each registered
//! link, as the per-link thread it replaces did: the link lives until its socket ends (the
//! peer died or closed, or this side shut it), then the watcher marks it dead, deregisters
//! the socket and lets the link go.
//!
//! The socket itself stays blocking: only the watcher reads it, and the sender of large
//! messages writes it with a plain blocking `sendmsg` as before.
//!
//! The thread starts with the first link and stays (idle in `epoll_wait`) for the process's
//! life. Registration takes a lock and one `epoll_ctl`, from any thread, with or without a
//! tokio runtime. A child created by `fork` does not inherit the thread (nor may it share the
//! parent's epoll instance), so a child's first link starts a watcher of its own.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::link::Link;

/// Events taken from the kernel per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 64;

/// The process's watcher, once started (with the id of the process that started it).
static WATCHER: Mutex<Option<Arc<Watcher>>> = Mutex::new(None);

struct Watcher {
    epoll: Epoll,
    /// Registered links by epoll token. Inserted by any thread, removed only by the watcher.
    links: Mutex<Links>,
    /// The process that created the epoll instance and the thread.
    pid: u32,
}

#[derive(Default)]
struct Links {
    by_token: HashMap<u64, Arc<Link>>,
    next_token: u64,
}

/// Hands `link` to the process's watcher thread (starting it if this is the first link), which
/// keeps it alive and reads its socket until the connection ends.
pub(crate) fn watch(link: Arc<Link>) -> io::Result<()> {
    let watcher = watcher()?;
    let token = {
        let mut links = watcher.lock_links();
        let token = links.next_token;
        links.next_token += 1;
        links.by_token.insert(token, link.clone());
        token
    };
    // Registered in the map first, so an event that fires at once finds its link.
    let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    if let Err(error) = watcher
        .epoll
        .add(link.socket.as_fd(), EpollEvent::new(interest, token))
    {
        watcher.lock_links().by_token.remove(&token);
        return Err(error.into());
    }
    Ok(())
}

/// The running watcher, started if there is none in this process.
fn watcher() -> io::Result<Arc<Watcher>> {
    let mut slot = WATCHER.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    match slot.take() {
        Some(watcher) if watcher.pid == pid => {
            *slot = Some(watcher.clone());
            return Ok(watcher);
        }
        // Inherited over fork: its thread does not exist here, and its epoll instance is the
        // parent's, so it must not be touched (not even closed into a `delete`). Leaked.
        Some(inherited) => std::mem::forget(inherited),
        None => {}
    }
    let watcher = Arc::new(Watcher {
        epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        links: Mutex::new(Links::default()),
        pid,
    });
    let running = watcher.clone();
    std::thread::Builder::new()
        .name("rpc-shm-watch".into())
        .stack_size(128 * 1024)
        .spawn(move || running.run())?;
    *slot = Some(watcher.clone());
    Ok(watcher)
}

impl Watcher {
    fn lock_links(&self) -> MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run(&self) {
        let mut events = [EpollEvent::empty(); EVENTS_PER_WAIT];
        loop {
            let ready = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(ready) => ready,
                Err(Errno::EINTR) => continue,
                Err(error) => {
                    // Not expected for a valid epoll instance; retry rather than spin.
                    tracing::error!(%error, "epoll_wait failed in the shared-memory watcher");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            for event in &events[..ready] {
                self.service(event.data());
            }
        }
    }

    /// Reads what the link of `token` has pending; lets it go if its connection ended.
    fn service(&self, token: u64) {
        let Some(link) = self.lock_links().by_token.get(&token).cloned() else {
            return;
        };
        if let Some(reason) = link.receive_pending() {
            link.mark_dead(&reason);
            // Before the link (and with it the socket) can be dropped.
            let _ = self.epoll.delete(link.socket.as_fd());
            self.lock_links().by_token.remove(&token);
        }
    }
}
