//! [`Outbox`]: one connection's sending half shared by many tasks, with writes combined.
//!
//! A task that sends while another is writing leaves its frame in the queue and returns; the
//! writing task takes everything queued and writes it with one system call. Under load (many
//! calls in flight, many handlers answering) frames go out in batches; alone, a frame goes out
//! at once. On shared memory, messages are encoded straight into the ring instead.

use std::sync::{Arc, Mutex};

use rpc_transport::{Frame, FrameSender, TransportError};

#[derive(Default)]
struct Queue {
    frames: Vec<Frame>,
    /// Whether a task is writing (and will take what is queued).
    writing: bool,
}

/// A connection's sending half, shared.
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    sender: tokio::sync::Mutex<FrameSender>,
    limit: usize,
    in_place: bool,
}

/// Clears the `writing` flag if the writing task is dropped mid-write (a cancelled call), so
/// the next sender takes over the queue.
struct Writing<'a>(&'a Outbox);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.lock().writing = false;
    }
}

impl Outbox {
    pub(crate) fn new(sender: FrameSender) -> Arc<Outbox> {
        Arc::new(Outbox {
            limit: sender.max_frame_size(),
            in_place: sender.writes_in_place(),
            queue: Mutex::new(Queue::default()),
            sender: tokio::sync::Mutex::new(sender),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `frame`, or leaves it to the task writing now. An error means the connection is
    /// broken (or the frame too large); frames left to another task fail with the connection.
    pub(crate) async fn send(&self, frame: Frame) -> Result<(), TransportError> {
        self.send_all(vec![frame]).await
    }

    /// Sends `frames` in order, like [`send`](Self::send).
    pub(crate) async fn send_all(&self, frames: Vec<Frame>) -> Result<(), TransportError> {
        self.send_batched(frames, false).await
    }

    /// Sends `frames` in order; with `linger`, a task that becomes the writer first yields once,
    /// so the other tasks of its runtime that are about to send join the same write (a client
    /// with other calls in flight passes it).
    pub(crate) async fn send_batched(
        &self,
        frames: Vec<Frame>,
        linger: bool,
    ) -> Result<(), TransportError> {
        if let Some(big) = frames.iter().find(|f| f.len() > self.limit) {
            return Err(TransportError::FrameTooLarge {
                size: big.len(),
                limit: self.limit,
            });
        }
        {
            let mut queue = self.lock();
            queue.frames.extend(frames);
            if queue.writing {
                return Ok(());
            }
            queue.writing = true;
        }
        let writing = Writing(self);
        if linger {
            tokio::task::yield_now().await;
        }
        loop {
            let batch = {
                let mut queue = self.lock();
                if queue.frames.is_empty() {
                    queue.writing = false;
                    std::mem::forget(writing);
                    return Ok(());
                }
                std::mem::take(&mut queue.frames)
            };
            self.sender.lock().await.send_all(batch).await?;
        }
    }

    /// Sends a message of `len` bytes written by `fill`: in place on shared memory, through
    /// the queue otherwise.
    pub(crate) async fn send_with(
        &self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        linger: bool,
    ) -> Result<(), TransportError> {
        if self.in_place {
            return self.sender.lock().await.send_with(len, fill).await;
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

    /// Whether messages are written in place (shared memory) rather than queued as frames.
    pub(crate) fn in_place(&self) -> bool {
        self.in_place
    }

    /// Writes what is queued and closes the sending direction.
    pub(crate) async fn close(&self) {
        let queued = std::mem::take(&mut self.lock().frames);
        let mut sender = self.sender.lock().await;
        let _ = sender.send_all(queued).await;
        let _ = sender.close().await;
    }
}
