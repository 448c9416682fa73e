//! A Rust RPC framework in which **a trait is the IDL**.
//!
//! ```ignore
//! #[rpc_core::service]
//! pub trait Calculator {
//!     /// Adds two numbers.
//!     async fn add(&self, a: i64, b: i64) -> i64;
//! }
//! // server: implement the trait with plain `async fn`s, then
//! rpc_core::Server::new().serve(CalculatorServer::new(MyCalc), "unix:///tmp/calc.sock").await?;
//! // client
//! let calc = CalculatorClient::connect("unix:///tmp/calc.sock").await?;
//! assert_eq!(calc.add(2, 3).await?, 5);
//! ```
//!
//! Layout:
//! - [`service`]: the attribute macro (crate `rpc-macros`), generating `{Trait}Client`,
//!   `{Trait}Server` and the schema.
//! - `client/`: [`Client`], the untyped async client (call ids, pending calls, deadlines,
//!   cancellation), [`BlockingClient`] for code without a runtime, [`ClientOptions`] and
//!   [`CallOptions`]; where calls go (`route.rs`: one connection, one made again under a
//!   [`ReconnectPolicy`] (`reconnect.rs`), or the replicas behind a `dns+` name
//!   (`discovery.rs`)).
//! - [`Keepalive`]: pings that find a dead peer behind a half-open connection.
//! - `server/`: [`Server`], [`ServerHandle`], the [`Service`] trait the macro implements, and
//!   [`Context`] for handlers.
//! - `telemetry/`: a `tracing` span per call on each side, the W3C [`TraceParent`] every call
//!   carries as metadata, and what a call made inside a handler inherits (trace, deadline).
//! - [`Bytes`] (`blob.rs`): large arguments and return values without a copy on receipt.
//! - [`wire`]: the frame header, handshake and codec. [`schema`]: service descriptions.
//! - [`transport`]: the `rpc-transport` crate, re-exported.
//! - [`tower`](mod@tower): tower, re-exported, with [`RetryIdempotent`](tower::RetryIdempotent);
//!   every generated async client is a `tower::Service` of its `{Trait}Request` enum.
//!
//! Errors: [`RpcError`] for everything the RPC layer can fail at; an application's own errors
//! travel inside its methods' `Result<T, E>` and are never mixed with these.

mod blob;
mod budget;
mod client;
mod error;
/// Hooks for the fuzz targets in `tests/fuzz`. Not a public API.
#[doc(hidden)]
pub mod fuzzing;
mod keepalive;
mod outbox;
pub mod schema;
mod server;
mod stream;
mod telemetry;
pub mod tower;
pub mod wire;

pub use blob::Bytes;
pub use client::{BlockingClient, CallOptions, Client, ClientOptions, ReconnectPolicy};
pub use error::RpcError;
/// The traits to read a [`Streaming`] with (`next().await`, combinators), re-exported.
pub use futures_util::stream::{Stream, StreamExt};
pub use keepalive::Keepalive;
pub use rpc_macros::service;
pub use rpc_transport as transport;
pub use rpc_transport::{Address, PeerCertificate, PeerInfo, TlsClientSettings, TlsServerSettings};
pub use schema::{MethodSchema, ServiceSchema};
pub use server::{
    Access, Context, DispatchError, HandlerFuture, Reply, Request, Server, ServerConfig,
    ServerHandle, Service,
};
pub use stream::{BlockingStreaming, StreamClosed, StreamSender, Streaming};
pub use telemetry::{TRACEPARENT, TraceParent, TraceParentError};

/// What the `#[service]` macro's expansion names. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use crate::client::{BlockingClient, CallOptions, Client, ClientOptions};
    pub use crate::error::RpcError;
    pub use crate::schema::{MethodDecl, SchemaBuilder, ServiceSchema};
    pub use crate::server::{
        DispatchError, HandlerFuture, Reply, Request, Service, encode_reply, encode_stream_reply,
    };
    pub use crate::stream::{BlockingStreaming, StreamPlaceholder, Streaming};
    pub use crate::tower::{CallFuture, IdempotentRequest};
    pub use ::core::clone::Clone;
    pub use ::core::default::Default;
    pub use ::core::fmt::Debug;
    pub use ::core::fmt::{Formatter, Result as FmtResult};
    pub use ::core::future::Future;
    pub use ::core::marker::{Send, Sized, Sync};
    pub use ::core::mem::drop;
    pub use ::core::option::Option::{self, None, Some};
    pub use ::core::pin::Pin;
    pub use ::core::result::Result::{self, Err, Ok};
    pub use ::core::task::{Context as TaskContext, Poll};
    pub use ::core::time::Duration;
    pub use ::serde_bytes::{ByteBuf, Bytes};
    pub use ::std::boxed::Box;
    pub use ::std::process::Command;
    pub use ::std::string::String;
    pub use ::std::sync::{Arc, OnceLock};
    pub use ::std::vec::Vec;
    pub use ::tower;
    pub use rpc_transport::{BlockingConnection, Connection};

    /// A type that can be an argument or return value of a service method: the generated
    /// items carry `where T: WireType` for each, spanned at the user's type.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot cross the wire: it does not implement serde's `Serialize` and `Deserialize`",
        label = "not a serde type",
        note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to its definition (or use a type that has them)"
    )]
    pub trait WireType: ::serde::Serialize + ::serde::de::DeserializeOwned {}
    impl<T: ::serde::Serialize + ::serde::de::DeserializeOwned> WireType for T {}
}
