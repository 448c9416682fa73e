//! [`Client`]: the untyped async client the generated `{Trait}Client`s wrap.
//!
//! One connection carries many calls at once. A call encodes its request, registers in the
//! [`Pending`] table, sends its request itself (no hop through a writer task) and waits; one
//! reader task per connection hands each reply to its caller by call id, in any order, and one
//! expiry task fails the calls whose deadline came (a call made outside a handler registers no
//! timer of its own; see
//! `unary.rs`). When the connection ends, the reader fails every pending call with
//! [`RpcError::Disconnected`].

mod blocking;
mod blocking_stream;
mod direct;
mod discovery;
mod misuse;
mod options;
mod pending;
pub(crate) mod protocol;
mod reader;
mod reconnect;
mod route;
mod scope;
mod streaming;
mod unary;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_transport::{Address, Connection, TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tracing::Instrument;

pub use blocking::BlockingClient;
pub use options::{CallOptions, ClientOptions};
use pending::Pending;
pub use reconnect::ReconnectPolicy;
use route::Route;
use scope::{CallScope, Connected};

use crate::error::RpcError;
use crate::keepalive;
use crate::outbox::Outbox;
use crate::schema::{Compatibility, ServiceSchema};

/// A connection to a server of one service, shared by every clone.
///
/// Cheap to clone: clones share the connection and carry their own [`CallOptions`].
/// Dropping the last clone closes the connection.
///
/// With a [`ReconnectPolicy`] ([`ClientOptions::reconnect`]) a broken connection is made
/// again, with exponential backoff and jitter, by the calls that follow; with a
/// `dns+tcp://NAME:PORT` or `dns+tls://NAME:PORT` address the client keeps one connection to
/// every replica the name resolves to and spreads calls over them (see [`ClientOptions`]).
#[derive(Clone)]
pub struct Client {
    route: Route,
    options: CallOptions,
}

/// One connection and what its calls share.
pub(crate) struct Shared {
    schema: &'static ServiceSchema,
    /// Which methods the server can serve.
    compatibility: Compatibility,
    sender: Arc<Outbox>,
    pending: Arc<Pending>,
    next_call_id: AtomicU64,
    /// The smaller of our and the server's maximum frame size.
    send_limit: usize,
    /// One permit per call the server admits at once (`max_in_flight` of its `Welcome`): a
    /// call beyond them waits here, within its deadline, instead of being refused with
    /// `TooManyCalls`.
    in_flight: Arc<Semaphore>,
    reader: AbortHandle,
    /// The task that fails calls whose deadline came ([`Pending::expire_calls`]).
    expiry: AbortHandle,
    /// Set where callers read their replies themselves (shared memory).
    direct: Option<Arc<direct::Direct>>,
    /// The transport and the server, for the call spans.
    connected: Connected,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.reader.abort();
        self.expiry.abort();
    }
}

impl Shared {
    /// Whether this connection is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.pending.closed_reason().is_some()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("service", &self.route.schema().name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Parses `address` into an [`Address`], as an [`RpcError`].
pub(crate) fn parse_address(address: &str) -> Result<Address, RpcError> {
    address.parse().map_err(RpcError::Address)
}

impl Client {
    /// Connects to `address` and performs the handshake for `schema`.
    ///
    /// `dns+tcp://NAME:PORT` and `dns+tls://NAME:PORT` connect to every address `NAME`
    /// resolves to (at least one must answer) and balance calls over them.
    pub async fn connect(
        address: &str,
        schema: &'static ServiceSchema,
        options: ClientOptions,
    ) -> Result<Client, RpcError> {
        let call_options = CallOptions::defaults(options.call_timeout);
        let route = if discovery::is_discovery(address) {
            discovery::connect(address, schema, options).await?
        } else {
            let first = Self::dial(address, schema, &options).await?;
            match options.reconnect.clone() {
                None => Route::Fixed(first),
                Some(policy) => Route::reconnecting(address, schema, options, policy, first)?,
            }
        };
        Ok(Client {
            route,
            options: call_options,
        })
    }

