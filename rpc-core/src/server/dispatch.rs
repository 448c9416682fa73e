//! From a received frame to a running call: classification, limits, dispatch, and the future
//! that produces the reply frame (context, panic catching, deadline, size check).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use rpc_transport::{Frame, PeerInfo};

use super::calls::Calls;
use super::handling::{CallIds, Handling, Items, wire_error};
use super::reply::{ReplySink, error_frame};
use super::streaming;
use super::{Context, Reply, Request, ServerConfig, Service};
use crate::schema::MethodSchema;
use crate::stream::credit::Credit;
use crate::stream::inbox::{Inbox, stream_pair};
use crate::telemetry::Served;
use crate::wire::{self, Extension, HEADER_LEN, Header, Kind, Parsed, WireError};

/// A call in progress: resolves to its answer.
pub(crate) type ReplyFuture = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// What goes back to the client for a call.
pub(crate) enum Answer {
    /// A frame built already (an error).
    Frame(Frame),
    /// A return value, to be encoded straight into the transport.
    Response {
        method: u32,
        call_id: u64,
        body: Reply,
    },
    /// One item of a streaming call, likewise.
    Item {
        method: u32,
        call_id: u64,
        body: Reply,
    },
}

/// An answer ready for the transport: a whole frame, or one to write in place.
pub(crate) enum Outgoing {
    Frame(Frame),
    InPlace {
        len: usize,
        header: Header,
        body: Reply,
    },
}

impl Answer {
    /// Sizes the answer for a client that accepts frames of `peer_limit` bytes; a response
    /// that cannot be encoded, or would be too large, becomes the error saying so.
    pub(crate) fn outgoing(self, peer_limit: usize) -> Outgoing {
        let (kind, method, call_id, body) = match self {
            Answer::Frame(frame) => return Outgoing::Frame(frame),
            Answer::Response {
                method,
                call_id,
                body,
            } => (Kind::Response, method, call_id, body),
            Answer::Item {
                method,
                call_id,
                body,
            } => (Kind::StreamItem, method, call_id, body),
        };
        let error = |e: WireError| Outgoing::Frame(error_frame(method, call_id, &e));
        match body.encoded_len() {
            Err(e) => error(WireError::EncodeFailed(e.to_string())),
            Ok(len) if HEADER_LEN + len > peer_limit => error(WireError::ResponseTooLarge {
                size: (HEADER_LEN + len) as u64,
                limit: peer_limit as u64,
            }),
            Ok(len) => Outgoing::InPlace {
                len: HEADER_LEN + len,
                header: Header {
                    kind,
                    method,
                    call_id,
                },
                body,
            },
        }
    }
}

impl Outgoing {
    /// The answer's size on the wire.
    pub(crate) fn len(&self) -> usize {
        match self {
            Outgoing::Frame(frame) => frame.len(),
            Outgoing::InPlace { len, .. } => *len,
        }
    }

    /// Writes an in-place answer into `out` (exactly `len` bytes). A body that encodes to
    /// another size than it was measured at zeroes the frame kind: the client then rejects
    /// the frame as a protocol violation instead of misreading it.
    pub(crate) fn write(header: &Header, body: &Reply, out: &mut [u8]) {
        header.write(out, false);
        if !body.encode(&mut out[HEADER_LEN..]) {
            out[0] = 0;
        }
    }
}

/// A call as received: its header and extension, and the request that owns its frame.
pub(crate) struct Call {
    header: Header,
    extension: Option<Extension>,
    request: Request,
}

impl Call {
    /// The call's method and call id.
    pub(crate) fn ids(&self) -> (u32, u64) {
        (self.header.method, self.header.call_id)
    }
}

