//! The call spans: `rpc.client` around a client's call, `rpc.server` around a handler (the
//! span it runs in), and how each side logs a failure, once, at a level that fits.
//!
//! Both are DEBUG spans, as tower-http's `TraceLayer` makes its request spans: a subscriber
//! that records INFO and above (the usual default for a service's log) does not build them.
//! Building one costs that subscriber more than the call itself: a default `fmt` subscriber
//! formats every field of a span when it opens, which cut a server's calls per second to
//! 0.4-0.7 of what it serves with the span off (32 calls in flight). Enable them with a filter
//! such as `rpc_core::telemetry::spans=debug` (or the filter of an OpenTelemetry layer).
//!
//! Fields of both: `service`, `method`, `call_id`, `transport` (the mechanism: `tcp`, `unix`,
//! `shm`, ...), `peer`, `trace_id` and `span_id`; `parent_span_id` is the span that made the
//! call (on the server, the client's; on a client inside a handler, the handler's).

use rpc_transport::PeerInfo;
use tracing::Span;
use tracing::field::Empty;

use super::TraceParent;
use super::traceparent::Hex;
use crate::error::RpcError;
use crate::schema::ServiceSchema;
use crate::wire::WireError;

/// The level of both call spans (see the module docs).
pub(crate) const CALL_SPAN_LEVEL: tracing::Level = tracing::Level::DEBUG;

/// What a call span says about the connection.
pub(crate) struct Link<'a> {
    /// The transport mechanism.
    pub(crate) transport: &'static str,
    /// The other side, as the transport knows it.
    pub(crate) peer: &'a PeerInfo,
}

/// The span of a client's call of `method`; its trace fields are recorded by
/// [`record_client_trace`] once the call knows it is traced, `call_id` once known.
pub(crate) fn client_span(schema: &ServiceSchema, method: u32, link: Link<'_>) -> Span {
    tracing::span!(
        CALL_SPAN_LEVEL,
        "rpc.client",
        service = %schema.name,
        method = %schema.method_label(method),
        call_id = Empty,
        transport = link.transport,
        peer = ?link.peer,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
    )
}

/// Records a call's id in its client span, if anyone records the span.
pub(crate) fn record_call_id(span: &Span, call_id: u64) {
    // A disabled span would still hand the value to `tracing`'s `log` bridge (when some crate
    // enables it) for nothing: about as much work as the rest of a shared-memory call's span.
    if !span.is_disabled() {
        span.record("call_id", call_id);
    }
}

/// Records a client span's trace: `trace` carries its span id, `parent` the span of the
/// handler it is made in, if any.
pub(crate) fn record_client_trace(span: &Span, trace: &TraceParent, parent: Option<&TraceParent>) {
    span.record("trace_id", tracing::field::display(Hex(&trace.trace_id)));
    span.record("span_id", tracing::field::display(Hex(&trace.span_id)));
    if let Some(parent) = parent {
        span.record(
            "parent_span_id",
            tracing::field::display(Hex(&parent.span_id)),
        );
    }
}

/// Logs a client call's failure in its span. The caller gets the error too, so this is for
/// tracing the path only: DEBUG.
pub(crate) fn client_failed(span: &Span, error: &RpcError) {
    span.in_scope(|| tracing::debug!(%error, "call failed"));
}

/// The span a handler runs in: `own` carries the server's span id, `parent` the client's.
pub(crate) fn server_span(
    service: &str,
    method: &str,
    call_id: u64,
    link: Link<'_>,
    own: &TraceParent,
    parent: Option<&TraceParent>,
) -> Span {
    let span = tracing::span!(
        CALL_SPAN_LEVEL,
        "rpc.server",
        service,
        method,
        call_id,
        transport = link.transport,
        peer = ?link.peer,
        trace_id = %Hex(&own.trace_id),
        span_id = %Hex(&own.span_id),
        parent_span_id = Empty,
    );
    if let Some(parent) = parent {
        span.record(
            "parent_span_id",
            tracing::field::display(Hex(&parent.span_id)),
        );
    }
    span
}

/// Logs why call `call_id` of `service`'s `method` failed on the server, in the current (the
/// call's) span: a panicking handler is a bug (ERROR); a deadline passed or a request the
/// handler could not take is worth a WARN. The client sees the same failure as its own error.
/// The event names the call itself: at the usual INFO level its span is not recorded.
pub(crate) fn server_failed((service, method, call_id): (&str, &str, u64), error: &WireError) {
    match error {
        WireError::HandlerPanicked => {
            tracing::error!(service, method, call_id, "the handler panicked")
        }
        WireError::DeadlineExceeded => tracing::warn!(
            service,
            method,
            call_id,
            "the call's deadline passed; its handler was dropped"
        ),
        other => tracing::warn!(service, method, call_id, error = ?other, "the call failed"),
    }
}
