//! Streaming calls of the [`BlockingClient`]: the calling thread sends the client's items as
//! the server's credit allows and reads the server's items, one frame at a time, holding the
//! connection until the call ends.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use rpc_transport::{Frame, TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::blocking::{Lease, Sent};
use super::{BlockingClient, protocol};
use crate::error::RpcError;
use crate::schema::ServiceSchema;
use crate::stream::blocking::NextFrame;
use crate::stream::{BlockingStreaming, ItemSource, Streaming, block_on, frames};
use crate::wire::{self, Header, Kind, STREAM_WINDOW};

/// How long a `Cancel` or a credit grant may wait to be sent.
const SHORT_SEND: Duration = Duration::from_millis(100);

/// What the next frame of a call is.
enum Event {
    Item(Frame),
    Final(Frame),
}

/// A streaming call in progress on a blocking connection.
struct BlockingCall {
    io: Lease,
    schema: &'static ServiceSchema,
    method: u32,
    call_id: u64,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// The client's items still to send.
    outbound: Option<ItemSource>,
    /// Bytes of items the server lets us send still.
    credit: i64,
    /// Bytes of the server's items read and not yet granted back.
    ungranted: u64,
    send_limit: usize,
    ended: bool,
}

impl BlockingCall {
    fn start<A: Serialize + ?Sized>(
        client: &BlockingClient,
        method: u32,
        args: &A,
        outbound: Option<ItemSource>,
    ) -> Result<BlockingCall, RpcError> {
        let shared = client.shared();
        let scope = client.stream_scope(method)?;
        let _entered = scope.span.enter();
        let timeout = scope.timeout;
        let Sent {
            io,
            call_id,
            deadline,
        } = client.send_request(&scope, method, args)?;
        Ok(BlockingCall {
            io,
            schema: shared.schema,
            method,
            call_id,
            timeout,
            deadline,
            outbound,
            credit: STREAM_WINDOW as i64,
            ungranted: 0,
            send_limit: shared.send_limit,
            ended: false,
        })
    }

    fn exceeded(&self) -> RpcError {
        RpcError::DeadlineExceeded {
            method: self.schema.method_name(self.method),
            timeout: self.timeout.unwrap_or_default(),
        }
    }

    fn send(&mut self, frame: Frame, deadline: Option<Instant>) -> Result<(), RpcError> {
        match self.io.link()?.sender.send(frame, deadline) {
            Ok(()) => Ok(()),
            Err(TransportError::TimedOut) => Err(self.exceeded()),
            Err(error) => Err(self.io.close(format!("sending failed: {error}"))),
        }
    }

    /// Sends the client's items while the server's credit lasts, and the stream's end after
    /// the last.
    fn push(&mut self) -> Result<(), RpcError> {
        while self.credit > 0 {
            let Some(items) = &mut self.outbound else {
                return Ok(());
            };
            let failure = match block_on(AssertUnwindSafe(items.next()).catch_unwind()) {
                Err(_panic) => Some("the client's stream panicked".to_owned()),
                Ok(None) => None,
                Ok(Some(Err(reason))) => Some(reason),
                Ok(Some(Ok(item))) => {
                    let (method, call_id, limit) = (self.method, self.call_id, self.send_limit);
                    let framed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        frames::item(method, call_id, item, limit)
                    }));
                    match framed {
                        Err(_panic) => {
                            Some("the client's stream item panicked while encoding".to_owned())
                        }
                        Ok(Err(error)) => Some(error.to_string()),
                        Ok(Ok((len, write))) => {
                            self.credit -= len as i64;
                            match self.io.link()?.sender.send_with(len, write, self.deadline) {
                                Ok(()) => continue,
                                Err(TransportError::TimedOut) => return Err(self.exceeded()),
                                Err(error) => {
                                    return Err(self.io.close(format!("sending failed: {error}")));
                                }
                            }
                        }
                    }
                }
            };
            self.outbound = None;
            let end = frames::stream_end(self.method, self.call_id, failure.as_deref());
            self.send(end, self.deadline)?;
        }
        Ok(())
    }

    /// Reads on until the next item or the final frame of this call.
    fn next_event(&mut self) -> Result<Event, RpcError> {
        loop {
            self.push()?;
            let frame = match self.io.link()?.receiver.recv(self.deadline) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Err(self.io.close("the server closed the connection".into())),
                Err(TransportError::TimedOut) => {
                    let cancel = protocol::cancel_frame(self.method, self.call_id);
                    if let Ok(link) = self.io.link() {
                        let _ = link.sender.send(cancel, Some(Instant::now() + SHORT_SEND));
                    }
                    self.ended = true;
                    return Err(self.exceeded());
                }
                Err(error) => return Err(self.io.close(format!("receiving failed: {error}"))),
            };
            let parsed = match Header::parse(frame.payload()) {
                Ok(parsed) => parsed,
                Err(error) => {
                    return Err(self
                        .io
                        .close(format!("the server sent a bad frame: {error}")));
                }
            };
            let header = parsed.header;
            if header.kind == Kind::Error && header.call_id == 0 {
                return Err(self
                    .io
                    .close("the server closed the connection after a protocol error".into()));
            }
            if header.call_id != self.call_id {
                // A late frame of an earlier call that was given up: skip it.
                continue;
            }
            match header.kind {
                Kind::StreamItem => {
                    self.ungranted += frame.len() as u64;
                    if self.ungranted >= STREAM_WINDOW / 2 {
                        let bytes = std::mem::take(&mut self.ungranted);
                        let grant = frames::credit(self.method, self.call_id, bytes);
                        self.send(grant, Some(Instant::now() + SHORT_SEND))?;
                    }
                    return Ok(Event::Item(frame));
                }
                Kind::Credit => {
                    let bytes: u64 = wire::decode(parsed.body, "a stream's credit")?;
                    self.credit = self
                        .credit
                        .saturating_add(bytes.min(i64::MAX as u64) as i64);
                }
                Kind::Response | Kind::Error => {
                    self.ended = true;
                    return Ok(Event::Final(frame));
                }
                other => {
                    return Err(self
                        .io
                        .close(format!("the server sent an unexpected {other:?} frame")));
                }
            }
        }
    }
}

