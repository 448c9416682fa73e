//! Reading replies on the caller's own task, on transports that can be looked at without
//! waiting (shared memory, where a look costs no system call; TCP and Unix sockets, pipes,
//! FIFOs and message queues, where it costs one non-blocking read; see
//! [`rpc_transport::PollFrames`]).
//!
//! Through a reader task, a reply reaches its caller by two wake-ups: the reader's, then the
//! caller's, and on a multi-threaded runtime the second crosses threads (a `#[tokio::main]`
//! body runs on the main thread, the reader on a worker), which costs more than the call.
//! Instead, a caller takes the connection's receiving half before it sends (when no other
//! caller holds it), spins on it until its reply lands, for as long as spinning has paid lately
//! ([`SpinBudget`]), and hands every frame it reads on as the reader task would. Meanwhile the
//! reader task sleeps without holding the receiver; it reads whatever callers leave, and alone
//! does so when spinning does not pay (the machine is oversubscribed, the server is slow).
//!
//! The handover between them follows [`rpc_transport::PollFrames`]: a caller withdraws the
//! reader's sleep announcement while it reads and renews it (or wakes the reader) when it
//! lets go, so no frame waits unseen.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use rpc_transport::spin::SpinBudget;
use rpc_transport::{FrameReceiver, PollFrames, Wakeup};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, Notify};

use super::misuse;
use super::pending::{Reply, ReplyReceiver};
use super::reader::{CLOSED, Dispatcher};
use crate::keepalive::{self, Keepalive};

/// How long a caller spins without giving its thread back to the runtime on a multi-threaded
/// runtime (on a current-thread runtime it yields every few microseconds: the server may be a
/// task of the same thread).
const YIELD_EVERY: Duration = Duration::from_micros(20);

/// How many times a socket's `socket_spin` a caller may spin for its own reply (within its
/// [`SpinBudget`], which shrinks while spins miss and the reply comes later than the
/// maximum, and is nothing on an oversubscribed machine): 4, so 200 µs by default. A caller
/// waits for a reply that is coming, where a receive's own poll (the reader task's, a
/// server's) may wait for nothing. And on a virtual machine a reply that misses the caller's
/// spin costs a wake-up on each side: the server's own poll lapses too before the next
/// request comes, and every later call then misses the same way. Unpinned on this project's 2-CPU VM, a sequential async `add` against a default
/// server, alternated three times: over TCP p50 51-71 µs with a 50 µs spin, 29-31 µs with
/// 200 µs (100 µs: 31-46; 400 µs: 29-34).
const SOCKET_REPLY_SPIN: u32 = 4;

/// Frames handed on in one go before the reader (or a caller) looks at the time, its own
/// reply and the runtime's other tasks: a server that keeps the ring full cannot hold a thread.
const DRAIN_BATCH: usize = 64;

/// How long the reader task lets the ordinary receive wait for a frame that is arriving (a
/// large message whose region is still on its way) before it looks again.
const ARRIVING_WAIT: Duration = Duration::from_millis(1);

/// A connection whose replies its callers may read themselves.
pub(super) struct Direct {
    /// `None` once the reader task ended: the connection's transport is given back then.
    receiver: Mutex<Option<FrameReceiver>>,
    dispatcher: Dispatcher,
    /// When a caller last read a frame (nanoseconds after `created`; 0: never): the server
    /// was heard then.
    heard: AtomicU64,
    created: tokio::time::Instant,
    /// Wakes the reader task when a caller lets go of the receiver with a frame in it (the
    /// peer was not asked to signal): in-process, so the peer cannot interfere with it.
    poke: Notify,
    /// Why a caller found the connection ended, for the reader task to end it.
    ended: std::sync::Mutex<Option<String>>,
    /// Wakes the reader task when a caller found the connection ended.
    ended_signal: Notify,
    /// Set by the reader task when it found the receiver held by a caller: that caller pokes
    /// it once it lets go.
    reader_locked_out: std::sync::atomic::AtomicBool,
    budget: std::sync::Mutex<SpinBudget>,
    /// The receiver's [`PollFrames::spin_limit`].
    spin_limit: Duration,
    /// Looks a spinning caller takes between looks at the clock: many where a look costs no
    /// system call, one where it costs a read.
    looks_per_check: u32,
}

