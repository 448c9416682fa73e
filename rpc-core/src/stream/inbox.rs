//! A stream's receiving side: the [`Inbox`] the connection's reader delivers items into, and
//! the [`Incoming`] items its consumer takes, granting credit back as it goes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use rpc_transport::Frame;
use tokio::sync::mpsc;
use tokio::time::Sleep;

use crate::budget::Held;
use crate::error::RpcError;
use crate::wire::STREAM_WINDOW;

/// What the reader hands the consumer.
pub(crate) enum Delivery {
    /// An item's frame, with the budget it holds on a server until consumed.
    Item(Frame, Option<Held>),
    /// The stream ended: cleanly, or why not.
    End(Result<(), RpcError>),
}

/// Sends credit for this many bytes back to the producer.
pub(crate) type Granter = Box<dyn Fn(u64) + Send + Sync>;

/// The delivering side, kept by the connection with the call.
pub(crate) struct Inbox {
    deliveries: mpsc::UnboundedSender<Delivery>,
    received: AtomicU64,
    /// Credit granted so far, the initial window included (raised by the consumer).
    granted: Arc<AtomicU64>,
}

impl Inbox {
    /// Hands an item to the consumer; `Err` if the producer sent beyond its credit. A sender
    /// sends an item only while it has credit left, so it may overdraw by that one item: an
    /// item that *starts* beyond the credit breaks the protocol. (Tolerating an overdraw of a
    /// whole maximum-size frame instead would let a peer queue 16 MiB more per stream here, in
    /// as many tiny frames as it likes.) Our `granted` is raised before the peer hears of it,
    /// so it is never below what the peer believes it was granted.
    pub(crate) fn deliver(&self, frame: Frame, held: Option<Held>) -> Result<(), String> {
        let len = frame.len() as u64;
        let before = self.received.fetch_add(len, Ordering::AcqRel);
        let granted = self.granted.load(Ordering::Acquire);
        if before >= granted {
            return Err(format!(
                "the peer sent {} bytes of a stream, beyond the {granted} it was granted",
                before + len
            ));
        }
        // A consumer that let go drops what arrives after (within its credit).
        let _ = self.deliveries.send(Delivery::Item(frame, held));
        Ok(())
    }

    /// Ends the stream.
    pub(crate) fn end(&self, outcome: Result<(), RpcError>) {
        let _ = self.deliveries.send(Delivery::End(outcome));
    }
}

/// What runs once when the stream ends: `true` if its consumer let go before the end (or its
/// deadline passed), so the producer must be told to stop.
pub(crate) type OnEnd = Box<dyn FnOnce(bool) + Send + Sync>;

/// The consuming side.
pub(crate) struct Incoming {
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    granted: Arc<AtomicU64>,
    /// Bytes consumed and not yet granted back.
    ungranted: u64,
    grant: Granter,
    done: bool,
    on_end: Option<OnEnd>,
    deadline: Option<(Pin<Box<Sleep>>, RpcError)>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A new stream's two sides; the consumer grants credit with `grant`.
pub(crate) fn stream_pair(grant: Granter) -> (Inbox, Incoming) {
    let (tx, rx) = mpsc::unbounded_channel();
    let granted = Arc::new(AtomicU64::new(STREAM_WINDOW));
    let inbox = Inbox {
        deliveries: tx,
        received: AtomicU64::new(0),
        granted: granted.clone(),
    };
    let incoming = Incoming {
        deliveries: rx,
        granted,
        ungranted: 0,
        grant,
        done: false,
        on_end: None,
        deadline: None,
    };
    (inbox, incoming)
}

impl Incoming {
    /// Runs `hook` once the stream ends (see [`OnEnd`]).
    pub(crate) fn on_end(mut self, hook: OnEnd) -> Self {
        self.on_end = Some(hook);
        self
    }

    /// Ends the stream with `error` at `deadline`.
    pub(crate) fn with_deadline(mut self, deadline: tokio::time::Instant, error: RpcError) -> Self {
        self.deadline = Some((Box::pin(tokio::time::sleep_until(deadline)), error));
        self
    }

    fn finish(&mut self, abandoned: bool) {
        self.done = true;
        self.deadline = None;
        if let Some(hook) = self.on_end.take() {
            hook(abandoned);
        }
    }

    /// The next item's frame; `None` after a clean end; an error ends the stream.
    pub(crate) fn poll_item(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame, RpcError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = self.deliveries.poll_recv(cx);
        if polled.is_pending()
            && let Some((sleep, _)) = &mut self.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            let (_, error) = self.deadline.take().expect("checked");
            self.finish(true);
            return Poll::Ready(Some(Err(error)));
        }
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Delivery::Item(frame, held))) => {
                drop(held);
                self.consumed(frame.len() as u64);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Delivery::End(Ok(())))) => {
                self.finish(false);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Delivery::End(Err(error)))) => {
                self.finish(false);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                self.finish(false);
                Poll::Ready(Some(Err(RpcError::disconnected(
                    "the call ended before its stream did",
                ))))
            }
        }
    }

    /// Ends the stream here because an item was unusable: the producer is told to stop.
    pub(crate) fn fail(&mut self) {
        if !self.done {
            self.finish(true);
        }
    }

    fn consumed(&mut self, bytes: u64) {
        self.ungranted += bytes;
        if self.ungranted >= STREAM_WINDOW / 2 {
            let bytes = std::mem::take(&mut self.ungranted);
            self.granted.fetch_add(bytes, Ordering::AcqRel);
            (self.grant)(bytes);
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.done {
            self.finish(true);
        }
    }
}
