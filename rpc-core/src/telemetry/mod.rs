//! Telemetry: a `tracing` span per call on each side, W3C trace context carried from caller to
//! handler, and what a call made inside a handler inherits from it (its trace and deadline).
//!
//! - `traceparent.rs`: [`TraceParent`], the W3C `traceparent` value, parsed and printed.
//! - `ids.rs`: new trace and span ids.
//! - `ambient.rs`: the call a task is serving, as far as calls it makes need to know.
//! - `spans.rs`: the client's and the server's call spans and how they log failures.
//! - `served.rs`: all of the above for a call a server is about to run.
//!
//! A client call sends the metadata `traceparent` (unless its caller set one): inside a
//! handler, in the trace of the call being served; elsewhere, in a new trace. Either way with
//! a new span id, the client span's. The server's span takes the trace id, a span id of its
//! own, and the client's span id as its parent.

mod ambient;
mod ids;
mod served;
mod spans;
mod traceparent;

#[cfg(test)]
mod tests;

pub(crate) use ambient::Ambient;
pub(crate) use served::Served;
pub(crate) use spans::{
    Link, client_failed, client_span, record_call_id, record_client_trace, server_failed,
    server_span,
};
pub use traceparent::{TraceParent, TraceParentError};

/// The metadata key of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
