//! [`SysvSender`]: a connection's sending half.
//!
//! A send writes the frame's messages to the peer's queue without waiting (`IPC_NOWAIT`), in
//! the caller's task or thread. Should the queue fill up (a frame larger than the queue, or a
//! peer that reads slowly), the rest of the frame goes to a writer thread of the connection,
//! started the first time it is needed, which waits in a blocking `msgsnd` (woken by the
//! kernel as soon as the peer's reader makes room, without polling), and the send waits for
//! it. A send whose wait is cancelled or times out leaves the frame to the thread, which sends
//! it whole; the next send waits for it first. The peer's death removes its queue, so the
//! thread's `msgsnd` fails at once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::super::wire::{self, Outgoing};
use super::link::Link;
use super::queue::{DATA, Stopped};
use super::sys::MsgBuf;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;

/// How long a closing sender keeps trying to finish its last frame and say goodbye when the
/// peer's queue is full; then it gives up and removes that queue (the peer's receiver ends).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct State {
    /// A frame for the thread to finish.
    job: Option<Outgoing>,
    /// The thread is sending a job.
    busy: bool,
    /// Say goodbye once the job is done, then end.
    bye: bool,
    /// The sender is gone: end once nothing is left to do.
    quit: bool,
    /// The thread has ended.
    ended: bool,
    /// A job failed: the connection can send no more. The error goes to the sender once.
    broken: bool,
    failed: Option<TransportError>,
    /// A blocking send waits for the thread.
    sender_waits: bool,
}

impl State {
    /// Whether the thread still has an earlier frame to send.
    fn busy(&self) -> bool {
        self.job.is_some() || self.busy
    }

    /// `Some` once the thread has nothing left of earlier frames: whether they went.
    fn idle(&mut self) -> Option<Result<(), TransportError>> {
        if self.busy() {
            return None;
        }
        if self.broken {
            return Some(Err(self.failed.take().unwrap_or(TransportError::Closed)));
        }
        Some(Ok(()))
    }
}

/// What the sender and its writer thread share.
#[derive(Debug, Default)]
struct Writer {
    state: Mutex<State>,
    /// The thread waits for work.
    work: Condvar,
    /// A blocking send (or the closing timer) waits for the thread.
    done: Condvar,
    /// An async send waits for the thread.
    notify: Notify,
}

impl Writer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(link: Arc<Link>, msgsize: usize, token: u64) -> Result<Arc<Writer>, TransportError> {
        let writer = Arc::new(Writer::default());
        let shared = writer.clone();
        std::thread::Builder::new()
            .name("rpc-sysv-mq-tx".into())
            .stack_size(256 * 1024)
            .spawn(move || write(&link, &shared, msgsize, token))?;
        Ok(writer)
    }

    async fn idle(&self) -> Result<(), TransportError> {
        loop {
            let notified = self.notify.notified();
            if let Some(result) = self.lock().idle() {
                return result;
            }
            notified.await;
        }
    }

    fn idle_blocking(&self, give_up: Option<Instant>) -> Result<(), TransportError> {
        let mut state = self.lock();
        loop {
            if let Some(result) = state.idle() {
                return result;
            }
            state.sender_waits = true;
            state = match give_up {
                None => self.done.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.sender_waits = false;
                        return Err(TransportError::TimedOut);
                    }
                    self.done
                        .wait_timeout(state, left)
                        .map_or_else(|p| p.into_inner().0, |(s, _)| s)
                }
            };
            state.sender_waits = false;
        }
    }
}

/// The sending half of a `sysv-mq` connection.
#[derive(Debug)]
pub(crate) struct SysvSender {
    link: Arc<Link>,
    buf: MsgBuf,
    scratch: Vec<u8>,
    msgsize: usize,
    /// Put in every message (the peer checks it).
    token: u64,
    limit: usize,
    closed: bool,
    /// The writer thread, once started.
    writer: Option<Arc<Writer>>,
}

impl Drop for SysvSender {
    fn drop(&mut self) {
        self.close();
        if let Some(writer) = &self.writer {
            writer.lock().quit = true;
            writer.work.notify_one();
        }
    }
}

impl SysvSender {
    /// A sender of messages of up to `msgsize` bytes to `link`'s peer.
    pub(super) fn new(link: Arc<Link>, msgsize: usize, token: u64, limit: usize) -> SysvSender {
        SysvSender {
            link,
            // Both grow to the largest message sent: an idle connection that sent small frames
            // holds little.
            buf: MsgBuf::new(0),
            scratch: Vec::new(),
            msgsize,
            token,
            limit: limit.min(u32::MAX as usize),
            closed: false,
            writer: None,
        }
    }

    pub(crate) fn max_frame_size(&self) -> usize {
        self.limit
    }

    /// The connection's link, for tests.
    #[cfg(test)]
    pub(super) fn link_for_tests(&self) -> Arc<Link> {
        self.link.clone()
    }

    /// Writes the first message of `frame` to the peer's queue (and no more), as a sender
    /// that dies right after would.
    #[cfg(test)]
    pub(super) fn send_first_message_for_tests(&self, frame: Frame) {
        let (mut scratch, mut buf) = (Vec::new(), MsgBuf::new(self.msgsize));
        Outgoing::new(frame).next_message(&mut scratch, self.msgsize, self.token);
        buf.load(DATA, &scratch);
        assert!(self.link.tx().send(&buf, true).unwrap());
    }

    fn check(&self, frame: &Frame) -> Result<(), TransportError> {
        if self.closed || self.link.is_dead() {
            return Err(TransportError::Closed);
        }
        if frame.len() > self.limit {
            return Err(TransportError::FrameTooLarge {
                size: frame.len(),
                limit: self.limit,
            });
        }
        Ok(())
    }

