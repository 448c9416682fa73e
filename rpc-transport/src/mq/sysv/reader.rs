//! [`SysvReceiver`]: a connection's receiving half. A thread of its own reads the queue,
//! blocked in `msgrcv` (so it costs nothing while nothing comes), reassembles frames and hands
//! them over through an inbox, which async and blocking receives both wait on.
//!
//! The inbox holds at most [`INBOX_FRAMES`] frames, and the thread starts handing over another
//! only while less than [`BYTE_WINDOW`] bytes wait there: then it stops reading, the queue
//! fills (`kernel.msgmnb` bytes) and the peer's sends wait. So a connection holds at most that
//! plus one frame being reassembled (at most its frame limit), and a receiver that stops
//! taking frames pauses its own peer alone.
//!
//! The thread ends at the peer's `BYE`; once the peer is gone (the watcher wakes it) and the
//! queue is drained; when its queue is removed under it (the receiver was dropped, or the peer
//! gave up its last frame); or at an error. Then it removes the queue (it is its reader).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::super::wire::{self, Event, Reassembler};
use super::link::Link;
use super::queue::{DATA, Stopped};
use super::sys::MsgBuf;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;

/// The most frames an inbox holds.
pub(super) const INBOX_FRAMES: usize = 1024;
/// The thread hands over another frame only while less than this many bytes wait.
pub(super) const BYTE_WINDOW: u64 = 1 << 20;

/// How the thread ended the connection.
#[derive(Debug)]
enum End {
    /// The peer said goodbye, or vanished between frames: `None` from now on.
    Clean,
    /// An error, returned once (`Closed` from then on).
    Failed(Option<TransportError>),
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    /// Bytes of `frames`.
    held: u64,
    end: Option<End>,
    /// The receiver is gone: the thread stops.
    closed: bool,
    /// A blocking receive is to return `TimedOut` (the next one, if none waits).
    interrupted: bool,
    /// Whether the thread waits for room, and a blocking receive for a frame: wake-ups are
    /// sent only to those who wait.
    thread_waits: bool,
    receiver_waits: bool,
}

/// What the thread and the receiver share.
#[derive(Debug)]
struct Inbox {
    state: Mutex<State>,
    room: Condvar,
    arrived: Condvar,
    /// Wakes an async receive.
    notify: Notify,
    /// The largest frame accepted now.
    limit: AtomicUsize,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_receiver(&self, state: &State) {
        if state.receiver_waits {
            self.arrived.notify_all();
        }
        self.notify.notify_one();
    }

    /// Hands over a frame once there is room; `false` if the receiver is gone.
    fn push(&self, frame: Frame) -> bool {
        let mut state = self.lock();
        while !state.closed && (state.frames.len() >= INBOX_FRAMES || state.held >= BYTE_WINDOW) {
            state.thread_waits = true;
            state = self.room.wait(state).unwrap_or_else(|p| p.into_inner());
            state.thread_waits = false;
        }
        if state.closed {
            return false;
        }
        state.held += frame.len() as u64;
        state.frames.push_back(frame);
        self.wake_receiver(&state);
        true
    }

    fn finish(&self, end: End) {
        let mut state = self.lock();
        state.end.get_or_insert(end);
        self.wake_receiver(&state);
    }

    /// The next frame or the end, if there is one now.
    fn take(&self, state: &mut State) -> Option<Result<Option<Frame>, TransportError>> {
        if let Some(frame) = state.frames.pop_front() {
            state.held -= frame.len() as u64;
            if state.thread_waits {
                self.room.notify_one();
            }
            let limit = self.limit.load(Ordering::SeqCst);
            if frame.len() > limit {
                // Whole before the limit fell: refused now, and the connection ends.
                state.closed = true;
                state.frames.clear();
                state.end = Some(End::Failed(None));
                self.room.notify_one();
                return Some(Err(TransportError::FrameTooLarge {
                    size: frame.len(),
                    limit,
                }));
            }
            return Some(Ok(Some(frame)));
        }
        match state.end.as_mut()? {
            End::Clean => Some(Ok(None)),
            End::Failed(error) => Some(Err(error.take().unwrap_or(TransportError::Closed))),
        }
    }
}

/// The receiving half of a `sysv-mq` connection.
#[derive(Debug)]
pub(crate) struct SysvReceiver {
    inbox: Arc<Inbox>,
    link: Arc<Link>,
}

impl Drop for SysvReceiver {
    fn drop(&mut self) {
        self.inbox.lock().closed = true;
        self.inbox.room.notify_one();
        // Wakes the thread should it wait in `msgrcv`: we are the queue's reader.
        self.link.rx().remove();
    }
}