    /// One connection to `address` (not a `dns+` one), its handshake done.
    pub(crate) async fn dial(
        address: &str,
        schema: &'static ServiceSchema,
        options: &ClientOptions,
    ) -> Result<Arc<Shared>, RpcError> {
        let parsed = parse_address(address)?;
        let connect_error = |source: TransportError| RpcError::Connect {
            address: address.to_owned(),
            source,
        };
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(options.connect_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        let connection = tokio::time::timeout_at(
            deadline,
            rpc_transport::connect(&parsed, &options.transport),
        )
        .await
        .map_err(|_| connect_error(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))?
        .map_err(|e| match e {
            TransportError::Connect { .. } => RpcError::Connect {
                address: address.to_owned(),
                source: e,
            },
            TransportError::InvalidAddress { .. }
            | TransportError::UnsupportedScheme { .. }
            | TransportError::Unavailable { .. } => RpcError::Address(e),
            other => connect_error(other),
        })?;
        let handshake =
            async { protocol::named_by(Self::open(connection, schema, options).await, address) };
        tokio::time::timeout_at(deadline, handshake)
            .await
            .map_err(|_| RpcError::Connect {
                address: address.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the server did not answer the handshake",
                )
                .into(),
            })?
    }

    /// Spawns `command` as a child serving on its stdin and stdout (`calc-server --listen
    /// stdio`, say) and performs the handshake for `schema`. The child lives as long as the
    /// client: dropping the last clone closes its stdin, and it is reaped (see
    /// [`rpc_transport::spawn`]).
    pub async fn spawn(
        command: std::process::Command,
        schema: &'static ServiceSchema,
        options: ClientOptions,
    ) -> Result<Client, RpcError> {
        let shown = format!("spawn:{}", command.get_program().to_string_lossy());
        let connection = rpc_transport::spawn(command, &options.transport)
            .await
            .map_err(|source| RpcError::Connect {
                address: shown.clone(),
                source,
            })?;
        let timeout = options.connect_timeout;
        tokio::time::timeout(timeout, Self::from_connection(connection, schema, options))
            .await
            .map_err(|_| RpcError::Connect {
                address: shown,
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the child did not answer the handshake",
                )
                .into(),
            })?
    }

    /// Performs the handshake for `schema` on an open connection and starts its reader. The
    /// client lives as long as this one connection (a reconnect policy does not apply).
    pub async fn from_connection(
        connection: Connection,
        schema: &'static ServiceSchema,
        options: ClientOptions,
    ) -> Result<Client, RpcError> {
        let call_options = CallOptions::defaults(options.call_timeout);
        Ok(Client {
            route: Route::Fixed(Self::open(connection, schema, &options).await?),
            options: call_options,
        })
    }

    /// The handshake for `schema` on an open connection; starts its reader.
    async fn open(
        connection: Connection,
        schema: &'static ServiceSchema,
        options: &ClientOptions,
    ) -> Result<Arc<Shared>, RpcError> {
        let (mut sender, mut receiver, peer) = connection.split();
        let transport = sender.mechanism();
        let own_limit = options.transport.max_frame_size;
        let transport_error = |e| protocol::handshake_transport_error(&peer, e);
        sender
            .send(protocol::hello_frame(schema, own_limit)?)
            .await
            .map_err(transport_error)?;
        let reply = receiver
            .recv()
            .await
            .map_err(transport_error)?
            .ok_or_else(|| {
                RpcError::disconnected("the server closed the connection during the handshake")
            })?;
        let agreed = protocol::handshake_reply(&reply, schema, options)?;
        if options.keepalive.is_some() {
            // Tells the server this client answers pings.
            sender
                .send(keepalive::ping_frame(0))
                .await
                .map_err(transport_error)?;
        }
        let pending = Arc::new(Pending::default());
        let sender = Outbox::new(sender, None);
        let dispatcher = reader::Dispatcher::new(pending.clone(), sender.clone());
        let (reader, direct) = match direct::Direct::new(receiver, dispatcher.clone()) {
            Ok((direct, wakeup)) => (
                tokio::spawn(direct::read_replies(
                    direct.clone(),
                    wakeup,
                    options.keepalive,
                )),
                Some(direct),
            ),
            Err(receiver) => (
                tokio::spawn(reader::read_replies(
                    receiver,
                    dispatcher,
                    options.keepalive,
                )),
                None,
            ),
        };
        let reader = reader.abort_handle();
        let expiry = tokio::spawn(pending.clone().expire_calls()).abort_handle();
        Ok(Arc::new(Shared {
            schema,
            compatibility: agreed.compatibility,
            sender,
            pending,
            next_call_id: AtomicU64::new(1),
            send_limit: agreed.send_limit,
            in_flight: Arc::new(Semaphore::new(
                agreed.max_in_flight.min(Semaphore::MAX_PERMITS),
            )),
            reader,
            expiry,
            direct,
            connected: Connected { transport, peer },
        }))
    }