    /// Sends what fits of `out` now: `Ok(true)` once all of it went.
    fn send_now(&mut self, out: &mut Outgoing) -> Result<bool, TransportError> {
        while !out.is_done() {
            out.next_message(&mut self.scratch, self.msgsize, self.token);
            self.buf.load(DATA, &self.scratch);
            match self.link.tx().send(&self.buf, true) {
                Ok(true) => out.advance(self.msgsize),
                Ok(false) => return Ok(false),
                Err(stopped) => {
                    self.closed = true;
                    return Err(stopped_error(stopped));
                }
            }
        }
        Ok(true)
    }

    /// Hands the rest of `out` to the writer thread, starting it if need be.
    fn hand_over(&mut self, out: Outgoing) -> Result<Arc<Writer>, TransportError> {
        let writer = match &self.writer {
            Some(writer) => writer.clone(),
            None => {
                let writer = Writer::start(self.link.clone(), self.msgsize, self.token)?;
                self.writer = Some(writer.clone());
                writer
            }
        };
        writer.lock().job = Some(out);
        writer.work.notify_one();
        Ok(writer)
    }

    pub(crate) async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        self.check(&frame)?;
        if let Some(writer) = &self.writer {
            writer.idle().await?;
        }
        let mut out = Outgoing::new(frame);
        if self.send_now(&mut out)? {
            return Ok(());
        }
        // From here on the frame goes whole, even should this future be dropped.
        self.hand_over(out)?.idle().await
    }

    pub(crate) fn send_blocking(
        &mut self,
        frame: Frame,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        self.check(&frame)?;
        let mut give_up = None;
        if let Some(writer) = &self.writer {
            writer.idle_blocking(*give_up.get_or_insert_with(|| deadline.resolve()))?;
        }
        let mut out = Outgoing::new(frame);
        if self.send_now(&mut out)? {
            return Ok(());
        }
        let give_up = *give_up.get_or_insert_with(|| deadline.resolve());
        self.hand_over(out)?.idle_blocking(give_up)
    }

    /// Says goodbye (`BYE`), after the frame the thread may still be sending, without waiting.
    /// Should the peer's queue be full, the thread says it, and a timer gives up after
    /// [`CLOSE_WAIT`] by removing the peer's queue (its receiver ends, as it would at our
    /// death).
    pub(crate) fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) || self.link.is_dead() {
            return;
        }
        let busy = self
            .writer
            .as_ref()
            .is_some_and(|writer| writer.lock().busy());
        if !busy {
            wire::bye(&mut self.scratch, self.token);
            self.buf.load(DATA, &self.scratch);
            match self.link.tx().send(&self.buf, true) {
                Ok(false) => {}
                // Said, or the peer's queue is gone (and the peer with it).
                Ok(true) | Err(_) => return,
            }
        }
        let writer = match &self.writer {
            Some(writer) => writer.clone(),
            None => match Writer::start(self.link.clone(), self.msgsize, self.token) {
                Ok(writer) => {
                    self.writer = Some(writer.clone());
                    writer
                }
                Err(error) => {
                    tracing::debug!(%error, "a sysv-mq connection closed without its goodbye");
                    return;
                }
            },
        };
        writer.lock().bye = true;
        writer.work.notify_one();
        let link = self.link.clone();
        let timer = std::thread::Builder::new()
            .name("rpc-sysv-mq-close".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let give_up = Instant::now() + CLOSE_WAIT;
                let mut state = writer.lock();
                while !state.ended {
                    let left = give_up.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        drop(state);
                        tracing::debug!("a sysv-mq peer did not read our last messages; gave up");
                        link.tx().remove();
                        return;
                    }
                    state = writer
                        .done
                        .wait_timeout(state, left)
                        .map_or_else(|p| p.into_inner().0, |(s, _)| s);
                }
            });
        if let Err(error) = timer {
            tracing::debug!(%error, "cannot start the sysv-mq closing timer");
        }
    }
}

fn stopped_error(stopped: Stopped) -> TransportError {
    match stopped {
        Stopped::Gone => TransportError::Closed,
        Stopped::Failed(error) => error,
    }
}

/// The writer thread: sends the jobs it is given, waiting for room in the queue, and the
/// goodbye when asked; ends when the sender is gone and nothing is left.
fn write(link: &Link, writer: &Writer, msgsize: usize, token: u64) {
    let mut buf = MsgBuf::new(msgsize);
    let mut scratch = Vec::with_capacity(msgsize);
    loop {
        let (job, bye, broken) = {
            let mut state = writer.lock();
            while state.job.is_none() && !state.bye && !state.quit {
                state = writer.work.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.job.is_none() && !state.bye {
                state.ended = true;
                writer.done.notify_all();
                return;
            }
            state.busy = state.job.is_some();
            (state.job.take(), state.bye, state.broken)
        };
        let mut result = if broken { Err(Stopped::Gone) } else { Ok(()) };
        if let Some(mut out) = job {
            while result.is_ok() && !out.is_done() {
                out.next_message(&mut scratch, msgsize, token);
                buf.load(DATA, &scratch);
                result = link.tx().send(&buf, false).map(|_| out.advance(msgsize));
            }
        }
        if bye && result.is_ok() {
            wire::bye(&mut scratch, token);
            buf.load(DATA, &scratch);
            result = link.tx().send(&buf, false).map(drop);
        }
        let mut state = writer.lock();
        state.busy = false;
        if let Err(stopped) = result
            && !broken
        {
            state.broken = true;
            state.failed = Some(stopped_error(stopped));
        }
        if bye {
            state.ended = true;
        }
        if state.sender_waits || bye {
            writer.done.notify_all();
        }
        writer.notify.notify_one();
        if bye {
            return;
        }
    }
}
