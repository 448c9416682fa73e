//! [`BlockingClient`]: the untyped client for code without an async runtime. The generated
//! `{Trait}BlockingClient`s wrap it.
//!
//! One call at a time per connection: a call takes the connection, writes its request and reads
//! until its reply, all on the calling thread. On shared memory that thread spins on the reply
//! ring, so a call completes without a syscall or a thread wake-up when the server is busy
//! serving it — the lowest-latency path the framework has. Clones share the connection (calls
//! from several threads take turns); for calls in parallel, open more clients.
//!
//! Where blocking would deadlock (on the thread of a current-thread runtime; `mem://` inside
//! any runtime), connecting and calling fail at once with
//! [`RpcError::BlockingInAsyncContext`], which says what to use instead (see `misuse.rs`).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rpc_transport::{BlockingConnection, BlockingReceiver, BlockingSender, TransportError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::misuse::check_blocking;
use super::protocol;
use super::scope::{CallScope, Connected};
use super::{CallOptions, ClientOptions, parse_address};
use crate::error::RpcError;
use crate::schema::{Compatibility, ServiceSchema};
use crate::wire::{Header, Kind};

/// A blocking connection to a server of one service.
#[derive(Clone)]
pub struct BlockingClient {
    shared: Arc<Shared>,
    options: CallOptions,
}

pub(super) struct Shared {
    pub(super) schema: &'static ServiceSchema,
    /// Which methods the server can serve.
    compatibility: Compatibility,
    /// The connection, while no call holds it (see [`Lease`]), and who waits for it.
    io: Mutex<Slot>,
    /// Signalled when a call gives the connection back while another call waits for it.
    returned: Condvar,
    /// The smaller of our and the server's maximum frame size.
    pub(super) send_limit: usize,
    /// The transport and the server, for the call spans.
    connected: Connected,
    /// Whether the transport drives a runtime of its own (the misuse check).
    own_runtime: bool,
}

/// A call whose request is sent: the connection it holds, its id and its deadline.
pub(super) struct Sent {
    pub(super) io: Lease,
    pub(super) call_id: u64,
    pub(super) deadline: Option<Instant>,
}

/// The connection, held by one call (or one stream) at a time and given back when dropped.
pub(super) struct Lease {
    shared: Arc<Shared>,
    io: Option<Io>,
}

impl std::ops::Deref for Lease {
    type Target = Io;
    fn deref(&self) -> &Io {
        self.io.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Io {
        self.io.as_mut().expect("held until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(io) = self.io.take() {
            let mut slot = self.shared.slot();
            slot.io = Some(io);
            // std's condition variable makes a system call on every notify, waiter or not:
            // the sequential caller (the common case) would pay it on every call.
            if slot.waiters > 0 {
                self.shared.returned.notify_one();
            }
        }
    }
}

/// The connection while no call holds it, and how many calls wait for it.
pub(super) struct Slot {
    io: Option<Io>,
    waiters: usize,
}

impl Shared {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.io.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) struct Io {
    /// The transport's halves; `None` once the connection is closed (see [`Io::close`]).
    link: Option<Link>,
    pub(super) next_call_id: u64,
    /// Set once the connection is gone: why.
    pub(super) closed: Option<String>,
}

/// Both halves of the transport.
pub(super) struct Link {
    pub(super) sender: BlockingSender,
    pub(super) receiver: BlockingReceiver,
}

impl Io {
    /// The transport, while the connection is open; else `Disconnected` with why it closed.
    pub(super) fn link(&mut self) -> Result<&mut Link, RpcError> {
        match (&mut self.link, &self.closed) {
            (Some(link), None) => Ok(link),
            (_, reason) => Err(RpcError::disconnected(
                reason.as_deref().unwrap_or("the connection is closed"),
            )),
        }
    }