/// What a frame received after the handshake asks for. Built and taken apart at once on the
/// read loop's stack, so the size of `Call` costs nothing a box would save.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Incoming {
    /// Start a call.
    Call(Call),
    /// Abort call `0`.
    Cancel(u64),
    /// An item of the client's stream of call `0`.
    Item(u64, Frame),
    /// The client's stream of call `0` ended (with why, if it failed).
    End(u64, Option<String>),
    /// The client may be sent this many more bytes of call `0`'s stream.
    Credit(u64, u64),
    /// The client asks whether we are alive: answer [`Kind::Pong`] with this nonce.
    Ping(u64),
    /// The client answered a ping.
    Pong,
    /// The client broke the protocol: end the connection with this reason.
    Violation(String),
}

pub(crate) fn classify(frame: Frame) -> Incoming {
    let parsed = match Header::parse(frame.payload()) {
        Err(error) => return Incoming::Violation(error.to_string()),
        Ok(parsed) => parsed,
    };
    let call_id = parsed.header.call_id;
    match parsed.header.kind {
        Kind::Request => {
            let Parsed {
                header,
                extension,
                body,
            } = parsed;
            let body_start = frame.len() - body.len();
            Incoming::Call(Call {
                header,
                extension,
                request: Request::new(frame, body_start),
            })
        }
        Kind::Cancel => Incoming::Cancel(call_id),
        Kind::StreamItem => Incoming::Item(call_id, frame),
        Kind::StreamEnd => match wire::decode::<Option<String>>(parsed.body, "a stream's end") {
            Ok(reason) => Incoming::End(call_id, reason),
            Err(error) => Incoming::Violation(error.to_string()),
        },
        Kind::Credit => match wire::decode::<u64>(parsed.body, "a stream's credit") {
            Ok(bytes) => Incoming::Credit(call_id, bytes),
            Err(error) => Incoming::Violation(error.to_string()),
        },
        Kind::Ping => Incoming::Ping(call_id),
        Kind::Pong => Incoming::Pong,
        other => Incoming::Violation(format!("unexpected {other:?} frame after the handshake")),
    }
}

/// What every call on a connection shares.
pub(crate) struct CallEnv {
    pub(crate) service: Arc<dyn Service>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) peer: Arc<PeerInfo>,
    /// The transport mechanism, for the call spans (`"tcp"`, `"shm"`, ...).
    pub(crate) transport: &'static str,
    /// The methods this connection's client may call, sorted by id (see the handshake).
    pub(crate) callable: Vec<(u32, &'static MethodSchema)>,
}

impl CallEnv {
    /// Method `id`, if this connection's client may call it; else the error to answer.
    fn method(&self, id: u32) -> Result<&'static MethodSchema, WireError> {
        match self.callable.binary_search_by_key(&id, |(id, _)| *id) {
            Ok(at) => Ok(self.callable[at].1),
            Err(_) if self.service.schema().method(id).is_some() => Err(WireError::Incompatible),
            Err(_) => Err(WireError::UnknownMethod),
        }
    }
}

/// A call ready to run: in place first, as a task if it must wait.
pub(crate) struct Prepared {
    pub(crate) call_id: u64,
    /// The method's wire id, for a refusal of the call after all (the server stops).
    pub(crate) method: u32,
    /// The request frame's size.
    pub(crate) size: usize,
    /// How the call runs to its final answer (a streaming call sends its items on the way).
    pub(crate) run: Run,
    pub(crate) streams: CallStreams,
    /// Set once the call is registered before its inline poll (see `Calls::register_streams`).
    pub(crate) registered: Option<super::calls::Registered>,
}

/// How a prepared call runs. Not boxed: a call lives on the read loop's stack until it
/// finishes or becomes a task, and sparing that allocation is the point.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Run {
    /// A call that returns one value: its handler, polled at most once in place (see
    /// [`Handling::poll_first`]).
    Handler(Handling),
    /// The future of the answer.
    Future(ReplyFuture),
}

impl Run {
    /// The future of the call's answer, for a task.
    pub(crate) fn into_future(self) -> ReplyFuture {
        match self {
            Run::Handler(handling) => handling.into_future(),
            Run::Future(reply) => reply,
        }
    }
}

impl Prepared {
    /// The refusal to send instead of running the call: the server stops gracefully.
    pub(crate) fn shutting_down(&self) -> Answer {
        Answer::Frame(error_frame(
            self.method,
            self.call_id,
            &WireError::ShuttingDown,
        ))
    }

