//! An async connection used from blocking code: its halves run on a small private runtime,
//! each operation under its deadline. `mem://` uses it, and so can any transport over an
//! async byte stream (`tls://`, or one registered by a program).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::address::Address;
use crate::blocking::{BlockingConnection, BlockingReceiver, BlockingSender, remaining};
use crate::connection::{Connection, FrameReceiver, FrameSender};
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::transport::{BlockingReceiveFrames, BlockingSendFrames};

/// Runs `future` on `runtime` until it ends or `deadline` passes.
fn run_with_deadline<T>(
    runtime: &Runtime,
    deadline: Option<Instant>,
    future: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let left = remaining(deadline)?;
    runtime.block_on(async move {
        match left {
            None => future.await,
            Some(left) => tokio::time::timeout(left, future)
                .await
                .unwrap_or(Err(TransportError::TimedOut)),
        }
    })
}

/// An async half driven by a private runtime shared by both halves.
struct OverRuntime<H> {
    runtime: Arc<Runtime>,
    half: H,
    mechanism: &'static str,
}

impl BlockingSendFrames for OverRuntime<FrameSender> {
    fn send(&mut self, frame: Frame, deadline: Deadline) -> Result<(), TransportError> {
        run_with_deadline(&self.runtime, deadline.resolve(), self.half.send(frame))
    }

    fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    fn runs_own_runtime(&self) -> bool {
        true
    }

    fn max_frame_size(&self) -> usize {
        self.half.max_frame_size()
    }

    fn close(&mut self) {
        let deadline = Some(Instant::now() + Duration::from_secs(5));
        let _ = run_with_deadline(&self.runtime, deadline, self.half.close());
    }
}

impl BlockingReceiveFrames for OverRuntime<FrameReceiver> {
    fn recv(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError> {
        run_with_deadline(&self.runtime, deadline.resolve(), self.half.recv())
    }

    fn peer_gone(&self) -> bool {
        self.half.peer_gone()
    }
}

impl BlockingConnection {
    /// A blocking connection over an async one: `connect` runs (at most `timeout`) on a
    /// private single-threaded runtime, which then drives every send and receive of the
    /// connection it makes, each under its deadline. Refused with
    /// [`TransportError::InsideRuntime`] inside an async runtime, where blocking on one would
    /// stall (or panic).
    pub fn over_runtime<F>(
        address: &Address,
        timeout: Duration,
        connect: impl FnOnce() -> F,
    ) -> Result<BlockingConnection, TransportError>
    where
        F: Future<Output = Result<Connection, TransportError>>,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(TransportError::InsideRuntime {
                address: address.to_string(),
            });
        }
        let runtime = Arc::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        );
        let deadline = Some(Instant::now() + timeout);
        let connection =
            run_with_deadline(&runtime, deadline, connect()).map_err(|error| match error {
                TransportError::TimedOut => TransportError::Connect {
                    address: address.to_string(),
                    source: std::io::ErrorKind::TimedOut.into(),
                },
                other => other,
            })?;
        let (sender, receiver, peer) = connection.split();
        let mechanism = sender.mechanism();
        Ok(BlockingConnection::new(
            BlockingSender::new(OverRuntime {
                runtime: runtime.clone(),
                half: sender,
                mechanism,
            }),
            BlockingReceiver::new(OverRuntime {
                runtime,
                half: receiver,
                mechanism,
            }),
            peer,
        ))
    }
}
