//! [`Served`]: the telemetry of a call a server is about to run: its trace, what calls made by
//! its handler inherit, and the span the handler runs in.

use std::time::Instant;

use rpc_transport::PeerInfo;
use tracing::Span;

use super::{Ambient, Link, TraceParent, server_span};

/// The telemetry of a call being served.
pub(crate) struct Served {
    /// What calls the handler makes inherit: the trace (with the server span's id), deadline.
    pub(crate) ambient: Ambient,
    /// The caller's trace context, if it sent a valid `traceparent`.
    pub(crate) parent: Option<TraceParent>,
    /// The `rpc.server` span the handler runs in.
    pub(crate) span: Span,
}

impl Served {
    /// The telemetry of call `call_id` of `service`'s `method` with `metadata` and `deadline`,
    /// from `peer` over `transport`.
    pub(crate) fn new(
        (service, method, call_id): (&str, &str, u64),
        (transport, peer): (&'static str, &PeerInfo),
        metadata: &[(String, String)],
        deadline: Option<Instant>,
    ) -> Served {
        let (ambient, parent) = Ambient::serving(metadata, deadline);
        let link = Link { transport, peer };
        let span = server_span(
            service,
            method,
            call_id,
            link,
            &ambient.trace,
            parent.as_ref(),
        );
        Served {
            ambient,
            parent,
            span,
        }
    }
}
