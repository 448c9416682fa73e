//! [`Outbox`]: one connection's sending half shared by many tasks, with writes combined.
//!
//! A task that sends while another is writing leaves its message to that writer and returns:
//! written straight into the byte stream's output buffer while nothing waits in the queue and
//! the writer does not hold the sender, queued as a frame otherwise. The writing task writes
//! everything buffered and queued with one system call. Under load (many calls in flight, many
//! handlers answering) messages go out in batches; alone, a message goes out at once. On
//! shared memory, messages are encoded straight into the ring instead.
//!
//! A server's outbox has a byte budget: a message waits for its bytes before it is buffered or
//! queued, and gives them back once written, so a peer that does not read holds at most that
//! much here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rpc_transport::{Frame, FrameSender, TransportError};

use crate::budget::{FRAME_OVERHEAD, Held, Pool};

#[derive(Default)]
struct Queue {
    frames: Vec<Frame>,
    /// The budget the queued frames and the messages fed to the sender hold, given back once
    /// the next batch is written.
    held: Vec<Held>,
    /// Whether a task is writing (and will take what is queued).
    writing: bool,
    /// Set once a write failed or the connection was [released](Outbox::release): every later
    /// send fails at once, with this reason.
    failed: Option<String>,
}

/// The most bytes a task that is not the writer writes straight into the sender's output
/// buffer, which it does holding the queue's lock; more go as frames, built outside it.
const FEED_UNDER_LOCK_UP_TO: usize = 4096;

/// What became of a send's items at [`Outbox::join`].
enum Joined<T, C> {
    /// Fed to the sender, for the writer to flush.
    Fed,
    /// To queue as frames, with their budget.
    Queue(Vec<T>, Option<Held>),
    /// The caller is the writer now: its items, their budget, and whether the queue was
    /// empty (fed bytes would otherwise overtake queued frames).
    Write(C, Option<Held>, bool),
}

/// A connection's sending half, shared.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    /// `None` once [`release`](Self::release)d: the connection ended and its transport is
    /// given back.
    sender: tokio::sync::Mutex<Option<FrameSender>>,
    limit: usize,
    in_place: bool,
    /// Whether the sender takes messages written into its output buffer
    /// ([`FrameSender::feed_with`]); cleared the first time it does not.
    feeds: AtomicBool,
    /// Bytes queued frames may hold (none: unbounded, for a client's own requests).
    budget: Option<Arc<Pool>>,
}

/// The writing task's duty, handed on if it is dropped mid-write (a cancelled call, an aborted
/// handler): a new task writes what others left in the queue, so no frame is stranded.
struct Writing {
    outbox: Option<Arc<Outbox>>,
}

impl Writing {
    /// The writer gives up before it writes (the connection failed, or was released): nothing
    /// to hand on.
    fn release(mut self) {
        if let Some(outbox) = self.outbox.take() {
            outbox.lock().writing = false;
        }
    }

    /// The writer's [`write_queued`](Outbox::write_queued) returned, having cleared the flag
    /// itself (or `fail` did). Another task may be the writer by now: clearing the flag again
    /// would make a second writer of the next sender, which would then wait for the sender
    /// behind the first instead of leaving its message to it.
    fn finished(mut self) {
        self.outbox = None;
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let Some(outbox) = self.outbox.take() else {
            return;
        };
        // Outside a runtime the flag is cleared and what others queued waits for the next send.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = outbox.write_queued().await;
                });
            }
            Err(_) => outbox.lock().writing = false,
        }
    }
}

