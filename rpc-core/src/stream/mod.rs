//! [`Streaming`]: a stream of items as a method's argument (client streaming), return value
//! (server streaming) or both (bidirectional).
//!
//! In the trait, `Streaming<T>` stands where the items go: `async fn list(&self, prefix:
//! String) -> Streaming<Entry>`; `async fn upload(&self, chunks: Streaming<Vec<u8>>) -> u64`.
//! Whoever produces the items builds one ([`Streaming::from_iter`], [`Streaming::from_stream`],
//! [`Streaming::channel`]); whoever receives them reads it as a
//! [`Stream`](futures_util::Stream) of `Result<T, RpcError>` (the blocking client gets a
//! [`BlockingStreaming`] iterator). A stream ends cleanly (`None`), or with one `Err` (the
//! producer failed, the deadline passed, the connection broke) and then `None`.
//!
//! Items travel one frame each, under per-stream credit ([`STREAM_WINDOW`] bytes): the
//! producer is not polled for another item while its consumer has that much unread, so a slow
//! consumer holds the producer back instead of letting it buffer without bound. Dropping a
//! received stream before its end cancels the call, and the producer with it.
//!
//! [`STREAM_WINDOW`]: crate::wire::STREAM_WINDOW

pub(crate) mod blocking;
pub(crate) mod credit;
pub(crate) mod frames;
pub(crate) mod inbox;
mod sender;

use std::fmt::Display;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use blocking::BlockingStreaming;
pub(crate) use blocking::block_on;
use inbox::Incoming;
pub use sender::{StreamClosed, StreamSender};

use crate::error::RpcError;
use crate::server::Reply;
use crate::wire::{self, Header};

/// Items produced here, before they are sent.
type LocalItems<T> = Pin<Box<dyn Stream<Item = Result<T, String>> + Send>>;

/// Items of a stream, encoded lazily, for the side that sends them.
pub(crate) type ItemSource = Pin<Box<dyn Stream<Item = Result<Reply, String>> + Send>>;

/// A stream of `T`s crossing the connection: see the [module docs](self).
#[must_use = "a stream does nothing unless read (or returned, or passed to a call)"]
pub struct Streaming<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    /// Produced on this side.
    Local(LocalItems<T>),
    /// Received from the peer, for the call of `method`.
    Remote { incoming: Incoming, method: String },
}

impl<T> std::fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Local(_) => f.write_str("Streaming(local)"),
            Inner::Remote { method, .. } => write!(f, "Streaming(from the call of '{method}')"),
        }
    }
}

impl<T: Send + 'static> Streaming<T> {
    /// The items of `stream`, ending cleanly when it ends.
    pub fn from_stream(stream: impl Stream<Item = T> + Send + 'static) -> Self {
        Self::local(Box::pin(stream.map(Ok)))
    }

    /// The items of `stream` until its first `Err`, which ends the stream with that error
    /// (the receiver gets [`RpcError::StreamFailed`] with its text).
    pub fn try_from_stream<E: Display + Send + 'static>(
        stream: impl Stream<Item = Result<T, E>> + Send + 'static,
    ) -> Self {
        let mut failed = false;
        let items = stream
            .take_while(move |item| {
                let go_on = !failed;
                failed = item.is_err();
                std::future::ready(go_on)
            })
            .map(|item| item.map_err(|e| e.to_string()));
        Self::local(Box::pin(items))
    }

    /// The items of `items`, taken one at a time as credit allows. (Not `FromIterator`: the
    /// iterator must be `Send + 'static`, which that trait cannot require.)
    #[allow(clippy::should_implement_trait)]
    pub fn from_iter<I>(items: I) -> Self
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Self::from_stream(futures_util::stream::iter(items))
    }

    /// A stream with no items.
    pub fn empty() -> Self {
        Self::from_iter(std::iter::empty())
    }

    /// A stream fed through a [`StreamSender`], which waits while `capacity` items are
    /// produced and not yet taken (at least 1). The sender learns when the stream's reader is
    /// gone (the call was cancelled): see [`StreamSender::closed`].
    pub fn channel(capacity: usize) -> (StreamSender<T>, Self) {
        let (sender, items) = sender::channel(capacity);
        (sender, Self::local(items))
    }

    fn local(items: LocalItems<T>) -> Self {
        Streaming {
            inner: Inner::Local(items),
        }
    }
}

impl<T> Streaming<T> {
    /// The stream of a call's items received from the peer.
    pub(crate) fn remote(incoming: Incoming, method: impl Into<String>) -> Self {
        Streaming {
            inner: Inner::Remote {
                incoming,
                method: method.into(),
            },
        }
    }

    /// Whether the items come from the peer (rather than being produced on this side).
    pub fn is_remote(&self) -> bool {
        matches!(self.inner, Inner::Remote { .. })
    }
}

impl<T: DeserializeOwned> Stream for Streaming<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // `Streaming` is `Unpin`: its fields are boxed or `Unpin`.
        let this = self.get_mut();
        match &mut this.inner {
            Inner::Local(items) => items.as_mut().poll_next(cx).map(|item| {
                item.map(|item| {
                    item.map_err(|reason| RpcError::StreamFailed {
                        method: "a local stream".to_owned(),
                        reason,
                    })
                })
            }),
            Inner::Remote { incoming, method } => match incoming.poll_item(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let decoded = decode_item(&frame, method);
                    if decoded.is_err() {
                        incoming.fail();
                    }
                    Poll::Ready(Some(decoded))
                }
                Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// An item frame's value.
pub(crate) fn decode_item<T: DeserializeOwned>(
    frame: &rpc_transport::Frame,
    method: &str,
) -> Result<T, RpcError> {
    let parsed = Header::parse(frame.payload())?;
    wire::decode(parsed.body, format_args!("a stream item of '{method}'"))
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Streaming<T> {
    /// The items, type-erased, for the side that sends them.
    pub(crate) fn into_source(self) -> ItemSource {
        match self.inner {
            Inner::Local(items) => Box::pin(items.map(|item| item.map(Reply::value))),
            remote @ Inner::Remote { .. } => Box::pin(
                Streaming { inner: remote }
                    .map(|item| item.map(Reply::value).map_err(|e| e.to_string())),
            ),
        }
    }
}

/// What a generated client puts among the arguments where a `Streaming` argument stands, and
/// what the server decodes there: encoded as the `Streaming` itself. Not a public API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct StreamPlaceholder;

impl Serialize for StreamPlaceholder {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(SCHEMA_NAME, &[] as &[()])
    }
}

impl<'de> Deserialize<'de> for StreamPlaceholder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Streaming::<()>::deserialize(deserializer).map(|_| StreamPlaceholder)
    }
}

/// The newtype name a stream has in a method's schema.
const SCHEMA_NAME: &str = "Streaming";

/// On the wire a stream is a placeholder in the arguments (its items travel in frames of their
/// own): a `Streaming` newtype of an empty sequence, so the schema tells it from a `T`.
impl<T> Serialize for Streaming<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(SCHEMA_NAME, &[] as &[()])
    }
}

impl<'de, T: Deserialize<'de> + Send + 'static> Deserialize<'de> for Streaming<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Send + 'static> serde::de::Visitor<'de> for Items<T> {
            type Value = Streaming<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a stream placeholder")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<Self::Value, D::Error> {
                Vec::<T>::deserialize(deserializer).map(Streaming::from_iter)
            }
        }
        deserializer.deserialize_newtype_struct(SCHEMA_NAME, Items(std::marker::PhantomData))
    }
}
