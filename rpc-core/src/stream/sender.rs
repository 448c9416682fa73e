//! [`StreamSender`]: the producing end of [`Streaming::channel`](super::Streaming::channel).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::sync::mpsc;

/// The reader of the stream is gone (the call ended or was cancelled): nothing more is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream's reader is gone (its call ended or was cancelled)")]
pub struct StreamClosed;

/// Feeds a [`Streaming`](super::Streaming) made by `Streaming::channel`. Dropping it ends the
/// stream cleanly; [`fail`](Self::fail) ends it with an error.
#[derive(Debug)]
pub struct StreamSender<T> {
    items: mpsc::Sender<Result<T, String>>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        StreamSender {
            items: self.items.clone(),
        }
    }
}

impl<T: Send> StreamSender<T> {
    /// Sends `item`, waiting while the stream holds as many unread items as its capacity (and
    /// while the connection's credit is spent).
    pub async fn send(&self, item: T) -> Result<(), StreamClosed> {
        self.items.send(Ok(item)).await.map_err(|_| StreamClosed)
    }

    /// Ends the stream with `reason`: the reader gets [`RpcError::StreamFailed`](crate::RpcError::StreamFailed).
    pub async fn fail(self, reason: impl Into<String>) -> Result<(), StreamClosed> {
        self.items
            .send(Err(reason.into()))
            .await
            .map_err(|_| StreamClosed)
    }

    /// Whether the stream's reader is gone.
    pub fn is_closed(&self) -> bool {
        self.items.is_closed()
    }

    /// Completes once the stream's reader is gone (the call ended or was cancelled): a
    /// producer waiting on something else can `select!` on it to stop.
    pub async fn closed(&self) {
        self.items.closed().await
    }
}

/// The reading end, as a stream.
struct Items<T>(mpsc::Receiver<Result<T, String>>);

impl<T> Stream for Items<T> {
    type Item = Result<T, String>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.0.poll_recv(cx);
        // An error is the stream's last item.
        if let Poll::Ready(Some(Err(_))) = &item {
            self.0.close();
        }
        item
    }
}

/// A sender and the stream it feeds.
pub(super) fn channel<T: Send + 'static>(
    capacity: usize,
) -> (StreamSender<T>, super::LocalItems<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (StreamSender { items: tx }, Box::pin(Items(rx)))
}