impl Direct {
    /// Shares `receiver` between callers and a reader task, which sleeps on the [`Wakeup`]
    /// returned beside it; a receiver that does not poll ([`FrameReceiver::as_poll`]) is handed
    /// back unchanged as the error. Callers spin at most the receiver's
    /// [`PollFrames::spin_limit`], or [`SOCKET_REPLY_SPIN`] times it on a socket.
    pub(super) fn new(
        mut receiver: FrameReceiver,
        dispatcher: Dispatcher,
    ) -> Result<(Arc<Direct>, Wakeup), FrameReceiver> {
        let Some(cheap_looks) = receiver.as_poll().map(|poll| poll.cheap_look()) else {
            return Err(receiver);
        };
        if !cheap_looks && (on_current_thread() || !several_cpus()) {
            // A socket's reply wakes the runtime's I/O driver whoever reads it. On a
            // current-thread runtime the reader task runs on the caller's thread anyway, and
            // on one CPU a spinning caller shares it with the worker each reply wakes: either
            // way the reader task serves better.
            return Err(receiver);
        }
        let poll = poll(&mut receiver);
        let spin = poll.spin_limit();
        let reply_spin = if cheap_looks {
            spin
        } else {
            spin * SOCKET_REPLY_SPIN
        };
        let Ok(wakeup) = poll.wakeup() else {
            return Err(receiver);
        };
        let direct = Arc::new(Direct {
            receiver: Mutex::new(Some(receiver)),
            dispatcher,
            heard: AtomicU64::new(0),
            created: tokio::time::Instant::now(),
            poke: Notify::new(),
            ended: std::sync::Mutex::new(None),
            ended_signal: Notify::new(),
            reader_locked_out: std::sync::atomic::AtomicBool::new(false),
            budget: std::sync::Mutex::new(SpinBudget::new(reply_spin)),
            spin_limit: spin,
            looks_per_check: if cheap_looks { 64 } else { 1 },
        });
        Ok((direct, wakeup))
    }

