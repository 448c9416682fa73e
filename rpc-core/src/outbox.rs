//! [`Outbox`]: one connection's sending half shared by many tasks, with writes combined.
//!
//! A task that sends while another is writing leaves its frame in the queue and returns; the
//! writing task takes everything queued and writes it with one system call. Under load (many
//! calls in flight, many handlers answering) frames go out in batches; alone, a frame goes out
//! at once. On shared memory, messages are encoded straight into the ring instead.
//!
//! A server's outbox has a byte budget: a frame waits for its bytes before it joins the queue,
//! and gives them back once written, so a peer that does not read holds at most that much here.

use std::sync::{Arc, Mutex};

use rpc_transport::{Frame, FrameSender, TransportError};

use crate::budget::{FRAME_OVERHEAD, Held, Pool};

#[derive(Default)]
struct Queue {
    frames: Vec<Frame>,
    /// The budget the queued frames hold, given back once they are written.
    held: Vec<Held>,
    /// Whether a task is writing (and will take what is queued).
    writing: bool,
    /// Set once a write failed or the connection was [released](Outbox::release): every later
    /// send fails at once, with this reason.
    failed: Option<String>,
}

/// A connection's sending half, shared.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    /// `None` once [`release`](Self::release)d: the connection ended and its transport is
    /// given back.
    sender: tokio::sync::Mutex<Option<FrameSender>>,
    limit: usize,
    in_place: bool,
    /// Bytes queued frames may hold (none: unbounded, for a client's own requests).
    budget: Option<Arc<Pool>>,
}

/// The writing task's duty, handed on if it is dropped mid-write (a cancelled call, an aborted
/// handler): a new task writes what others left in the queue, so no frame is stranded.
struct Writing {
    outbox: Option<Arc<Outbox>>,
}

impl Writing {
    /// The writer is done (or the connection failed): nothing to hand on.
    fn release(mut self) {
        if let Some(outbox) = self.outbox.take() {
            outbox.lock().writing = false;
        }
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
        self.send_batched(frames, false).await
    }

    /// Sends `items` in order, each a message of `len(item)` bytes that `write` fills: written
    /// straight into the transport's output where it queues bytes (a byte stream) and no
    /// other task is writing, so no frame is built per message; as frames otherwise.
    pub(crate) async fn send_written<T>(
        self: &Arc<Self>,
        items: Vec<T>,
        len: impl Fn(&T) -> usize,
        write: impl Fn(T, &mut [u8]),
    ) -> Result<(), TransportError> {
        let as_frames = |items: Vec<T>| -> Vec<Frame> {
            items
                .into_iter()
                .map(|item| Frame::filled(len(&item), |out| write(item, out)))
                .collect()
        };
        if let Some(size) = items.iter().map(&len).find(|&size| size > self.limit) {
            return Err(TransportError::FrameTooLarge {
                size,
                limit: self.limit,
            });
        }
        let held = match &self.budget {
            Some(pool) => {
                let bytes = items.iter().map(|item| len(item) + FRAME_OVERHEAD).sum();
                Some(pool.take(bytes).await)
            }
            None => None,
        };
        {
            let mut queue = self.lock();
            if let Some(reason) = &queue.failed {
                return Err(broken(reason));
            }
            if queue.writing {
                // The writer takes them with what it writes next.
                queue.frames.extend(as_frames(items));
                queue.held.extend(held);
                return Ok(());
            }
            queue.writing = true;
        }
        let writing = Writing {
            outbox: Some(self.clone()),
        };
        // No await until the items are in the transport's buffer or the queue: a send dropped
        // midway then loses nothing (the writer's duty passes on, see `Writing`). The sender is
        // free as a rule (we are the writer); were it not, the items go as frames.
        let mut rest = Some(items);
        if let Ok(mut sender) = self.sender.try_lock() {
            let Some(sender) = sender.as_mut() else {
                writing.release();
                return Err(self.released());
            };
            let mut items = rest.take().into_iter().flatten();
            while let Some(item) = items.next() {
                let size = len(&item);
                let mut item = Some(item);
                let fed = sender.feed_with(size, |out| {
                    if let Some(item) = item.take() {
                        write(item, out)
                    }
                });
                match fed {
                    Ok(true) => {}
                    // Not a byte stream: the rest go as frames.
                    Ok(false) => {
                        rest = Some(item.into_iter().chain(items).collect());
                        break;
                    }
                    Err(error) => {
                        self.fail(&error);
                        writing.release();
                        return Err(error);
                    }
                }
            }
        }
        {
            let mut queue = self.lock();
            if let Some(rest) = rest {
                queue.frames.extend(as_frames(rest));
            }
            // Given back once the next batch is written, which flushes what was fed.
            queue.held.extend(held);
        }
        let outcome = self.write_queued().await;
        writing.release();
        outcome
    }

    /// Sends `frames` in order; with `linger`, a task that becomes the writer first yields once,
    /// so the other tasks of its runtime that are about to send join the same write (a client
    /// with other calls in flight passes it).
    pub(crate) async fn send_batched(
        self: &Arc<Self>,
        frames: Vec<Frame>,
        linger: bool,
    ) -> Result<(), TransportError> {
        if let Some(big) = frames.iter().find(|f| f.len() > self.limit) {
            return Err(TransportError::FrameTooLarge {
                size: big.len(),
                limit: self.limit,
            });
        }
        // Wait for room in the budget first: a peer that does not read stops us here.
        let held = match &self.budget {
            Some(pool) => {
                let bytes = frames.iter().map(|f| f.len() + FRAME_OVERHEAD).sum();
                Some(pool.take(bytes).await)
            }
            None => None,
        };
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
        if linger {
            tokio::task::yield_now().await;
        }
        let outcome = self.write_queued().await;
        writing.release();
        outcome
    }

    /// Writes everything queued, until the queue stays empty. The sender is locked before a
    /// batch leaves the queue, and the byte-stream senders keep what they accepted across a
    /// cancellation, so frames are never dropped between the two.
    async fn write_queued(&self) -> Result<(), TransportError> {
        loop {
            let mut sender = self.sender.lock().await;
            let (batch, held) = {
                let mut queue = self.lock();
                if queue.frames.is_empty() {
                    queue.writing = false;
                }
                (
                    std::mem::take(&mut queue.frames),
                    std::mem::take(&mut queue.held),
                )
            };
            // With an empty batch: bytes a cancelled writer left half-written go out now.
            let done = batch.is_empty();
            let sent = match sender.as_mut() {
                Some(sender) => sender.send_all(batch).await,
                None => Err(self.released()),
            };
            if let Err(error) = sent {
                self.fail(&error);
                return Err(error);
            }
            drop(held);
            if done {
                return Ok(());
            }
        }
    }

    /// A write failed: every later send fails with `error`, and what is queued is dropped.
    fn fail(&self, error: &TransportError) {
        let mut queue = self.lock();
        queue.failed = Some(error.to_string());
        queue.writing = false;
        queue.frames.clear();
        queue.held.clear();
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
        if len > self.limit {
            return Err(TransportError::FrameTooLarge {
                size: len,
                limit: self.limit,
            });
        }
        self.send_batched(vec![Frame::filled(len, fill)], linger)
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
        let queued = std::mem::take(&mut self.lock().frames);
        let mut sender = self.sender.lock().await;
        self.lock().held.clear();
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

/// The error of a send on a broken connection.
fn broken(reason: &str) -> TransportError {
    TransportError::Io(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        reason.to_owned(),
    ))
}
