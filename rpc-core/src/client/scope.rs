//! [`CallScope`]: what a call takes from where it is made. Inside a handler, it inherits the
//! served call's trace and is held to what is left of its deadline; anywhere, it carries a
//! `traceparent` and runs in a `rpc.client` span.

use std::borrow::Cow;
use std::time::Duration;

use rpc_transport::PeerInfo;
use tracing::Span;

use super::CallOptions;
use crate::error::RpcError;
use crate::schema::ServiceSchema;
use crate::telemetry::{self, Link, TRACEPARENT, TraceParent};

/// What a client's calls say about its connection in their spans.
#[derive(Debug)]
pub(crate) struct Connected {
    /// The transport mechanism (`"tcp"`, `"shm"`, ...).
    pub(crate) transport: &'static str,
    /// The server, as the transport knows it.
    pub(crate) peer: PeerInfo,
}

/// One call's timeout, options (with its `traceparent`) and span.
pub(crate) struct CallScope<'a> {
    /// The call's timeout: its own, or what is left of the served call's deadline if sooner.
    pub(crate) timeout: Option<Duration>,
    /// When the call gives up: `timeout` from when the scope was made, and inside a handler
    /// never after the served call's deadline (the very instant the server gives that up).
    pub(crate) deadline: Option<tokio::time::Instant>,
    /// The options to send: the handle's, plus `traceparent` unless the caller set one.
    pub(crate) options: Cow<'a, CallOptions>,
    /// The `rpc.client` span; `call_id` is recorded in it by the caller.
    pub(crate) span: Span,
    /// Whether the call is made inside a handler (and held to the served call's deadline).
    pub(crate) in_handler: bool,
}

impl<'a> CallScope<'a> {
    /// The scope of a call of `method` with `options` and `timeout` (as the handle and the
    /// method's attributes set it).
    pub(crate) fn new(
        schema: &ServiceSchema,
        method: u32,
        options: &'a CallOptions,
        timeout: Option<Duration>,
        connected: &Connected,
    ) -> CallScope<'a> {
        let ambient = crate::server::ambient();
        let in_handler = ambient.is_some();
        let now = std::time::Instant::now();
        let own = timeout.and_then(|limit| now.checked_add(limit));
        let deadline = match ambient.and_then(|served| served.deadline) {
            Some(served) => Some(own.map_or(served, |own| own.min(served))),
            None => own,
        };
        let timeout = match &ambient {
            Some(served) => served.limit(timeout, now),
            None => timeout,
        };
        let span = telemetry::client_span(
            schema,
            method,
            Link {
                transport: connected.transport,
                peer: &connected.peer,
            },
        );
        // Whether a subscriber records it, as its own filter decides (by level, target or
        // name): without one, calls made outside a handler carry no `traceparent`, so an
        // untraced client pays nothing for tracing on the wire.
        let recorded = !span.is_disabled();
        let explicit = options.metadata.iter().find(|(key, _)| key == TRACEPARENT);
        let (trace, options) = match explicit {
            // The caller's own: sent as it is; the span shows it if it parses.
            Some((_, value)) => (value.parse().ok(), Cow::Borrowed(options)),
            // Nobody records spans and no served call's trace goes on: nothing to carry.
            None if ambient.is_none() && !recorded => (None, Cow::Borrowed(options)),
            None => {
                let trace = ambient.map_or_else(TraceParent::new_trace, |a| a.trace.new_span());
                let options = options.with_metadata(TRACEPARENT, trace.to_string());
                (Some(trace), Cow::Owned(options))
            }
        };
        if recorded {
            // Nobody else would see them: ids are made and recorded only for a recorded span.
            let trace = trace.unwrap_or_else(TraceParent::new_trace);
            let parent = ambient.map(|a| a.trace);
            telemetry::record_client_trace(&span, &trace, parent.as_ref());
        }
        CallScope {
            timeout,
            options,
            span,
            deadline: deadline.map(tokio::time::Instant::from_std),
            in_handler,
        }
    }

    /// Logs the call's failure, if it failed, and hands the result on.
    pub(crate) fn finish<T>(&self, result: Result<T, RpcError>) -> Result<T, RpcError> {
        if let Err(error) = &result {
            telemetry::client_failed(&self.span, error);
        }
        result
    }
}