impl Outbox {
    pub(crate) fn new(sender: FrameSender, budget: Option<Arc<Pool>>) -> Arc<Outbox> {
        Arc::new(Outbox {
            limit: sender.max_frame_size(),
            in_place: sender.writes_in_place(),
            feeds: AtomicBool::new(true),
            queue: Mutex::new(Queue::default()),
            sender: tokio::sync::Mutex::new(Some(sender)),
            budget,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `frame`, or leaves it to the task writing now. An error means the connection is
    /// broken (or the frame too large); frames left to another task fail with the connection.
    pub(crate) async fn send(self: &Arc<Self>, frame: Frame) -> Result<(), TransportError> {
        self.send_all(vec![frame]).await
    }

    /// Sends `frames` in order, like [`send`](Self::send).
    pub(crate) async fn send_all(
        self: &Arc<Self>,
        frames: Vec<Frame>,
    ) -> Result<(), TransportError> {
        let total = self.measure(frames.iter().map(Frame::len))?;
        let held = self.reserve(total, frames.len()).await;
        self.enqueue(frames, held).await
    }

    /// Sends `items` in order, each a message of `len(item)` bytes that `write` fills. Where
    /// the transport queues bytes (a byte stream) they are written straight into its output
    /// buffer, with no frame built per message: by the task that becomes the writer, and by
    /// any other while nothing waits in the queue and the writer does not hold the sender
    /// (small messages only, as that is done holding the queue's lock). As frames otherwise.
    ///
    /// With `linger`, a task that becomes the writer yields once before it writes, so the other
    /// tasks of its runtime that are about to send join the same write (a client with other
    /// calls in flight passes it).
    pub(crate) async fn send_written<T, C>(
        self: &Arc<Self>,
        items: C,
        len: impl Fn(&T) -> usize,
        write: impl Fn(T, &mut [u8]),
        linger: bool,
    ) -> Result<(), TransportError>
    where
        C: AsRef<[T]> + IntoIterator<Item = T>,
    {
        let total = self.measure(items.as_ref().iter().map(&len))?;
        let held = self.reserve(total, items.as_ref().len()).await;
        let (items, held, fresh_queue) = match self.join(items, held, total, &len, &write)? {
            Joined::Fed => return Ok(()),
            Joined::Queue(unfed, held) => {
                return self.enqueue(frames(unfed, &len, &write), held).await;
            }
            Joined::Write(items, held, fresh_queue) => (items, held, fresh_queue),
        };
        let writing = Writing {
            outbox: Some(self.clone()),
        };
        // No await until the items are in the transport's buffer or the queue: a send dropped
        // midway then loses nothing (the writer's duty passes on, see `Writing`). The sender is
        // free as a rule (we are the writer); were it not, or were frames left queued by a
        // writer dropped outside a runtime, the items go as frames behind them.
        let unfed = match self.sender.try_lock() {
            Ok(mut sender) if fresh_queue => match sender.as_mut() {
                Some(sender) => match self.feed(sender, items, &len, &write) {
                    Ok(unfed) => unfed,
                    Err(error) => {
                        self.fail(&error);
                        writing.release();
                        return Err(error);
                    }
                },
                None => {
                    writing.release();
                    return Err(self.released());
                }
            },
            _ => items.into_iter().collect(),
        };
        let unfed = frames(unfed, &len, &write);
        {
            let mut queue = self.lock();
            queue.frames.extend(unfed);
            // Given back once the next batch is written, which flushes what was fed.
            queue.held.extend(held);
        }
        if linger {
            tokio::task::yield_now().await;
        }
        let outcome = self.write_queued().await;
        writing.finished();
        outcome
    }

    /// The bytes of messages of `sizes`, refusing one over the size limit.
    fn measure(&self, sizes: impl Iterator<Item = usize>) -> Result<usize, TransportError> {
        let mut total = 0;
        for size in sizes {
            if size > self.limit {
                return Err(TransportError::FrameTooLarge {
                    size,
                    limit: self.limit,
                });
            }
            total += size;
        }
        Ok(total)
    }

    /// Waits for the byte budget of `count` messages of `total` bytes (a peer that does not
    /// read stops us here).
    async fn reserve(&self, total: usize, count: usize) -> Option<Held> {
        match &self.budget {
            Some(pool) => Some(pool.take(total + count * FRAME_OVERHEAD).await),
            None => None,
        }
    }

    /// Hands `items` to the task writing now, if there is one: fed into the sender's output
    /// buffer while nothing waits in the queue and the writer does not hold the sender (they
    /// go out with its next write, after what it holds now), or left for the caller to queue
    /// as frames. Else makes the caller the writer.
    fn join<T, C>(
        &self,
        items: C,
        held: Option<Held>,
        total: usize,
        len: &impl Fn(&T) -> usize,
        write: &impl Fn(T, &mut [u8]),
    ) -> Result<Joined<T, C>, TransportError>
    where
        C: IntoIterator<Item = T>,
    {
        let mut queue = self.lock();
        if let Some(reason) = &queue.failed {
            return Err(broken(reason));
        }
        if !queue.writing {
            queue.writing = true;
            return Ok(Joined::Write(items, held, queue.frames.is_empty()));
        }
        let mut sender = match self.sender.try_lock() {
            Ok(sender) if queue.frames.is_empty() && total <= FEED_UNDER_LOCK_UP_TO => sender,
            _ => return Ok(Joined::Queue(items.into_iter().collect(), held)),
        };
        let Some(sender) = sender.as_mut() else {
            return Ok(Joined::Queue(items.into_iter().collect(), held));
        };
        match self.feed(sender, items, len, write) {
            Ok(unfed) if unfed.is_empty() => {
                // Given back once the writer's next batch is written, which flushes them.
                queue.held.extend(held);
                Ok(Joined::Fed)
            }
            Ok(unfed) => Ok(Joined::Queue(unfed, held)),
            Err(error) => {
                fail(&mut queue, &error);
                Err(error)
            }
        }
    }

    /// Writes `items` into `sender`'s output buffer while it takes them: the ones it did not
    /// take (all of them where the transport does not queue bytes, which is remembered).
    fn feed<T>(
        &self,
        sender: &mut FrameSender,
        items: impl IntoIterator<Item = T>,
        len: &impl Fn(&T) -> usize,
        write: &impl Fn(T, &mut [u8]),
    ) -> Result<Vec<T>, TransportError> {
        let mut items = items.into_iter();
        if !self.feeds.load(Ordering::Relaxed) {
            return Ok(items.collect());
        }
        while let Some(item) = items.next() {
            let size = len(&item);
            let mut item = Some(item);
            let fed = sender.feed_with(size, |out| {
                if let Some(item) = item.take() {
                    write(item, out)
                }
            })?;
            if !fed {
                self.feeds.store(false, Ordering::Relaxed);
                return Ok(item.into_iter().chain(items).collect());
            }
        }
        Ok(Vec::new())
    }

    /// Queues `frames` (holding `held` of the budget) behind what is queued, and writes them
    /// unless another task is writing and so takes them with its next batch.
    async fn enqueue(
        self: &Arc<Self>,
        frames: Vec<Frame>,
        held: Option<Held>,
    ) -> Result<(), TransportError> {
        {
            let mut queue = self.lock();
            if let Some(reason) = &queue.failed {
                return Err(broken(reason));
            }
            queue.frames.extend(frames);
            queue.held.extend(held);
            if queue.writing {
                return Ok(());
            }
            queue.writing = true;
        }
        let writing = Writing {
            outbox: Some(self.clone()),
        };
        let outcome = self.write_queued().await;
        writing.finished();
        outcome
    }

    /// Writes everything queued, until the queue stays empty. The sender is locked before a
    /// batch leaves the queue, and the byte-stream senders keep what they accepted across a
    /// cancellation, so frames are never dropped between the two.
    ///
    /// The writer stays the writer until its last write is done: `writing` is cleared only
    /// after a write that left nothing queued, with the sender still held, so nothing was fed
    /// meanwhile either. Cleared before that write (when the queue was found empty), the bytes
    /// fed in place went out with no writer, and the next task to send became a second writer
    /// that waited for the sender instead of leaving its message to this one. A server's
    /// handler polled inline then waited, unpolled, behind the takeover reader, which waited
    /// for the sender that handler held or was given: neither moved again.
    async fn write_queued(&self) -> Result<(), TransportError> {
        loop {
            let mut sender = self.sender.lock().await;
            let (batch, held) = {
                let mut queue = self.lock();
                (
                    std::mem::take(&mut queue.frames),
                    std::mem::take(&mut queue.held),
                )
            };
            // With an empty batch: the bytes fed in place, and those a cancelled writer left
            // half-written, go out now.
            let sent = match sender.as_mut() {
                Some(sender) => sender.send_all(batch).await,
                None => Err(self.released()),
            };
            if let Err(error) = sent {
                self.fail(&error);
                return Err(error);
            }
            drop(held);
            let idle = {
                let mut queue = self.lock();
                if queue.frames.is_empty() {
                    queue.writing = false;
                    // Budget of sends that queued nothing (an empty batch of answers).
                    Some(std::mem::take(&mut queue.held))
                } else {
                    None
                }
            };
            if let Some(held) = idle {
                drop(held);
                return Ok(());
            }
        }
    }

    /// A write failed: every later send fails with `error`, and what is queued is dropped.
    fn fail(&self, error: &TransportError) {
        fail(&mut self.lock(), error);
    }

    /// Sends a message of `len` bytes written by `fill`: in place on shared memory, through
    /// the queue otherwise.
    pub(crate) async fn send_with(
        self: &Arc<Self>,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        linger: bool,
    ) -> Result<(), TransportError> {
        if self.in_place {
            return match self.sender.lock().await.as_mut() {
                Some(sender) => sender.send_with(len, fill).await,
                None => Err(self.released()),
            };
        }
        self.send_written([fill], |_| len, |fill, out| fill(out), linger)
            .await
    }

    /// Waits until the byte budget has room (at once without a budget): a call waits here
    /// before it builds its answer, so a peer that does not read cannot make the server build
    /// answers that could not be queued anyway.
    pub(crate) async fn room(&self) {
        if let Some(budget) = &self.budget {
            drop(budget.take(1).await);
        }
    }

    /// Whether messages are written in place (shared memory) rather than queued as frames.
    pub(crate) fn in_place(&self) -> bool {
        self.in_place
    }

    /// Writes what is queued and closes the sending direction.
    pub(crate) async fn close(&self) {
        // The sender first, as `write_queued` does: a task feeding its bytes into the sender's
        // buffer meanwhile would otherwise go ahead of the frames taken here.
        let mut sender = self.sender.lock().await;
        let queued = {
            let mut queue = self.lock();
            queue.held.clear();
            std::mem::take(&mut queue.frames)
        };
        if let Some(sender) = sender.as_mut() {
            let _ = sender.send_all(queued).await;
            let _ = sender.close().await;
        }
    }

    /// Gives the sending half back to the transport once the connection has ended (`reason`):
    /// what is queued is dropped and every later send fails at once. The transport's
    /// descriptors go as soon as a write in progress ends (at once when the peer is gone), not
    /// when the last handle to the connection is dropped: a message queue counts against its
    /// creator's `RLIMIT_MSGQUEUE` until its last descriptor closes.
    pub(crate) async fn release(&self, reason: &str) {
        {
            let mut queue = self.lock();
            queue.failed.get_or_insert_with(|| reason.to_owned());
            queue.frames.clear();
            queue.held.clear();
        }
        drop(self.sender.lock().await.take());
    }

    /// The error of a send after [`release`](Self::release): the reason the connection ended.
    fn released(&self) -> TransportError {
        broken(
            self.lock()
                .failed
                .as_deref()
                .unwrap_or("the connection ended"),
        )
    }
}

/// Marks `queue` failed with `error`: every later send fails, and what is queued is dropped.
fn fail(queue: &mut Queue, error: &TransportError) {
    queue.failed = Some(error.to_string());
    queue.writing = false;
    queue.frames.clear();
    queue.held.clear();
}

/// `items` as frames, each of `len(item)` bytes filled by `write`.
fn frames<T>(
    items: Vec<T>,
    len: &impl Fn(&T) -> usize,
    write: &impl Fn(T, &mut [u8]),
) -> Vec<Frame> {
    items
        .into_iter()
        .map(|item| Frame::filled(len(&item), |out| write(item, out)))
        .collect()
}

/// The error of a send on a broken connection.
fn broken(reason: &str) -> TransportError {
    TransportError::Io(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        reason.to_owned(),
    ))
}

#[cfg(test)]
mod tests;
