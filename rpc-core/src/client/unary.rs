//! A plain call's exchange on one connection: a place among the server's calls in flight,
//! its request sent, its reply awaited until its deadline, and the server told to drop a call
//! that was given up.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::scope::CallScope;
use super::{Client, Shared, direct, misuse, pending, protocol};
use crate::error::RpcError;
use crate::wire::Message;

impl Client {
    /// [`Client::call`] within its scope.
    pub(super) async fn call_in<A, R>(
        &self,
        shared: &Shared,
        scope: &CallScope<'_>,
        method: u32,
        args: &A,
    ) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let timeout = scope.timeout;
        let (call_id, request) = Self::request(shared, scope, method, args)?;
        let deadline = scope.deadline;
        let frame = if scope.in_handler {
            // Held to the served call's deadline: the server drops the handler at that very
            // deadline, so the call's own timer, polled in the handler's task, must tell it
            // first (the expiry task might run too late for the handler to see it).
            let exchange = exchange(shared, method, call_id, &request, timeout, (deadline, None));
            within(deadline, exchange)
                .await
                .unwrap_or_else(|| Err(deadline_exceeded(shared, method, timeout)))?
        } else {
            exchange(
                shared,
                method,
                call_id,
                &request,
                timeout,
                (deadline, deadline),
            )
            .await?
        };
        protocol::decode_owned_reply(frame, shared.schema, method, timeout)
    }
}

/// What a call whose deadline came fails with.
fn deadline_exceeded(shared: &Shared, method: u32, timeout: Option<Duration>) -> RpcError {
    RpcError::DeadlineExceeded {
        method: shared.schema.method_name(method),
        timeout: timeout.unwrap_or_default(),
    }
}

/// A plain call's exchange: a place among the server's calls, the request sent, the reply
/// frame. Waits for a place end at `deadline`; the wait for the reply ends at `expires`, when
/// the connection's expiry task fails the call (`None`: the caller keeps a timer of its own).
async fn exchange<A: Serialize + ?Sized>(
    shared: &Shared,
    method: u32,
    call_id: u64,
    request: &Message<'_, A>,
    timeout: Option<Duration>,
    (deadline, expires): (Option<Instant>, Option<Instant>),
) -> pending::Reply {
    let deadline_exceeded = || deadline_exceeded(shared, method, timeout);
    // The server's limit: wait for a place (within the deadline) rather than be refused.
    // Until the call is registered, a wait is bounded by a timer of its own; from then on
    // the connection's expiry task fails the call at `expires` (`Pending::expire_calls`),
    // which costs a call no timer.
    // The place is awaited, not tried: the acquire counts against tokio's cooperative
    // budget, so a caller whose calls all end at once (shared memory) still lets its
    // runtime run other tasks every 128 calls. Without it, sequential shm calls' p99 went
    // from 2.3 to 9 µs (the reader task and the caller share the client's CPU).
    let acquire = shared.in_flight.clone().acquire_owned();
    tokio::pin!(acquire);
    let place = match direct::poll_once(&mut acquire).await {
        std::task::Poll::Ready(place) => place,
        std::task::Poll::Pending => within(deadline, acquire)
            .await
            .ok_or_else(deadline_exceeded)?,
    }
    .map_err(|_| RpcError::disconnected("the client's connection is closing"))?;
    let mut reply = shared.pending.register(call_id, expires)?;
    let mut guard = CallGuard {
        shared,
        method,
        call_id,
        sent: false,
        done: false,
        place: Some(place),
    };
    // With other calls in flight, more requests are about to go: write them together.
    let linger = shared.pending.len() > 1;
    // Where callers read their replies themselves, take the receiver before sending,
    // so the reply does not wake the reader task. Only a call alone in flight does,
    // and only while no other caller's reply waits to be taken: with others in flight
    // (or their tasks woken and about to call again) the reader task hands replies
    // out while callers' tasks keep sending, and a spinning caller would hold its
    // worker from them.
    let mut turn = match &shared.direct {
        Some(direct) if !linger && shared.pending.unclaimed() == 0 => direct.turn(),
        _ => None,
    };
    let send = shared
        .sender
        .send_with(request.len(), |out| request.write(out), linger);
    tokio::pin!(send);
    // From its first poll the request may be on its way: written into the stream's buffer or
    // queued, it goes out even if this call is given up meanwhile (the outbox's writer hands
    // its duty on). So a call given up from here on tells the server to drop it, and keeps its
    // place until that is sent; a `Cancel` for a request that never left is ignored.
    guard.sent = true;
    let mut sent_at_once = None;
    if turn.is_some() {
        match direct::poll_once(&mut send).await {
            std::task::Poll::Ready(sent) => sent_at_once = Some(sent),
            // The write waits (a full ring): the reader task must be free to read
            // meanwhile, or the server, blocked writing to us, never takes it.
            std::task::Poll::Pending => turn = None,
        }
    }
    // A write can wait for ever on a dead peer whose buffers are full: when the reader
    // gives the connection up meanwhile (the keepalive lapsed), or the deadline comes,
    // so does this call.
    let sent = if let Some(sent) = sent_at_once {
        sent
    } else {
        tokio::select! {
            biased;
            sent = &mut send => sent,
            early = &mut reply => {
                let early = early.unwrap_or_else(|_| {
                    Err(RpcError::disconnected("the connection's reader stopped"))
                });
                if early.is_ok() {
                    // The reply came while this task still writes other calls' requests
                    // (it is the outbox's writer): they must not be cut short.
                    let _ = within(deadline, send).await;
                }
                return guard.finish(early, deadline_exceeded);
            }
        }
    };
    sent.map_err(|e| {
        if misuse::is_runtime_shutdown(&e) {
            shared.pending.close_runtime_gone();
            return RpcError::RuntimeShutDown;
        }
        shared.pending.close(&format!("sending failed: {e}"));
        RpcError::disconnected(format_args!("sending failed: {e}"))
    })?;
    let read_here = match turn {
        Some(turn) => turn.wait(&mut reply).await,
        None => Err(None),
    };
    let frame = match read_here {
        Ok(frame) => frame,
        Err(late) => {
            let frame = reply
                .await
                .unwrap_or_else(|_| Err(RpcError::disconnected("the connection's reader stopped")));
            // Only a reply tells when it came: a call that failed meanwhile (the
            // connection ended) says nothing about spinning.
            if let Some(late) = late
                && frame.is_ok()
            {
                late.came();
            }
            frame
        }
    };
    guard.finish(frame, deadline_exceeded)
}