impl SysvReceiver {
    /// Starts the thread reading `link`'s queue: messages of up to `msgsize` bytes carrying
    /// `token`, frames of up to `limit` bytes.
    pub(super) fn start(
        link: Arc<Link>,
        msgsize: usize,
        token: u64,
        limit: usize,
    ) -> Result<SysvReceiver, TransportError> {
        let inbox = Arc::new(Inbox {
            state: Mutex::new(State::default()),
            room: Condvar::new(),
            arrived: Condvar::new(),
            notify: Notify::new(),
            limit: AtomicUsize::new(limit),
        });
        let (thread_link, thread_inbox) = (link.clone(), inbox.clone());
        std::thread::Builder::new()
            .name("rpc-sysv-mq-rx".into())
            .stack_size(256 * 1024)
            .spawn(move || read(&thread_link, &thread_inbox, msgsize, token))?;
        Ok(SysvReceiver { inbox, link })
    }

    /// Sets the largest frame accepted from now on; a bigger one fails the connection as it
    /// starts to arrive (or when taken, if it was whole before).
    pub(crate) fn set_max_frame_size(&mut self, limit: usize) {
        self.inbox.limit.store(limit, Ordering::SeqCst);
    }

    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            // A frame handed over after the check leaves a permit: the wait returns at once.
            let notified = self.inbox.notify.notified();
            if let Some(result) = self.inbox.take(&mut self.inbox.lock()) {
                return result;
            }
            notified.await;
        }
    }

    pub(crate) fn recv_blocking(
        &mut self,
        deadline: Deadline,
    ) -> Result<Option<Frame>, TransportError> {
        let mut give_up = None;
        let mut state = self.inbox.lock();
        loop {
            if let Some(result) = self.inbox.take(&mut state) {
                return result;
            }
            if std::mem::take(&mut state.interrupted) {
                return Err(TransportError::TimedOut);
            }
            let at = *give_up.get_or_insert_with(|| deadline.resolve());
            state.receiver_waits = true;
            state = match at {
                None => self
                    .inbox
                    .arrived
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        state.receiver_waits = false;
                        return Err(TransportError::TimedOut);
                    }
                    self.inbox
                        .arrived
                        .wait_timeout(state, left)
                        .map_or_else(|p| p.into_inner().0, |(s, _)| s)
                }
            };
            state.receiver_waits = false;
        }
    }

    /// Makes a blocked [`recv_blocking`](Self::recv_blocking) return `TimedOut` at once (the
    /// next one, if none waits).
    pub(crate) fn interrupter(&self) -> impl Fn() + Send + Sync + 'static {
        let inbox = self.inbox.clone();
        move || {
            inbox.lock().interrupted = true;
            inbox.arrived.notify_all();
        }
    }

    /// Whether the peer is gone (its end of the rendezvous socket closed).
    pub(crate) fn peer_gone(&self) -> bool {
        self.link.peer_gone()
    }

    pub(crate) fn has_buffered(&self) -> bool {
        !self.inbox.lock().frames.is_empty()
    }

    pub(crate) async fn drain(&mut self) {
        while let Ok(Some(_)) = self.recv().await {}
    }
}

/// The thread: reads the queue until the connection ends, then removes it.
fn read(link: &Link, inbox: &Inbox, msgsize: usize, token: u64) {
    let mut buf = MsgBuf::new(msgsize);
    let mut reassembler = Reassembler::new();
    let cut = |reassembler: &Reassembler, why: &str| {
        if reassembler.in_progress() {
            End::Failed(Some(TransportError::Malformed(why.into())))
        } else {
            End::Clean
        }
    };
    let end = loop {
        let rx = link.rx();
        // Without waiting first: an empty queue of a gone peer is the end.
        let received = match rx.receive(&mut buf, true) {
            Ok(false) if link.is_dead() => {
                break cut(&reassembler, "the peer vanished in the middle of a frame");
            }
            Ok(false) => rx.receive(&mut buf, false),
            other => other,
        };
        match received {
            Ok(true) => {}
            Ok(false) => continue,
            Err(Stopped::Gone) if inbox.lock().closed => return,
            Err(Stopped::Gone) => {
                break cut(&reassembler, "the peer gave up in the middle of a frame");
            }
            Err(Stopped::Failed(error)) => break End::Failed(Some(error)),
        }
        if buf.mtype() != DATA {
            // A wake-up: look again.
            continue;
        }
        let event = wire::parse(buf.text()).and_then(|(header, chunk)| {
            if header.token != token {
                return Err(TransportError::Malformed(format!(
                    "a message for connection {:#x} on connection {token:#x}'s queue",
                    header.token
                )));
            }
            reassembler.push(header, chunk, inbox.limit.load(Ordering::SeqCst))
        });
        match event {
            Ok(None) => {}
            Ok(Some(Event::Frame(frame))) => {
                if !inbox.push(frame) {
                    return;
                }
            }
            Ok(Some(Event::Bye)) => break End::Clean,
            Err(error) => break End::Failed(Some(error)),
        }
    };
    inbox.finish(end);
    link.rx().remove();
}
