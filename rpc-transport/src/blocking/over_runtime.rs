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

/// Whether this thread is running async code (a task, or the future given to `block_on`),
/// where blocking on another runtime panics ("Cannot start a runtime from within a runtime").
/// A `spawn_blocking` closure of a runtime, or a plain thread, may block on one.
///
/// Tokio tells them apart by the cooperative budget, which only a scheduler's polls have: this
/// takes budget units until none is left or more than a budget holds were taken, then gives
/// every one back (the first unit's guard, dropped last, restores the budget as it was).
fn inside_async_code() -> bool {
    use std::task::{Context, Poll, Waker};
    use tokio::task::coop;
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(first) = coop::poll_proceed(&mut cx) else {
        return true;
    };
    let mut constrained = false;
    for _ in 0..=u8::MAX {
        match coop::poll_proceed(&mut cx) {
            Poll::Ready(unit) => unit.made_progress(),
            Poll::Pending => {
                constrained = true;
                break;
            }
        }
    }
    drop(first);
    constrained
}

/// Runs `future` on `runtime` until it ends or `deadline` passes. In async code, where
/// blocking on another runtime would panic, refuses with [`TransportError::InsideRuntime`]
/// naming `address` (as connecting does there).
fn run_with_deadline<T>(
    runtime: &Runtime,
    address: &str,
    deadline: Option<Instant>,
    future: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    if inside_async_code() {
        return Err(TransportError::InsideRuntime {
            address: address.to_owned(),
        });
    }
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

/// The private runtime of a blocking connection, shared by its halves. Dropped inside an
/// async runtime (a blocking connection handed back from `spawn_blocking` and let go in a
/// task), where waiting for its shutdown is not allowed, it is shut down without waiting.
struct OwnRuntime(Option<Runtime>);

impl OwnRuntime {
    fn get(&self) -> &Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            runtime.shutdown_background();
        }
    }
}

/// An async half driven by a private runtime shared by both halves. The half is declared
/// first, so it is dropped before the runtime that drives it.
struct OverRuntime<H> {
    half: H,
    runtime: Arc<OwnRuntime>,
    mechanism: &'static str,
    /// The address connected to, for errors.
    address: String,
}

impl BlockingSendFrames for OverRuntime<FrameSender> {
    fn send(&mut self, frame: Frame, deadline: Deadline) -> Result<(), TransportError> {
        run_with_deadline(
            self.runtime.get(),
            &self.address,
            deadline.resolve(),
            self.half.send(frame),
        )
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
        let _ = run_with_deadline(
            self.runtime.get(),
            &self.address,
            deadline,
            self.half.close(),
        );
    }
}

impl BlockingReceiveFrames for OverRuntime<FrameReceiver> {
    fn recv(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError> {
        run_with_deadline(
            self.runtime.get(),
            &self.address,
            deadline.resolve(),
            self.half.recv(),
        )
    }

    fn peer_gone(&self) -> bool {
        self.half.peer_gone()
    }
}

impl BlockingConnection {
    /// A blocking connection over an async one: `connect` is called in, and its future runs
    /// (at most `timeout`) on, a private single-threaded runtime, which then drives every send
    /// and receive of the connection it makes, each under its deadline. Refused with
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
        if inside_async_code() {
            return Err(TransportError::InsideRuntime {
                address: address.to_string(),
            });
        }
        let runtime = Arc::new(OwnRuntime(Some(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        )));
        let deadline = Instant::now().checked_add(timeout);
        // In the runtime's context, so what `connect` makes before its future runs (a socket
        // registered with the runtime, a task) belongs to the runtime that drives it.
        let connecting = {
            let _context = runtime.get().enter();
            connect()
        };
        let connection = run_with_deadline(runtime.get(), address.as_str(), deadline, connecting)
            .map_err(|error| match error {
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
                address: address.to_string(),
            }),
            BlockingReceiver::new(OverRuntime {
                runtime,
                half: receiver,
                mechanism,
                address: address.to_string(),
            }),
            peer,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::{Address, Deadline, Frame, Listener, TransportConfig, TransportError};

    const LIMIT: Duration = Duration::from_secs(10);

    fn address(tag: &str) -> Address {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("mem://over-runtime-{tag}-{n}").parse().unwrap()
    }

    fn server_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A server that answers every frame with the same payload, until the client leaves.
    fn echo_server(runtime: &tokio::runtime::Runtime, address: &Address) {
        let config = TransportConfig::default();
        let listener = runtime.block_on(Listener::bind(address, &config)).unwrap();
        runtime.spawn(async move {
            let mut connection = listener.accept().await.unwrap();
            while let Ok(Some(frame)) = connection.recv().await {
                if connection.send(frame).await.is_err() {
                    break;
                }
            }
        });
    }

    fn connect(address: &Address) -> crate::BlockingConnection {
        crate::connect_blocking(address, &TransportConfig::default(), LIMIT).unwrap()
    }

