//! [`SysvReceiver`]: a connection's receiving half.
//!
//! A receive reads the queue itself, without waiting (`IPC_NOWAIT`), and reassembles the
//! frame in the caller's task or thread; while the queue is empty it tries again for
//! `socket_spin` (yielding, in async code), so a reply that comes within it costs no wake-up.
//! Then it sleeps, and a waker thread of the connection waits in the kernel for it: blocked in
//! a `msgrcv` of zero bytes, which returns (`E2BIG`) as soon as a message is there, leaving it
//! in the queue for the receive to read. So the queue has one reader (its order is the
//! frames' order), an idle connection costs no CPU, and nothing is read ahead: a receiver
//! that stops receiving leaves the messages in its queue, which fills (`kernel.msgmnb`
//! bytes) and pauses its own peer alone. A connection holds at most one frame being
//! reassembled (at most its frame limit) besides its queue.
//!
//! The connection ends at the peer's `BYE`; once the peer is gone (the watcher says so, and
//! wakes the receiver) and the queue is drained; or when the queue is
//! removed under us (the peer gave up its last frame). Then the queue is removed (we are its
//! reader), which also ends the waker thread, as does dropping the receiver.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use super::super::wire::{self, Event, Reassembler};
use super::link::Link;
use super::queue::{DATA, Stopped};
use super::sys::{self, MsgBuf};
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;

mod direct;

/// How the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The peer said goodbye, or vanished between frames: `None` from now on.
    Cleanly,
    /// An error was returned: `Closed` from now on.
    Failed,
}

#[derive(Debug, Default)]
struct State {
    /// The receiver sleeps: the thread is to wait for a message and wake it.
    armed: bool,
    /// The thread found a message (or the queue gone) since the receiver last looked.
    woken: bool,
    /// A blocking receive sleeps on `woken_cv`.
    sleeping: bool,
    /// A blocking receive is to return `TimedOut` (the next one, if none sleeps).
    interrupted: bool,
    /// The receiver is gone: the thread ends.
    closed: bool,
}

/// What the receiver and its waker thread share.
#[derive(Debug, Default)]
struct Waker {
    state: Mutex<State>,
    /// The thread waits to be armed.
    armed_cv: Condvar,
    /// A blocking receive waits to be woken.
    woken_cv: Condvar,
    /// An async receive waits to be woken.
    notify: Notify,
    /// An eventfd written at each wake-up, once a task sleeps without the receiver (see
    /// `direct.rs`).
    signal: std::sync::OnceLock<Arc<AsyncFd<OwnedFd>>>,
}

impl Waker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arm(&self) {
        let mut state = self.lock();
        if !state.armed && !state.woken {
            state.armed = true;
            self.armed_cv.notify_one();
        }
    }

    fn wake(&self) {
        let mut state = self.lock();
        state.armed = false;
        state.woken = true;
        if state.sleeping {
            self.woken_cv.notify_all();
        }
        drop(state);
        self.notify.notify_one();
        if let Some(signal) = self.signal.get() {
            let _ = nix::unistd::write(signal.get_ref(), &1u64.to_ne_bytes());
        }
    }

    /// Sleeps until woken, interrupted (`TimedOut`) or `give_up` (`TimedOut`).
    fn sleep(&self, give_up: Option<Instant>) -> Result<(), TransportError> {
        let mut state = self.lock();
        if !state.woken && !state.interrupted {
            state.armed = true;
            self.armed_cv.notify_one();
        }
        loop {
            if std::mem::take(&mut state.interrupted) {
                return Err(TransportError::TimedOut);
            }
            if std::mem::take(&mut state.woken) {
                return Ok(());
            }
            state.sleeping = true;
            state = match give_up {
                None => self.woken_cv.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.sleeping = false;
                        return Err(TransportError::TimedOut);
                    }
                    self.woken_cv
                        .wait_timeout(state, left)
                        .map_or_else(|p| p.into_inner().0, |(s, _)| s)
                }
            };
            state.sleeping = false;
        }
    }
}