    /// A handle on the same connection whose calls use `options`.
    pub fn with_options(&self, options: CallOptions) -> Client {
        Client {
            route: self.route.clone(),
            options,
        }
    }

    /// A handle on the same connection whose calls time out after `timeout` (`None`: never).
    pub fn with_timeout(&self, timeout: Option<Duration>) -> Client {
        self.with_options(self.options.with_timeout(timeout))
    }

    /// A handle on the same connection whose calls also carry the metadata `key = value`.
    pub fn with_metadata(&self, key: impl Into<String>, value: impl Into<String>) -> Client {
        self.with_options(self.options.with_metadata(key, value))
    }

    /// The options this handle's calls use.
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// The service this client talks to.
    pub fn schema(&self) -> &'static ServiceSchema {
        self.route.schema()
    }

    /// Calls waiting for a reply, on every connection of this client.
    pub fn pending_calls(&self) -> usize {
        self.route
            .live()
            .iter()
            .map(|shared| shared.pending.len())
            .sum()
    }

    /// Whether the connection is gone for good (every further call fails with
    /// `Disconnected`). Never for a client with a reconnect policy or a `dns+` address: its
    /// next calls connect again.
    pub fn is_closed(&self) -> bool {
        match &self.route {
            Route::Fixed(shared) => shared.is_closed(),
            _ => false,
        }
    }

    /// The servers this client has a working connection to now (one, or one per replica).
    pub fn connected_servers(&self) -> usize {
        self.route.live().len()
    }

    /// Whether the server can serve method `method` (by wire id): `Err` says why not. With
    /// no working connection, as the last server said (or `Ok` if none has yet).
    pub fn check_method(&self, method: u32) -> Result<(), RpcError> {
        let Some(shared) = self.route.live().into_iter().next() else {
            return Ok(());
        };
        protocol::admit_call(shared.schema, &shared.compatibility, &self.options, method).map(drop)
    }

    /// Calls the method with wire id `method` with the encoded `args` and decodes its return
    /// value. A method the server cannot serve fails with [`RpcError::IncompatibleMethod`]
    /// before anything is sent.
    ///
    /// The generated clients call this; use it directly only for services without a trait.
    ///
    /// Inside a handler, the call is held to what is left of the served call's deadline and
    /// joins its trace (see [`Context::trace`](crate::Context::trace)).
    ///
    /// With a reconnect policy or a `dns+` address, a call first finds a working connection
    /// (one remade, or a replica's); an `#[rpc(idempotent)]` method that fails because its
    /// connection broke or could not be made is called again, after the policy's backoff,
    /// while its deadline allows. Other methods are never called twice.
    pub async fn call<A, R>(&self, method: u32, args: &A) -> Result<R, RpcError>
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
    {
        match &self.route {
            Route::Fixed(shared) => self.call_on(shared, method, args).await,
            // Boxed as `Send`: the retry's future names the call's lifetimes in a way the
            // compiler cannot prove `Send` for through the caller's `async fn` otherwise.
            routed => {
                let call: std::pin::Pin<Box<dyn Future<Output = Result<R, RpcError>> + Send + '_>> =
                    Box::pin(reconnect::call(self, routed, method, args));
                call.await
            }
        }
    }

    /// [`Client::call`] on connection `shared`.
    pub(crate) async fn call_on<A, R>(
        &self,
        shared: &Arc<Shared>,
        method: u32,
        args: &A,
    ) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
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
        let outcome = if span.is_disabled() {
            self.call_in(shared, &scope, method, args).await
        } else {
            self.call_in(shared, &scope, method, args)
                .instrument(span)
                .await
        };
        scope.finish(outcome)
    }

    /// A new call's id (recorded in its span) and its request, checked against the server's
    /// frame limit.
    fn request<'a, A: Serialize + ?Sized>(
        shared: &Shared,
        scope: &CallScope<'_>,
        method: u32,
        args: &'a A,
    ) -> Result<(u64, crate::wire::Message<'a, A>), RpcError> {
        let call_id = shared.next_call_id.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::record_call_id(&scope.span, call_id);
        let request = protocol::request(
            method,
            call_id,
            &scope.options,
            scope.timeout,
            args,
            shared.send_limit,
        )?;
        Ok((call_id, request))
    }
}