    /// A blocking connection made on a plain thread may end up dropped in async code (handed
    /// back from `spawn_blocking`, say): its private runtime must not panic there.
    #[test]
    fn a_blocking_connection_dropped_inside_a_runtime_does_not_panic() {
        let runtime = server_runtime();
        let address = address("drop");
        echo_server(&runtime, &address);
        let mut connection = connect(&address);
        connection
            .send(Frame::from_payload(b"hi"), Deadline::After(LIMIT))
            .unwrap();
        let echoed = connection.recv(Deadline::After(LIMIT)).unwrap().unwrap();
        assert_eq!(echoed.payload(), b"hi");
        let (sender, receiver, _) = connection.split();
        let dropped = runtime.block_on(async move {
            tokio::spawn(async move {
                drop(sender);
                drop(receiver);
            })
            .await
        });
        assert!(dropped.is_ok(), "dropping panicked: {dropped:?}");
    }

    /// Used inside an async runtime (a blocking stream's iterator dropped in a task sends its
    /// cancel from `Drop`, say), the halves refuse with `InsideRuntime` instead of panicking
    /// ("Cannot start a runtime from within a runtime"); close does nothing there.
    #[test]
    fn used_inside_a_runtime_the_halves_refuse_instead_of_panicking() {
        let runtime = server_runtime();
        let address = address("inside");
        echo_server(&runtime, &address);
        let (mut sender, mut receiver, _) = connect(&address).split();
        let outcome = runtime.block_on(async move {
            tokio::spawn(async move {
                let sent = sender.send(Frame::from_payload(b"x"), Deadline::After(LIMIT));
                let received = receiver.recv(Deadline::After(LIMIT));
                sender.close();
                (sent, received.map(drop))
            })
            .await
        });
        let (sent, received) = outcome.expect("a half panicked inside a runtime");
        assert!(
            matches!(sent, Err(TransportError::InsideRuntime { .. })),
            "{sent:?}"
        );
        assert!(
            matches!(received, Err(TransportError::InsideRuntime { .. })),
            "{received:?}"
        );
    }

    /// A `spawn_blocking` closure may block, so it may make and use such a connection.
    #[test]
    fn made_and_used_in_spawn_blocking() {
        let runtime = server_runtime();
        let address = address("spawn-blocking");
        echo_server(&runtime, &address);
        let echoed = runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                let mut connection = connect(&address);
                connection
                    .send(Frame::from_payload(b"pool"), Deadline::After(LIMIT))
                    .unwrap();
                connection.recv(Deadline::After(LIMIT)).unwrap().unwrap()
            })
            .await
        });
        assert_eq!(echoed.unwrap().payload(), b"pool");
    }

    /// `connect` may make what the connection needs before its future runs (a socket
    /// registered with "the" runtime, a task spawned): it is called inside the private
    /// runtime's context, which then drives all of it.
    #[test]
    fn connect_is_called_inside_the_private_runtime() {
        let runtime = server_runtime();
        let address = address("eager");
        echo_server(&runtime, &address);
        let config = TransportConfig::default();
        let connection = crate::BlockingConnection::over_runtime(&address, LIMIT, || {
            let handle = tokio::runtime::Handle::current();
            let (address, config) = (address.clone(), config.clone());
            let connecting = handle.spawn(async move { crate::connect(&address, &config).await });
            async move { connecting.await.unwrap() }
        });
        let mut connection = connection.unwrap();
        connection
            .send(Frame::from_payload(b"eager"), Deadline::After(LIMIT))
            .unwrap();
        let echoed = connection.recv(Deadline::After(LIMIT)).unwrap().unwrap();
        assert_eq!(echoed.payload(), b"eager");
    }

    /// The two halves of one blocking connection, used from two threads at once: a receive
    /// blocked on one thread does not hold up a send on the other.
    #[test]
    fn halves_work_from_two_threads_at_once() {
        let runtime = server_runtime();
        let address = address("threads");
        echo_server(&runtime, &address);
        let (mut sender, mut receiver, _) = connect(&address).split();
        let receiving = std::thread::spawn(move || {
            (0..50)
                .map(|_| receiver.recv(Deadline::After(LIMIT)))
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..50u8 {
            sender
                .send(Frame::from_payload(&[i]), Deadline::After(LIMIT))
                .unwrap();
        }
        let received = receiving.join().unwrap();
        for (i, frame) in received.into_iter().enumerate() {
            assert_eq!(frame.unwrap().unwrap().payload(), [i as u8]);
        }
    }

    /// A receive gives up at its deadline, and the next one gets what came after.
    #[test]
    fn a_receive_honours_its_deadline_and_resumes() {
        let runtime = server_runtime();
        let address = address("deadline");
        echo_server(&runtime, &address);
        let mut connection = connect(&address);
        let start = Instant::now();
        let outcome = connection.recv(Deadline::After(Duration::from_millis(100)));
        assert!(
            matches!(outcome, Err(TransportError::TimedOut)),
            "{outcome:?}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        connection
            .send(Frame::from_payload(b"late"), Deadline::After(LIMIT))
            .unwrap();
        let frame = connection.recv(Deadline::After(LIMIT)).unwrap().unwrap();
        assert_eq!(frame.payload(), b"late");
    }
}
