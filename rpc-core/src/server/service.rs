//! [`Service`]: what the server dispatches to. The `#[service]` macro implements it for
//! `{Trait}Server`.

use std::future::Future;
use std::pin::Pin;

use rpc_transport::Frame;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::RpcError;
use crate::schema::ServiceSchema;
use crate::stream::inbox::{Incoming, stream_pair};
use crate::stream::{ItemSource, Streaming};
use crate::wire;

/// A running call: decodes its arguments from its [`Request`], runs the handler and resolves to
/// the method's return value, which the server encodes straight into the transport (on shared
/// memory, into the ring), or to why the arguments did not decode.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply, DispatchError>> + Send>>;

/// A received call's frame, owned by the call: handlers borrow `&str` and `&[u8]` arguments
/// straight from it, so a large argument is never copied on the server (on shared memory, a
/// large one stays in the mapped region until the call ends).
pub struct Request {
    frame: Frame,
    body_start: usize,
    /// The client's stream of items, for a method with a `Streaming` argument.
    incoming: Option<Incoming>,
    method: &'static str,
}

impl Request {
    /// The request whose postcard body starts `body_start` bytes into `frame`'s payload.
    pub(crate) fn new(mut frame: Frame, body_start: usize) -> Request {
        debug_assert!(body_start <= frame.len());
        crate::blob::share_large(&mut frame);
        Request {
            frame,
            body_start,
            incoming: None,
            method: "",
        }
    }

    /// Gives the request the client's stream of items, of the call of `method`.
    pub(crate) fn set_incoming(&mut self, incoming: Incoming, method: &'static str) {
        self.incoming = Some(incoming);
        self.method = method;
    }

    /// The client's stream of items, for the handler of a method with a `Streaming` argument
    /// (empty for any other, and when taken twice).
    pub fn take_stream<T>(&mut self) -> Streaming<T> {
        match self.incoming.take() {
            Some(incoming) => Streaming::remote(incoming, self.method),
            None => Streaming::remote(stream_pair(Box::new(|_| {})).1, self.method),
        }
    }

    /// The whole frame's size.
    pub(crate) fn frame_len(&self) -> usize {
        self.frame.len()
    }

    /// The postcard body: the tuple of the arguments.
    pub fn body(&self) -> &[u8] {
        &self.frame.payload()[self.body_start..]
    }

    /// Decodes the arguments, borrowing from the frame where their types borrow; a
    /// [`Bytes`](crate::Bytes) argument is a slice of the frame when it is shared.
    pub fn args<'a, T: Deserialize<'a>>(&'a self) -> Result<T, DispatchError> {
        crate::blob::decoding_from(self.frame.shared_payload(), || {
            wire::decode(self.body(), "the arguments")
        })
        .map_err(|e| DispatchError::BadRequest(e.to_string()))
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("body_len", &self.body().len())
            .finish()
    }
}

/// A method's return value, not yet encoded: one value, or a stream of them.
pub struct Reply(Body);

enum Body {
    Value(Box<dyn ReplyBody>),
    Stream(ItemSource),
}

/// What the server needs of a return value: its encoded size, then its encoding.
trait ReplyBody: Send {
    fn encoded_len(&self) -> Result<usize, postcard::Error>;
    fn encode(&self, out: &mut [u8]) -> Result<usize, postcard::Error>;
}

impl<T: Serialize + Send> ReplyBody for T {
    fn encoded_len(&self) -> Result<usize, postcard::Error> {
        postcard::experimental::serialized_size(self)
    }

    fn encode(&self, out: &mut [u8]) -> Result<usize, postcard::Error> {
        wire::encode_in_place(self, out)
    }
}

impl Reply {
    /// One value.
    pub(crate) fn value<T: Serialize + Send + 'static>(value: T) -> Reply {
        Reply(Body::Value(Box::new(value)))
    }

    /// The items of a streaming method, or the one value of any other.
    pub(crate) fn into_stream(self) -> Result<ItemSource, Reply> {
        match self.0 {
            Body::Stream(items) => Ok(items),
            value => Err(Reply(value)),
        }
    }

    /// Encoded size in bytes (of a single value; a stream's is nothing).
    pub(crate) fn encoded_len(&self) -> Result<usize, RpcError> {
        match &self.0 {
            Body::Value(value) => value
                .encoded_len()
                .map_err(|e| RpcError::encode("the response", e)),
            Body::Stream(_) => Ok(0),
        }
    }

    /// Encodes into `out` (exactly `encoded_len` bytes); false if it did not fit exactly.
    pub(crate) fn encode(&self, out: &mut [u8]) -> bool {
        match &self.0 {
            Body::Value(value) => matches!(value.encode(out), Ok(n) if n == out.len()),
            Body::Stream(_) => out.is_empty(),
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// Why a request could not be dispatched. The server answers it with an error frame and goes
/// on serving the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispatchError {
    /// No method has this id.
    UnknownMethod(u32),
    /// The arguments did not decode.
    BadRequest(String),
}

/// A service the server can dispatch calls to.
///
/// # Implementing
/// Generated by `#[service]`; implement by hand only for a service without a trait. `dispatch`
/// returns a `'static` future that owns the request, decodes its arguments first thing (so a
/// bad request is answered on the future's first poll) and then runs the handler.
pub trait Service: Send + Sync + 'static {
    /// The service's schema, compared with the client's in the handshake.
    fn schema(&self) -> &'static ServiceSchema;

    /// The future of a call of the method with wire id `method`.
    fn dispatch(&self, method: u32, request: Request) -> Result<HandlerFuture, DispatchError>;
}

/// Wraps a method's return value for the server to encode when it sends the response.
pub fn encode_reply<T: Serialize + Send + 'static>(value: T) -> Reply {
    Reply::value(value)
}

/// Wraps a streaming method's items: the server sends them one by one as the client's credit
/// allows, then ends the call.
pub fn encode_stream_reply<T>(items: Streaming<T>) -> Reply
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    Reply(Body::Stream(items.into_source()))
}