    /// Ends the connection for `reason` and gives its transport back at once (descriptors,
    /// mappings, message queues), while the client itself may be held for long after: every
    /// later call fails with `Disconnected` and this reason.
    pub(super) fn close(&mut self, reason: String) -> RpcError {
        if let Some(mut link) = self.link.take() {
            link.sender.close();
        }
        RpcError::disconnected(self.closed.get_or_insert(reason))
    }
}

impl std::fmt::Debug for BlockingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingClient")
            .field("service", &self.shared.schema.name)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl BlockingClient {
    /// Connects to `address` and performs the handshake for `schema`.
    pub fn connect(
        address: &str,
        schema: &'static ServiceSchema,
        options: ClientOptions,
    ) -> Result<BlockingClient, RpcError> {
        if super::discovery::is_discovery(address) {
            return Err(RpcError::Address(TransportError::InvalidAddress {
                address: address.to_owned(),
                reason: format!(
                    "dns+ addresses balance calls over replicas, which only the async client does: use `{}Client`",
                    schema.name
                ),
            }));
        }
        let parsed = parse_address(address)?;
        check_blocking(&schema.name, false)?;
        let connection =
            rpc_transport::connect_blocking(&parsed, &options.transport, options.connect_timeout)
                .map_err(|e| match e {
                TransportError::InsideRuntime { .. } => RpcError::BlockingInAsyncContext {
                    advice: format!("{e}; use the async client `{}Client` there, or this one from a plain std::thread", schema.name),
                },
                TransportError::InvalidAddress { .. }
                | TransportError::UnsupportedScheme { .. }
                | TransportError::Unavailable { .. } => RpcError::Address(e),
                source => RpcError::Connect {
                    address: address.to_owned(),
                    source,
                },
            })?;
        protocol::named_by(Self::from_connection(connection, schema, options), address)
    }

    /// Spawns `command` as a child serving on its stdin and stdout and performs the handshake
    /// for `schema`; see [`Client::spawn`](crate::Client::spawn).
    pub fn spawn(
        command: std::process::Command,
        schema: &'static ServiceSchema,
        options: ClientOptions,
    ) -> Result<BlockingClient, RpcError> {
        check_blocking(&schema.name, false)?;
        let shown = format!("spawn:{}", command.get_program().to_string_lossy());
        let connection =
            rpc_transport::spawn_blocking(command, &options.transport).map_err(|source| {
                RpcError::Connect {
                    address: shown,
                    source,
                }
            })?;
        Self::from_connection(connection, schema, options)
    }

    /// Performs the handshake for `schema` on an open blocking connection.
    pub fn from_connection(
        connection: BlockingConnection,
        schema: &'static ServiceSchema,
        options: ClientOptions,
    ) -> Result<BlockingClient, RpcError> {
        let (mut sender, mut receiver, peer) = connection.split();
        let transport = sender.mechanism();
        let own_runtime = sender.runs_own_runtime();
        check_blocking(&schema.name, own_runtime)?;
        let deadline = Instant::now().checked_add(options.connect_timeout);
        let own_limit = options.transport.max_frame_size;
        let handshake_error = |e: TransportError| match e {
            TransportError::TimedOut => {
                RpcError::disconnected("the server did not answer the handshake in time")
            }
            other => protocol::handshake_transport_error(&peer, other),
        };
        sender
            .send(protocol::hello_frame(schema, own_limit)?, deadline)
            .map_err(handshake_error)?;
        let reply = receiver
            .recv(deadline)
            .map_err(handshake_error)?
            .ok_or_else(|| {
                RpcError::disconnected("the server closed the connection during the handshake")
            })?;
        let agreed = protocol::handshake_reply(&reply, schema, &options)?;
        Ok(BlockingClient {
            shared: Arc::new(Shared {
                schema,
                compatibility: agreed.compatibility,
                io: Mutex::new(Slot {
                    io: Some(Io {
                        link: Some(Link { sender, receiver }),
                        next_call_id: 1,
                        closed: None,
                    }),
                    waiters: 0,
                }),
                returned: Condvar::new(),
                send_limit: agreed.send_limit,
                connected: Connected { transport, peer },
                own_runtime,
            }),
            options: CallOptions::defaults(options.call_timeout),
        })
    }

    /// A handle on the same connection whose calls use `options`.
    pub fn with_options(&self, options: CallOptions) -> BlockingClient {
        BlockingClient {
            shared: self.shared.clone(),
            options,
        }
    }

    /// A handle on the same connection whose calls time out after `timeout` (`None`: never).
    pub fn with_timeout(&self, timeout: Option<Duration>) -> BlockingClient {
        self.with_options(self.options.with_timeout(timeout))
    }

    /// A handle on the same connection whose calls also carry the metadata `key = value`.
    pub fn with_metadata(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> BlockingClient {
        self.with_options(self.options.with_metadata(key, value))
    }

    /// The options this handle's calls use.
    pub fn options(&self) -> &CallOptions {
        &self.options
    }

    /// The service this client talks to.
    pub fn schema(&self) -> &'static ServiceSchema {
        self.shared.schema
    }

    /// Takes the connection for one call (or stream), waiting until `deadline` while another
    /// holds it; `None` once the deadline has passed.
    pub(super) fn lease(&self, deadline: Option<Instant>) -> Option<Lease> {
        let mut slot = self.shared.slot();
        loop {
            if let Some(io) = slot.io.take() {
                return Some(Lease {
                    shared: self.shared.clone(),
                    io: Some(io),
                });
            }
            let left = match deadline {
                None => None,
                Some(deadline) => Some(deadline.checked_duration_since(Instant::now())?),
            };
            slot.waiters += 1;
            slot = match left {
                None => self
                    .shared
                    .returned
                    .wait(slot)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    self.shared
                        .returned
                        .wait_timeout(slot, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            slot.waiters -= 1;
        }
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A streaming call's timeout and scope, after the same checks as [`call`](Self::call)'s.
    pub(super) fn stream_scope(&self, method: u32) -> Result<CallScope<'_>, RpcError> {
        let schema = self.shared.schema;
        check_blocking(&schema.name, self.shared.own_runtime)?;
        let timeout =
            protocol::admit_call(schema, &self.shared.compatibility, &self.options, method)?;
        Ok(CallScope::new(
            schema,
            method,
            &self.options,
            timeout,
            &self.shared.connected,
        ))
    }

    /// Whether the connection is gone (every further call fails with `Disconnected`).
    pub fn is_closed(&self) -> bool {
        self.shared
            .slot()
            .io
            .as_ref()
            .is_some_and(|io| io.closed.is_some())
    }

    /// Whether the server can serve method `method` (by wire id): `Err` says why not.
    pub fn check_method(&self, method: u32) -> Result<(), RpcError> {
        protocol::admit_call(
            self.shared.schema,
            &self.shared.compatibility,
            &self.options,
            method,
        )
        .map(drop)
    }

    /// Calls the method with wire id `method` with the encoded `args` and decodes its return
    /// value, blocking the calling thread. A method the server cannot serve fails with
    /// [`RpcError::IncompatibleMethod`] before anything is sent.
    ///
    /// Where blocking would deadlock, it fails at once with
    /// [`RpcError::BlockingInAsyncContext`]. Inside a handler (on a multi-thread runtime), the
    /// call is held to what is left of the served call's deadline and joins its trace.
    pub fn call<A, R>(&self, method: u32, args: &A) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let schema = self.shared.schema;
        check_blocking(&schema.name, self.shared.own_runtime)?;
        let timeout =
            protocol::admit_call(schema, &self.shared.compatibility, &self.options, method)?;
        let scope = CallScope::new(
            schema,
            method,
            &self.options,
            timeout,
            &self.shared.connected,
        );
        // A span nobody records is not worth entering (as the async client does not).
        let _entered = (!scope.span.is_disabled()).then(|| scope.span.enter());
        scope.finish(self.call_in(&scope, method, args))
    }

    /// Takes the connection (within the call's deadline) and sends the request of a call of
    /// `method` within `scope`: what the call then reads with.
    pub(super) fn send_request<A: Serialize + ?Sized>(
        &self,
        scope: &CallScope<'_>,
        method: u32,
        args: &A,
    ) -> Result<Sent, RpcError> {
        let timeout = scope.timeout;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let exceeded = || RpcError::DeadlineExceeded {
            method: self.shared.schema.method_name(method),
            timeout: timeout.unwrap_or_default(),
        };
        let mut io = self.lease(deadline).ok_or_else(exceeded)?;
        io.link()?;
        let call_id = io.next_call_id;
        io.next_call_id += 1;
        crate::telemetry::record_call_id(&scope.span, call_id);
        let request = protocol::request(
            method,
            call_id,
            &scope.options,
            timeout,
            args,
            self.shared.send_limit,
        )?;
        match io
            .link()?
            .sender
            .send_with(request.len(), |out| request.write(out), deadline)
        {
            Ok(()) => Ok(Sent {
                io,
                call_id,
                deadline,
            }),
            Err(TransportError::TimedOut) => Err(exceeded()),
            Err(error) => Err(io.close(format!("sending failed: {error}"))),
        }
    }

    /// [`BlockingClient::call`] within its scope.
    fn call_in<A, R>(&self, scope: &CallScope<'_>, method: u32, args: &A) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let schema = self.shared.schema;
        let timeout = scope.timeout;
        let exceeded = || RpcError::DeadlineExceeded {
            method: schema.method_name(method),
            timeout: timeout.unwrap_or_default(),
        };
        let Sent {
            mut io,
            call_id,
            deadline,
        } = self.send_request(scope, method, args)?;
        loop {
            let frame = match io.link()?.receiver.recv(deadline) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Err(io.close("the server closed the connection".into())),
                Err(TransportError::TimedOut) => {
                    let cancel = protocol::cancel_frame(method, call_id);
                    let _ = io
                        .link()?
                        .sender
                        .send(cancel, Some(Instant::now() + Duration::from_millis(10)));
                    return Err(exceeded());
                }
                Err(error) => return Err(io.close(format!("receiving failed: {error}"))),
            };
            let header = match Header::parse(frame.payload()) {
                Ok(parsed) => parsed.header,
                Err(error) => return Err(io.close(format!("the server sent a bad frame: {error}"))),
            };
            if header.call_id == call_id {
                return protocol::decode_owned_reply(frame, schema, method, timeout);
            }
            if header.kind == Kind::Error && header.call_id == 0 {
                return Err(
                    io.close("the server closed the connection after a protocol error".into())
                );
            }
            // A late reply to an earlier call that timed out: skip it.
        }
    }
}
