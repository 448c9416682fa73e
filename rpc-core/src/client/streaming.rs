//! Streaming calls of the async [`Client`]: a stream of items sent after the request (client
//! streaming), received before the final reply (server streaming), or both.
//!
//! The client's items are sent by a task of their own as the server's credit allows; the
//! server's items reach the [`Streaming`] the call returns through the connection's reader,
//! which holds at most the stream's window of them. Dropping that stream, or the call's
//! future, cancels the call: the server drops its handler and producer.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use tracing::Instrument;

use super::pending::{Finish, Reply, Waiter};
use super::scope::CallScope;
use super::unary::give_up;
use super::{Client, Shared, protocol};
use crate::error::RpcError;
use crate::outbox::Outbox;
use crate::stream::credit::Credit;
use crate::stream::inbox::{Incoming, stream_pair};
use crate::stream::{ItemSource, Streaming, frames};

/// What a streaming call holds until it ends. Dropped before [`end`](Self::end) (the caller
/// gave up, the deadline passed), it forgets the call and tells the server to drop it.
struct CallResources {
    shared: Arc<Shared>,
    method: u32,
    call_id: u64,
    /// The call's place among the server's `max_in_flight`, given back after the `Cancel`.
    place: Option<OwnedSemaphorePermit>,
    /// The task sending the client's items.
    pump: Option<AbortHandle>,
    sent: bool,
    ended: bool,
}

impl CallResources {
    /// The call ended: `abandoned` if its consumer let go first.
    fn end(mut self, abandoned: bool) {
        self.ended = !abandoned;
    }
}

impl Drop for CallResources {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
        if self.ended {
            return;
        }
        give_up(
            &self.shared,
            self.method,
            self.call_id,
            self.sent,
            self.place.take(),
        );
    }
}

/// A streaming call on its way.
struct Started {
    resources: CallResources,
    /// The one reply of a call whose server sends no stream.
    reply: Option<oneshot::Receiver<Reply>>,
    /// The server's items, for a call whose server sends a stream.
    incoming: Option<Incoming>,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
}