    /// Polls the call once, in place, with `cx` (the inline poll's no-op waker): its answer
    /// if it finished; a call left waiting goes on as a task ([`Run::into_future`]).
    pub(crate) fn poll_inline(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Answer> {
        match &mut self.run {
            Run::Handler(handling) => handling.poll_first(cx),
            Run::Future(reply) => reply.as_mut().poll(cx),
        }
    }

    /// The call's streams, leaving none behind.
    pub(crate) fn take_streams(&mut self) -> CallStreams {
        let method = self.streams.method;
        std::mem::replace(
            &mut self.streams,
            CallStreams {
                method,
                inbox: None,
                credit: None,
            },
        )
    }
}

impl CallStreams {
    /// Whether the call has no stream (it may be polled inline).
    pub(crate) fn is_empty(&self) -> bool {
        self.inbox.is_none() && self.credit.is_none()
    }
}

/// The streams of one call, for the connection's read loop to feed.
pub(crate) struct CallStreams {
    /// The method's name, for errors.
    pub(crate) method: &'static str,
    /// Where the client's items go (a method with a `Streaming` argument).
    pub(crate) inbox: Option<Inbox>,
    /// The credit of the items the server sends (a method returning a `Streaming`).
    pub(crate) credit: Option<Arc<Credit>>,
}

/// Starts a call: the future of its answer, or `Err(error frame)` to send at once (unknown
/// method, undecodable arguments, too many calls in flight). A streaming call sends its items
/// through `sink`.
pub(crate) fn prepare_call(
    env: &CallEnv,
    running: &Calls,
    call: Call,
    sink: &ReplySink,
) -> Result<Prepared, Frame> {
    let Header {
        method, call_id, ..
    } = call.header;
    let refuse = |error: WireError| error_frame(method, call_id, &error);
    let schema = env.method(method).map_err(refuse)?;
    running
        .admit(call_id, env.config.max_in_flight)
        .map_err(refuse)?;
    let mut request = call.request;
    let size = request.frame_len();
    let mut streams = CallStreams {
        method: &schema.name,
        inbox: None,
        credit: None,
    };
    if schema.client_stream {
        let sink = sink.clone();
        let grant = move |bytes| streaming::grant(&sink, method, call_id, bytes);
        let (inbox, incoming) = stream_pair(Box::new(grant));
        request.set_incoming(incoming, &schema.name);
        streams.inbox = Some(inbox);
    }
    if schema.server_stream {
        streams.credit = Some(Arc::default());
    }
    let handler = env
        .service
        .dispatch(method, request)
        .map_err(|error| refuse(wire_error(error)))?;
    let extension = call.extension.unwrap_or_default();
    // The caller's deadline, else the method's own default.
    let timeout = match extension.timeout_micros {
        Some(micros) => Some(Duration::from_micros(micros)),
        None => schema.own_timeout().flatten(),
    };
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let service = &env.service.schema().name;
    let served = Served::new(
        (service, &schema.name, call_id),
        (env.transport, &env.peer),
        &extension.metadata,
        deadline,
    );
    let context = Context {
        call_id,
        method: &schema.name,
        metadata: extension.metadata,
        deadline,
        peer: env.peer.clone(),
        trace_parent: served.parent,
        trace: served.ambient.trace,
    };
    let items = streams.credit.clone().map(|credit| Items {
        credit,
        sink: sink.clone(),
    });
    let streaming = items.is_some() || streams.inbox.is_some();
    let handling = Handling {
        handler,
        context: Some(context),
        span: served.span,
        deadline,
        ids: CallIds {
            service,
            name: &schema.name,
            method,
            call_id,
        },
        items,
    };
    Ok(Prepared {
        call_id,
        method,
        size,
        // A streaming call's future is built at once: it sends items, and its stream's frames
        // may arrive before it first waits.
        run: if streaming {
            Run::Future(handling.into_future())
        } else {
            Run::Handler(handling)
        },
        streams,
        registered: None,
    })
}