    /// The receiver if `lock` got it and the reader task has not given it back.
    fn held(
        lock: Result<MutexGuard<'_, Option<FrameReceiver>>, tokio::sync::TryLockError>,
    ) -> Option<MappedMutexGuard<'_, FrameReceiver>> {
        MutexGuard::try_map(lock.ok()?, Option::as_mut).ok()
    }

    /// Gives the connection's transport back once the reader task has ended it: nothing reads
    /// or sends on it any more, and its descriptors (a message queue, a socket) should not
    /// wait for the last handle to the client to be dropped. Waits for a caller's turn on the
    /// receiver (a spin, bounded) and a write in progress to end first.
    async fn release(&self, reason: &str) {
        drop(self.receiver.lock().await.take());
        self.dispatcher.sender.release(reason).await;
    }

    /// The receiver for this caller to read its reply itself, if no one else holds it and
    /// spinning pays lately. Taken before the request is sent, so the reply never signals the
    /// sleeping reader task.
    pub(super) fn turn(&self) -> Option<Turn<'_>> {
        let spin = self
            .budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_spin();
        if spin.is_zero() {
            return None;
        }
        let mut receiver = Direct::held(self.receiver.try_lock())?;
        poll(&mut receiver).end_sleep();
        Some(Turn {
            direct: self,
            receiver: Some(receiver),
            spin,
        })
    }

    /// The receiver for the reader task, or `None` while a caller holds it: then the caller
    /// pokes the reader once it lets go. The reader may have been woken for a frame the
    /// holder has not seen (it announced the sleep, then the frame came) and must not sleep
    /// through it: the word is left before a second look at the lock, and the holder reads it
    /// after letting go, so one of the two sees the other.
    fn lock_or_leave_word(&self) -> Option<MappedMutexGuard<'_, FrameReceiver>> {
        if let Ok(receiver) = self.receiver.try_lock() {
            return MutexGuard::try_map(receiver, Option::as_mut).ok();
        }
        self.reader_locked_out.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        Direct::held(self.receiver.try_lock())
    }

    fn end(&self, reason: String) {
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        ended.get_or_insert(reason);
        drop(ended);
        self.ended_signal.notify_one();
    }

    fn take_end(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Why the connection ended once the peer is gone: what a caller recorded (a stream cut
    /// inside a frame, say, which the receiver reports only once), else a plain close.
    fn end_reason(&self) -> String {
        self.take_end().unwrap_or_else(|| CLOSED.to_owned())
    }

    /// Hands on the frames already here, at most [`DRAIN_BATCH`]; how many, or `Err` with the
    /// reason when the connection ended.
    fn drain(&self, poll: &mut dyn PollFrames) -> Result<usize, String> {
        for frames in 0..DRAIN_BATCH {
            match poll.try_recv() {
                Ok(Some(frame)) => self.dispatcher.dispatch(frame)?,
                Ok(None) => return Ok(frames),
                Err(e) => return Err(format!("receiving failed: {e}")),
            }
        }
        Ok(DRAIN_BATCH)
    }

    /// Looks again for a while when more than one call waits for a reply and none of their
    /// callers reads (they pipeline): their replies are coming, and a wake-up per batch costs
    /// more than the batch. Stops at the first frames (how many), once at most one call
    /// waits, once the peer is gone, or after the spin limit; never while the machine is
    /// oversubscribed.
    async fn linger(&self, receiver: &mut FrameReceiver) -> Result<usize, String> {
        let in_flight = || self.dispatcher.pending.len() > 1;
        if self.spin_limit.is_zero() || !in_flight() || rpc_transport::spin::oversubscribed() {
            return Ok(0);
        }
        let current_thread = on_current_thread();
        let started = Instant::now();
        let mut yielded = started;
        let mut looks: u32 = 0;
        loop {
            let frames = self.drain(poll(receiver))?;
            if frames > 0 {
                return Ok(frames);
            }
            looks = looks.wrapping_add(1);
            if !looks.is_multiple_of(self.looks_per_check) {
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            if now - started >= self.spin_limit || !in_flight() || poll(receiver).peer_gone() {
                return Ok(0);
            }
            if current_thread || now - yielded >= YIELD_EVERY {
                rpc_transport::spin::yield_to_others().await;
                yielded = Instant::now();
            }
        }
    }

    /// Notes that a caller heard the server now. On the runtime's own clock: the keepalive
    /// compares it with when its ping went out, so it must never read earlier than that.
    fn heard_now(&self) {
        let at = self.created.elapsed().as_nanos().max(1) as u64;
        self.heard.fetch_max(at, Ordering::Relaxed);
    }

    /// When a caller last heard the server, if ever.
    fn last_heard(&self) -> Option<tokio::time::Instant> {
        match self.heard.load(Ordering::Relaxed) {
            0 => None,
            at => Some(self.created + Duration::from_nanos(at)),
        }
    }

    /// The callers' shared spin budget (a poisoned lock still holds a usable budget).
    fn budget(&self) -> std::sync::MutexGuard<'_, SpinBudget> {
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether this process may run on more than one CPU (its affinity, its cgroup's quota), as
/// first asked.
fn several_cpus() -> bool {
    rpc_transport::spin::process_cpus() > 1
}

/// Whether this task runs on a current-thread runtime (where a spinning task must yield
/// often: the server may be a task of the same thread).
fn on_current_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

fn poll(receiver: &mut FrameReceiver) -> &mut dyn PollFrames {
    receiver
        .as_poll()
        .expect("a direct connection's receiver polls")
}

/// A caller's hold on the receiver; let go when dropped (see the module docs).
pub(super) struct Turn<'a> {
    direct: &'a Direct,
    receiver: Option<MappedMutexGuard<'a, FrameReceiver>>,
    spin: Duration,
}

impl<'a> Turn<'a> {
    /// Reads the connection until `reply` is answered or the spin budget runs out; `Err` then
    /// (the caller waits for the reply as usual: the reader task reads it), with a [`Late`]
    /// to tell the budget when it came if the spin ran out.
    pub(super) async fn wait(
        mut self,
        reply: &mut ReplyReceiver<'_>,
    ) -> Result<Reply, Option<Late<'a>>> {
        let current_thread = on_current_thread();
        let direct = self.direct;
        // The clock is read at the looks that check it only: a reply that comes before the
        // first check (as a rule) costs no clock read. So the spin is timed from the first
        // check, and a hit counts as having waited until the last one.
        let mut started: Option<Instant> = None;
        let mut waited = Duration::ZERO;
        let mut yielded: Option<Instant> = None;
        let mut looks: u32 = 0;
        loop {
            let poll = poll(self.receiver.as_mut().expect("held until dropped"));
            let frames = match direct.drain(poll) {
                Ok(frames) => frames,
                Err(reason) => {
                    direct.end(reason);
                    return Err(None);
                }
            };
            if frames > 0 {
                direct.heard_now();
                if let Ok(answer) = reply.try_recv() {
                    self.direct.budget().hit(waited);
                    return Ok(answer);
                }
            }
            looks = looks.wrapping_add(1);
            if frames < DRAIN_BATCH && !looks.is_multiple_of(direct.looks_per_check) {
                std::hint::spin_loop();
                continue;
            }
            if let Ok(answer) = reply.try_recv() {
                // Answered meanwhile (an error: the connection ended, the call was failed).
                return Ok(answer);
            }
            if poll.peer_gone() {
                // The reader task ends the connection once it has read what is left.
                return Err(None);
            }
            let now = Instant::now();
            let began = *started.get_or_insert(now);
            waited = now - began;
            if waited >= self.spin {
                self.direct.budget().miss();
                return Err(Some(Late { direct, began }));
            }
            if current_thread || now - *yielded.get_or_insert(now) >= YIELD_EVERY {
                rpc_transport::spin::yield_to_others().await;
                yielded = Some(Instant::now());
            }
        }
    }
}

/// A caller's spin that ran out before its reply came.
pub(super) struct Late<'a> {
    direct: &'a Direct,
    /// When the spin began (its first look at the clock).
    began: Instant,
}

impl Late<'_> {
    /// The reply has come now: the budget learns how long it took
    /// ([`SpinBudget::came_after`]).
    pub(super) fn came(self) {
        self.direct.budget().came_after(self.began.elapsed());
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(mut receiver) = self.receiver.take() else {
            return;
        };
        // Let go: the reader task sleeps on the wake-up, so ask for the signal again, or, if a
        // frame came meanwhile, give the reader the signal at once.
        match poll(&mut receiver).announce_sleep() {
            Ok(true) => {}
            Ok(false) => self.direct.poke.notify_one(),
            // Reported once (a stream cut inside a frame): kept for the reader, which ends
            // the connection with it.
            Err(e) => self.direct.end(format!("receiving failed: {e}")),
        }
        drop(receiver);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.direct.reader_locked_out.swap(false, Ordering::SeqCst) {
            // The reader looked while this turn held the receiver (see `lock_or_leave_word`).
            self.direct.poke.notify_one();
        }
    }
}

