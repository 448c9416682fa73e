//! [`BlockingStreaming`]: a received stream for code without a runtime, as an iterator; and
//! [`block_on`], which lets a blocking client take items from a `Streaming` it sends.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use rpc_transport::Frame;
use serde::de::DeserializeOwned;

use super::decode_item;
use crate::error::RpcError;

/// Where a blocking stream's item frames come from: the blocking client's call, which reads its
/// connection on the calling thread. Dropping it before the end cancels the call.
pub(crate) trait NextFrame: Send {
    /// The next item's frame; `None` after a clean end; an error ends the stream.
    fn next_frame(&mut self) -> Option<Result<Frame, RpcError>>;
}

/// A stream received by a blocking client: an [`Iterator`] of `Result<T, RpcError>` that
/// reads the connection as it is advanced. It ends after its last item (`None`), or after one
/// `Err`. Dropping it before the end cancels the call; the client's other calls wait until it
/// is dropped or exhausted, since they share its connection.
pub struct BlockingStreaming<T> {
    frames: Box<dyn NextFrame>,
    method: String,
    done: bool,
    items: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for BlockingStreaming<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingStreaming")
            .field("method", &self.method)
            .field("done", &self.done)
            .finish()
    }
}

impl<T> BlockingStreaming<T> {
    pub(crate) fn new(frames: Box<dyn NextFrame>, method: String) -> Self {
        BlockingStreaming {
            frames,
            method,
            done: false,
            items: PhantomData,
        }
    }
}

impl<T: DeserializeOwned> Iterator for BlockingStreaming<T> {
    type Item = Result<T, RpcError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.frames.next_frame() {
            Some(Ok(frame)) => decode_item(&frame, &self.method),
            Some(Err(error)) => Err(error),
            None => {
                self.done = true;
                return None;
            }
        };
        // An error is the last item (an undecodable item ends the call when this is dropped).
        self.done = item.is_err();
        Some(item)
    }
}

/// Wakes the thread that waits in [`block_on`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking between polls.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