impl NextFrame for BlockingCall {
    fn next_frame(&mut self) -> Option<Result<Frame, RpcError>> {
        if self.ended {
            return None;
        }
        match self.next_event() {
            Ok(Event::Item(frame)) => Some(Ok(frame)),
            Ok(Event::Final(frame)) => {
                protocol::decode_reply::<()>(&frame, self.schema, self.method, self.timeout)
                    .err()
                    .map(Err)
            }
            Err(error) => {
                self.ended = true;
                Some(Err(error))
            }
        }
    }
}

impl Drop for BlockingCall {
    fn drop(&mut self) {
        if !self.ended
            && let Ok(link) = self.io.link()
        {
            let cancel = protocol::cancel_frame(self.method, self.call_id);
            let _ = link.sender.send(cancel, Some(Instant::now() + SHORT_SEND));
        }
    }
}

impl BlockingClient {
    /// Calls method `method` whose argument is a stream: sends `args`, then the items of
    /// `items` as the server's credit allows, and decodes the one return value. Blocks the
    /// calling thread (taking items from `items` on it).
    pub fn call_client_stream<A, T, R>(
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
        let mut call = BlockingCall::start(self, method, args, Some(items.into_source()))?;
        match call.next_event()? {
            Event::Final(frame) => {
                protocol::decode_reply(&frame, call.schema, method, call.timeout)
            }
            Event::Item(_) => Err(call.io.close(format!(
                "the server sent a stream item for '{}', which returns one value",
                call.schema.method_name(method)
            ))),
        }
    }

    /// Calls method `method` whose return value is a stream: the items are read from the
    /// connection as the returned iterator is advanced. The connection is this call's until the
    /// iterator ends or is dropped (dropping it early cancels the call).
    pub fn call_server_stream<A, R>(
        &self,
        method: u32,
        args: &A,
    ) -> Result<BlockingStreaming<R>, RpcError>
    where
        A: Serialize + ?Sized,
    {
        let call = BlockingCall::start(self, method, args, None)?;
        let name = call.schema.method_name(method);
        Ok(BlockingStreaming::new(Box::new(call), name))
    }

    /// Calls method `method` that takes a stream and returns one: each step of the returned
    /// iterator first sends the client's items the server's credit allows, then reads.
    pub fn call_bidi_stream<A, T, R>(
        &self,
        method: u32,
        args: &A,
        items: Streaming<T>,
    ) -> Result<BlockingStreaming<R>, RpcError>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + Send + 'static,
    {
        let call = BlockingCall::start(self, method, args, Some(items.into_source()))?;
        let name = call.schema.method_name(method);
        Ok(BlockingStreaming::new(Box::new(call), name))
    }
}