/// The reader task of a direct connection: reads what callers leave, sleeping on the wake-up
/// without holding the receiver; pings and ends the connection as [`super::reader`] does.
pub(super) async fn read_replies(
    direct: Arc<Direct>,
    wakeup: Wakeup,
    keepalive: Option<Keepalive>,
) {
    let alive = misuse::ReaderAlive::new(direct.dispatcher.pending.clone());
    let mut watch = keepalive.map(keepalive::Watch::new);
    // The last time callers heard the server that the watch was told of.
    let mut heard_applied = direct.created;
    let reason = loop {
        if let Some(reason) = direct.take_end() {
            break reason;
        }
        let Some(mut receiver) = direct.lock_or_leave_word() else {
            // A caller reads, and pokes when it lets go (see `lock_or_leave_word`). Queueing
            // on the lock instead would take the next caller's turn from it.
            match sleep(&direct, &wakeup, &mut watch, &mut heard_applied).await {
                Ok(()) => continue,
                Err(reason) => break reason,
            }
        };
        poll(&mut receiver).end_sleep();
        let drained = match direct.drain(poll(&mut receiver)) {
            Ok(0) => direct.linger(&mut receiver).await,
            drained => drained,
        };
        let poll = poll(&mut receiver);
        match drained {
            Ok(0) => {}
            Ok(frames) => {
                if let Some(watch) = watch.as_mut() {
                    watch.heard();
                }
                if frames == DRAIN_BATCH {
                    // More may wait: let the runtime's other tasks run first.
                    drop(receiver);
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            Err(reason) => break reason,
        }
        match poll.announce_sleep() {
            Ok(true) => {}
            Ok(false) if poll.peer_gone() => {
                // Whatever is left cannot complete: the peer that would finish it is gone.
                break direct.end_reason();
            }
            Ok(false) => {
                // A frame is arriving but not whole yet, or bytes came since the drain: the
                // ordinary receive waits for them.
                match tokio::time::timeout(ARRIVING_WAIT, receiver.recv()).await {
                    Ok(Ok(Some(frame))) => {
                        if let Some(watch) = watch.as_mut() {
                            watch.heard();
                        }
                        if let Err(reason) = direct.dispatcher.dispatch(frame) {
                            break reason;
                        }
                    }
                    Ok(Ok(None)) => break direct.end_reason(),
                    Ok(Err(e)) => break format!("receiving failed: {e}"),
                    Err(_) => {}
                }
                continue;
            }
            Err(e) => break format!("receiving failed: {e}"),
        }
        if poll.peer_gone() {
            // Announced with nothing left to read: the server is gone.
            break direct.end_reason();
        }
        drop(receiver);
        if let Err(reason) = sleep(&direct, &wakeup, &mut watch, &mut heard_applied).await {
            break reason;
        }
    };
    tracing::debug!(%reason, "client connection ended");
    alive.ended(&reason);
    drop(wakeup);
    direct.release(&reason).await;
}

/// The reader task's sleep, without the receiver: until the wake-up, a caller's poke, the end,
/// or the keepalive's next ping (sent here). `Err` with the reason when the connection ends.
async fn sleep(
    direct: &Direct,
    wakeup: &Wakeup,
    watch: &mut Option<keepalive::Watch>,
    heard_applied: &mut tokio::time::Instant,
) -> Result<(), String> {
    if let (Some(watch), Some(at)) = (watch.as_mut(), direct.last_heard()) {
        watch.heard_at(at);
        *heard_applied = at;
    }
    let woke = tokio::select! {
        biased;
        woke = wakeup.wait() => Ok(woke),
        () = direct.poke.notified() => return Ok(()),
        () = direct.ended_signal.notified() => return Ok(()),
        due = due(watch) => Err(due),
    };
    match woke {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("receiving failed: {e}")),
        Err(due) => {
            let watch = watch.as_mut().expect("due only with a watch");
            if let Some(at) = direct.last_heard()
                && at > *heard_applied
            {
                // Callers heard the server since the watch last knew: count from then.
                *heard_applied = at;
                watch.heard_at(at);
                return Ok(());
            }
            match due {
                keepalive::Due::Ping(ping) => {
                    direct.dispatcher.send_bounded(ping, watch.timeout());
                    Ok(())
                }
                keepalive::Due::Lapsed => Err(watch.lapsed()),
            }
        }
    }
}

/// What the keepalive's watch says next; never, without one.
async fn due(watch: &mut Option<keepalive::Watch>) -> keepalive::Due {
    match watch {
        Some(watch) => watch.due().await,
        None => std::future::pending().await,
    }
}

/// Polls `future` once with the caller's context: `Ready` if it finished at once.
pub(super) async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
}