/// The waker thread: each time the receiver sleeps, waits in the kernel for a message on
/// queue `id`, without taking it, and wakes the receiver.
fn wait_for_messages(id: i32, waker: &Waker) {
    loop {
        {
            let mut state = waker.lock();
            while !state.armed && !state.closed {
                state = waker
                    .armed_cv
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if state.closed {
                return;
            }
        }
        let outcome = sys::wait_for_message(id);
        waker.wake();
        if matches!(outcome, Err(Errno::EIDRM | Errno::EINVAL)) {
            // The queue is gone: the receiver finds out by reading it.
            return;
        }
    }
}

/// The receiving half of a `sysv-mq` connection.
#[derive(Debug)]
pub(crate) struct SysvReceiver {
    link: Arc<Link>,
    waker: Arc<Waker>,
    buf: MsgBuf,
    reassembler: Reassembler,
    /// The largest frame accepted.
    limit: usize,
    /// Put in every message of the connection.
    token: u64,
    spin: Duration,
    /// Whether an async receive may spin now (a server turns it off while calls run).
    spinning: bool,
    ended: Option<Ended>,
}

impl Drop for SysvReceiver {
    fn drop(&mut self) {
        self.waker.lock().closed = true;
        self.waker.armed_cv.notify_one();
        // Ends the thread should it wait in `msgrcv`: we are the queue's reader.
        self.link.rx().remove();
    }
}

impl SysvReceiver {
    /// The receiver of `link`'s queue (messages of up to `msgsize` bytes carrying `token`,
    /// frames of up to `limit` bytes), with its waker thread.
    pub(super) fn start(
        link: Arc<Link>,
        msgsize: usize,
        token: u64,
        limit: usize,
        spin: Duration,
    ) -> Result<SysvReceiver, TransportError> {
        let waker = Arc::new(Waker::default());
        let weak = Arc::downgrade(&waker);
        link.on_gone(Box::new(move || {
            if let Some(waker) = weak.upgrade() {
                waker.wake();
            }
        }));
        let (id, shared) = (link.rx().id(), waker.clone());
        std::thread::Builder::new()
            .name("rpc-sysv-mq-wake".into())
            .stack_size(64 * 1024)
            .spawn(move || wait_for_messages(id, &shared))?;
        Ok(SysvReceiver {
            link,
            waker,
            buf: MsgBuf::new(msgsize),
            reassembler: Reassembler::new(),
            limit,
            token,
            spin,
            spinning: true,
            ended: None,
        })
    }

    /// Sets the largest frame accepted from now on; a bigger one fails the connection as it
    /// starts to arrive.
    pub(crate) fn set_max_frame_size(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Whether an async receive may spin before it sleeps.
    pub(crate) fn set_spinning(&mut self, spinning: bool) {
        self.spinning = spinning;
    }

    fn finished(&self) -> Option<Result<Option<Frame>, TransportError>> {
        match self.ended? {
            Ended::Cleanly => Some(Ok(None)),
            Ended::Failed => Some(Err(TransportError::Closed)),
        }
    }

    /// Ends the connection with `result`; the queue goes.
    fn end(
        &mut self,
        result: Result<Option<Frame>, TransportError>,
    ) -> Result<Option<Frame>, TransportError> {
        self.ended = Some(if result.is_ok() {
            Ended::Cleanly
        } else {
            Ended::Failed
        });
        self.link.rx().remove();
        result
    }

    /// The peer is gone and its messages all read (or taken away): the end, clean between
    /// frames.
    fn cut(&mut self, why: &str) -> Result<Option<Frame>, TransportError> {
        if self.reassembler.in_progress() {
            self.end(Err(TransportError::Malformed(why.into())))
        } else {
            self.end(Ok(None))
        }
    }

    /// Reads what is in the queue, without waiting, until a frame is whole (or the end):
    /// `None` once the queue is empty (and the peer still there).
    fn take(&mut self) -> Option<Result<Option<Frame>, TransportError>> {
        if let Some(result) = self.finished() {
            return Some(result);
        }
        // Whether the peer was known gone before the last look found the queue empty.
        let mut gone_before_look = false;
        loop {
            match self.link.rx().receive(&mut self.buf, true) {
                Ok(true) => {}
                Ok(false) if gone_before_look => {
                    return Some(self.cut("the peer vanished in the middle of a frame"));
                }
                // The peer may have sent its last messages (a refusal, then its end) after
                // that look and before it went: what it sent is in the queue once it is known
                // gone, so look once more before calling it the end.
                Ok(false) if self.link.is_dead() => {
                    gone_before_look = true;
                    continue;
                }
                Ok(false) => return None,
                Err(Stopped::Gone) => {
                    return Some(self.cut("the peer gave up in the middle of a frame"));
                }
                Err(Stopped::Failed(error)) => return Some(self.end(Err(error))),
            }
            if self.buf.mtype() != DATA {
                // A wake-up: look again.
                continue;
            }
            let (token, limit) = (self.token, self.limit);
            let event = wire::parse(self.buf.text()).and_then(|(header, chunk)| {
                if header.token != token {
                    return Err(TransportError::Malformed(format!(
                        "a message for connection {:#x} on connection {token:#x}'s queue",
                        header.token
                    )));
                }
                self.reassembler.push(header, chunk, limit)
            });
            match event {
                Ok(None) => {}
                Ok(Some(Event::Frame(frame))) => return Some(Ok(Some(frame))),
                Ok(Some(Event::Bye)) => return Some(self.end(Ok(None))),
                Err(error) => return Some(self.end(Err(error))),
            }
        }
    }

    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        let mut spin_until = None;
        loop {
            if let Some(result) = self.take() {
                return result;
            }
            if self.spinning && !self.spin.is_zero() {
                let until = *spin_until.get_or_insert_with(|| crate::deadline::after(self.spin));
                if Instant::now() < until {
                    crate::spin::yield_to_others().await;
                    continue;
                }
            }
            // A wake-up after the check leaves a permit: the wait returns at once.
            let woken = self.waker.notify.notified();
            self.waker.lock().woken = false;
            self.waker.arm();
            woken.await;
        }
    }

    pub(crate) fn recv_blocking(
        &mut self,
        deadline: Deadline,
    ) -> Result<Option<Frame>, TransportError> {
        let (mut spin_until, mut give_up) = (None, None);
        loop {
            if let Some(result) = self.take() {
                return result;
            }
            if !self.spin.is_zero() {
                let until = *spin_until.get_or_insert_with(|| crate::deadline::after(self.spin));
                if Instant::now() < until {
                    std::hint::spin_loop();
                    continue;
                }
            }
            self.waker
                .sleep(*give_up.get_or_insert_with(|| deadline.resolve()))?;
        }
    }

    /// Makes a sleeping [`recv_blocking`](Self::recv_blocking) return `TimedOut` at once (the
    /// next one, if none sleeps).
    pub(crate) fn interrupter(&self) -> impl Fn() + Send + Sync + 'static {
        let waker = self.waker.clone();
        move || {
            waker.lock().interrupted = true;
            waker.woken_cv.notify_all();
        }
    }

    /// Whether the peer is gone (its end of the rendezvous socket closed).
    pub(crate) fn peer_gone(&self) -> bool {
        self.link.peer_gone()
    }

    pub(crate) async fn drain(&mut self) {
        while let Ok(Some(_)) = self.recv().await {}
    }
}