impl Client {
    /// Calls method `method` whose argument is a stream (client streaming): sends `args` (the
    /// stream's place in them holds a placeholder), then `items` as the server's credit allows,
    /// and decodes the method's one return value.
    pub async fn call_client_stream<A, T, R>(
        &self,
        method: u32,
        args: &A,
        items: Streaming<T>,
    ) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + Send + 'static,
        R: DeserializeOwned,
    {
        let started = self
            .start(method, args, Some(items.into_source()), false)
            .await?;
        let exceeded = self.exceeded(method, started.timeout);
        let reply = started
            .reply
            .expect("a call without a server stream has one reply");
        let frame = match started.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, reply)
                .await
                .map_err(|_| exceeded)?,
            None => reply.await,
        }
        .unwrap_or_else(|_| Err(RpcError::disconnected("the connection's reader stopped")))?;
        started.resources.end(false);
        protocol::decode_reply(&frame, self.schema(), method, started.timeout)
    }

    /// Calls method `method` whose return value is a stream (server streaming): the items
    /// arrive as the returned stream is read. Dropping it before its end cancels the call.
    pub async fn call_server_stream<A, R>(
        &self,
        method: u32,
        args: &A,
    ) -> Result<Streaming<R>, RpcError>
    where
        A: Serialize + ?Sized,
    {
        let started = self.start(method, args, None, true).await?;
        Ok(self.receive(method, started))
    }

    /// Calls method `method` that takes a stream and returns one (bidirectional): `items` are
    /// sent as the server's credit allows while the returned stream is read.
    pub async fn call_bidi_stream<A, T, R>(
        &self,
        method: u32,
        args: &A,
        items: Streaming<T>,
    ) -> Result<Streaming<R>, RpcError>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let started = self
            .start(method, args, Some(items.into_source()), true)
            .await?;
        Ok(self.receive(method, started))
    }

    fn exceeded(&self, method: u32, timeout: Option<Duration>) -> RpcError {
        RpcError::DeadlineExceeded {
            method: self.schema().method_name(method),
            timeout: timeout.unwrap_or_default(),
        }
    }

    /// The stream of the server's items of a started call.
    fn receive<R>(&self, method: u32, started: Started) -> Streaming<R> {
        let mut incoming = started.incoming.expect("a call with a server stream");
        if let Some(deadline) = started.deadline {
            incoming = incoming.with_deadline(deadline, self.exceeded(method, started.timeout));
        }
        let resources = started.resources;
        let incoming = incoming.on_end(Box::new(move |abandoned| resources.end(abandoned)));
        Streaming::remote(incoming, self.schema().method_name(method))
    }

    /// Sends the request of a streaming call, and starts sending `outbound` after it.
    async fn start<A: Serialize + ?Sized>(
        &self,
        method: u32,
        args: &A,
        outbound: Option<ItemSource>,
        server_stream: bool,
    ) -> Result<Started, RpcError> {
        let timeout = protocol::call_timeout(self.schema(), &self.options, method);
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let shared = &self
            .route
            .session(method, deadline)
            .await
            .map_err(|error| match error {
                RpcError::DeadlineExceeded { method, .. } => RpcError::DeadlineExceeded {
                    method,
                    timeout: timeout.unwrap_or_default(),
                },
                other => other,
            })?;
        let timeout =
            protocol::admit_call(shared.schema, &shared.compatibility, &self.options, method)?;
        let scope = CallScope::new(
            shared.schema,
            method,
            &self.options,
            timeout,
            &shared.connected,
        );
        let span = scope.span.clone();
        scope.finish(
            self.start_in(shared, &scope, method, args, outbound, server_stream)
                .instrument(span)
                .await,
        )
    }

    /// [`Client::start`] within its scope.
    async fn start_in<A: Serialize + ?Sized>(
        &self,
        shared: &Arc<Shared>,
        scope: &CallScope<'_>,
        method: u32,
        args: &A,
        outbound: Option<ItemSource>,
        server_stream: bool,
    ) -> Result<Started, RpcError> {
        let timeout = scope.timeout;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let (call_id, request) = Self::request(shared, scope, method, args)?;
        let acquire = shared.in_flight.clone().acquire_owned();
        let place = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, acquire)
                .await
                .map_err(|_| self.exceeded(method, timeout))?,
            None => acquire.await,
        }
        .map_err(|_| RpcError::disconnected("the client's connection is closing"))?;
        let credit = outbound.as_ref().map(|_| Arc::new(Credit::default()));
        let mut resources = CallResources {
            shared: shared.clone(),
            method,
            call_id,
            place: Some(place),
            pump: None,
            sent: false,
            ended: false,
        };
        let (reply, incoming) = if server_stream {
            let outbox = shared.sender.clone();
            let grant = move |bytes| grant(&outbox, method, call_id, bytes);
            let (inbox, incoming) = stream_pair(Box::new(grant));
            let schema = shared.schema;
            let finish: Finish =
                Box::new(move |frame| protocol::decode_reply::<()>(frame, schema, method, timeout));
            let waiter = Waiter::Stream { inbox, finish };
            shared
                .pending
                .register_waiter(call_id, waiter, credit.clone())?;
            (None, Some(incoming))
        } else {
            let (tx, rx) = oneshot::channel();
            shared
                .pending
                .register_waiter(call_id, Waiter::Once(tx), credit.clone())?;
            (Some(rx), None)
        };
        shared
            .sender
            .send_with(request.len(), |out| request.write(out), false)
            .await
            .map_err(|e| {
                shared.pending.close(&format!("sending failed: {e}"));
                RpcError::disconnected(format_args!("sending failed: {e}"))
            })?;
        resources.sent = true;
        if let (Some(items), Some(credit)) = (outbound, credit) {
            let pump = send_items(
                items,
                shared.sender.clone(),
                credit,
                method,
                call_id,
                shared.send_limit,
            );
            resources.pump = Some(tokio::spawn(pump).abort_handle());
        }
        Ok(Started {
            resources,
            reply,
            incoming,
            timeout,
            deadline,
        })
    }
}

/// Grants the server `bytes` more of call `call_id`'s stream (from a task: the consumer that
/// grants it cannot wait).
fn grant(outbox: &Arc<Outbox>, method: u32, call_id: u64, bytes: u64) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let outbox = outbox.clone();
    runtime.spawn(async move {
        let _ = outbox.send(frames::credit(method, call_id, bytes)).await;
    });
}

/// Sends the client's items of call `call_id` as the server's credit allows, then the stream's
/// end (with why, if the items failed). Stops when the call ends.
async fn send_items(
    mut items: ItemSource,
    outbox: Arc<Outbox>,
    credit: Arc<Credit>,
    method: u32,
    call_id: u64,
    limit: usize,
) {
    let failure = loop {
        if !credit.ready().await {
            return;
        }
        let item = match AssertUnwindSafe(items.next()).catch_unwind().await {
            Err(_panic) => break Some("the client's stream panicked".to_owned()),
            Ok(None) => break None,
            Ok(Some(Err(reason))) => break Some(reason),
            Ok(Some(Ok(item))) => item,
        };
        // Sizing the item runs the user's `Serialize`: a panic there must end the stream (with
        // a `StreamEnd` the server hears) rather than the pump, which would leave the call to
        // its deadline.
        let framed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            frames::item(method, call_id, item, limit)
        }));
        match framed {
            Err(_panic) => break Some("the client's stream item panicked while encoding".into()),
            Ok(Err(error)) => break Some(error.to_string()),
            Ok(Ok((len, write))) => {
                credit.spend(len);
                if outbox.send_with(len, write, false).await.is_err() {
                    return;
                }
            }
        }
    };
    let _ = outbox
        .send(frames::stream_end(method, call_id, failure.as_deref()))
        .await;
}