/// `wait`'s outcome, or `None` if `deadline` came first.
async fn within<F: Future>(deadline: Option<Instant>, wait: F) -> Option<F::Output> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, wait).await.ok(),
        None => Some(wait.await),
    }
}

/// Cleans up after a call that was given up (timed out or its future dropped): forgets it and
/// tells the server to drop its handler.
struct CallGuard<'a> {
    shared: &'a Shared,
    method: u32,
    call_id: u64,
    sent: bool,
    done: bool,
    /// The call's place among the server's `max_in_flight`: given back once the server is
    /// told to drop a call it may still run, so the next call does not overtake the `Cancel`.
    place: Option<OwnedSemaphorePermit>,
}

impl CallGuard<'_> {
    /// The call's outcome, `reply`. A call whose deadline came (see [`pending::is_expiry`])
    /// is given up, as one whose future is dropped: the server is told to drop it.
    fn finish(
        mut self,
        reply: pending::Reply,
        deadline_exceeded: impl FnOnce() -> RpcError,
    ) -> pending::Reply {
        match reply {
            Err(error) if pending::is_expiry(&error) => Err(deadline_exceeded()),
            reply => {
                self.done = true;
                reply
            }
        }
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        give_up(
            self.shared,
            self.method,
            self.call_id,
            self.sent,
            self.place.take(),
        );
    }
}

/// Forgets call `call_id` that was given up and, if its request was sent, tells the server to
/// drop it; its `place` among the server's calls is given back once the `Cancel` is sent, so
/// the next call does not overtake it.
pub(super) fn give_up(
    shared: &Shared,
    method: u32,
    call_id: u64,
    sent: bool,
    place: Option<OwnedSemaphorePermit>,
) {
    shared.pending.forget(call_id);
    if !sent {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let sender = shared.sender.clone();
    let frame = protocol::cancel_frame(method, call_id);
    runtime.spawn(async move {
        let _ = sender.send(frame).await;
        drop(place);
    });
}
