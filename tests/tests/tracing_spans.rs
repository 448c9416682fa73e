//! Tracing across calls: each call has a `rpc.client` span and a `rpc.server` span (the one its
//! handler runs in) joined by the W3C `traceparent`, a call made inside a handler stays in the
//! served call's trace, and it is held to what is left of the served call's deadline.
//!
//! A global subscriber (this test binary's own) records every span, since handlers run on
//! runtime worker threads. Each test uses methods no other test here calls, to find its spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rpc_core::{Context, RpcError, Server, ServerHandle, TraceParent};
use rpc_tests::{FieldText, Fixture, ProbeClient, Transport, bounded, unique_name};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};

/// Nothing in this file waits longer than this.
const LIMIT: Duration = Duration::from_secs(20);

/// A span as recorded: its name and fields, as text.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: String,
    fields: HashMap<String, String>,
}

impl SpanRecord {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{} has no field '{name}': {self:?}", self.name))
    }
}

/// An event as recorded: its message and the span it was in.
#[derive(Debug, Clone)]
struct EventRecord {
    message: String,
    span: Option<SpanRecord>,
}

#[derive(Default)]
struct Recorded {
    spans: HashMap<u64, SpanRecord>,
    events: Vec<EventRecord>,
}

struct Recorder;

impl<S> Layer<S> for Recorder
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: LayerContext<'_, S>) {
        let mut span = SpanRecord {
            name: attrs.metadata().name().to_owned(),
            ..SpanRecord::default()
        };
        attrs.record(&mut FieldText(&mut span.fields));
        recorded().spans.insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: LayerContext<'_, S>) {
        if let Some(span) = recorded().spans.get_mut(&id.into_u64()) {
            values.record(&mut FieldText(&mut span.fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, cx: LayerContext<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut FieldText(&mut fields));
        let span_id = cx.event_span(event).map(|span| span.id().into_u64());
        let mut recorded = recorded();
        let span = span_id.and_then(|id| recorded.spans.get(&id).cloned());
        recorded.events.push(EventRecord {
            message: fields.remove("message").unwrap_or_default(),
            span,
        });
    }
}

fn recorded() -> std::sync::MutexGuard<'static, Recorded> {
    static RECORDED: OnceLock<Mutex<Recorded>> = OnceLock::new();
    RECORDED
        .get_or_init(|| {
            let subscriber = tracing_subscriber::registry().with(Recorder);
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            Mutex::default()
        })
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
}

/// Installs the recording subscriber (on first use).
fn record_spans() {
    drop(recorded());
}

/// The spans named `name` whose method is `method`.
fn spans(name: &str, method: &str) -> Vec<SpanRecord> {
    recorded()
        .spans
        .values()
        .filter(|s| s.name == name && s.fields.get("method").map(String::as_str) == Some(method))
        .cloned()
        .collect()
}

/// The one span named `name` of `method` in trace `trace_id`.
fn span_in_trace(name: &str, method: &str, trace_id: &str) -> SpanRecord {
    let mut found: Vec<_> = spans(name, method)
        .into_iter()
        .filter(|s| s.fields.get("trace_id").map(String::as_str) == Some(trace_id))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{name} spans of '{method}' in trace {trace_id}: {found:?}"
    );
    found.pop().unwrap()
}

/// A service whose handlers call a probe server: for nested traces and inherited deadlines.
#[rpc_core::service]
pub trait Front {
    /// Returns `x + 1`, as the probe computes it.
    async fn relay(&self, x: i64) -> i64;
    /// Calls the probe's `stall`; its outcome is kept in `FrontImpl::stalled`. The server
    /// gives the handler 300 ms when the caller sets no deadline.
    #[rpc(timeout = "300ms")]
    async fn relay_stall(&self);
}

struct FrontImpl {
    probe: ProbeClient,
    /// The inner `stall` call's error and how long it took.
    stalled: Arc<Mutex<Option<(RpcError, Duration)>>>,
}

impl Front for FrontImpl {
    async fn relay(&self, x: i64) -> i64 {
        let context = Context::current().expect("inside a handler");
        assert!(
            context.trace_parent().is_some(),
            "the caller sent a traceparent"
        );
        tracing::info!("relaying");
        self.probe.add(x, 1).await.expect("the probe adds")
    }

    async fn relay_stall(&self) {
        let started = Instant::now();
        let error = self
            .probe
            .stall()
            .await
            .expect_err("stall never returns on its own");
        *self.stalled.lock().unwrap() = Some((error, started.elapsed()));
    }
}

/// A probe server, and a Front server whose handlers call it with the default (30 s) timeout.
struct TwoServers {
    probe: Fixture,
    front: ServerHandle,
    front_address: String,
    stalled: Arc<Mutex<Option<(RpcError, Duration)>>>,
}

impl TwoServers {
    async fn start() -> TwoServers {
        let probe = Fixture::start(Transport::Unix, Server::new()).await;
        let inner = ProbeClient::connect(&probe.address).await.unwrap();
        let stalled = Arc::new(Mutex::new(None));
        let front = Server::new()
            .start(
                FrontServer::new(FrontImpl {
                    probe: inner,
                    stalled: stalled.clone(),
                }),
                &[format!("mem://{}", unique_name("front")).as_str()],
            )
            .await
            .unwrap();
        let front_address = front.local_address();
        TwoServers {
            probe,
            front,
            front_address,
            stalled,
        }
    }

    async fn shutdown(self) {
        self.front.shutdown().await;
        self.probe.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_span_continues_the_clients_trace() {
    record_spans();
    let fixture = Fixture::start(Transport::Unix, Server::new()).await;
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    assert_eq!(probe.echo(b"traced".to_vec()).await.unwrap(), b"traced");

    let clients = spans("rpc.client", "echo");
    assert_eq!(clients.len(), 1, "{clients:?}");
    let client = &clients[0];
    assert_eq!(client.field("service"), "Probe");
    assert_eq!(client.field("transport"), "unix");
    assert!(client.fields.contains_key("peer"));
    let trace_id = client.field("trace_id");
    assert_eq!(trace_id.len(), 32);
    assert_eq!(client.field("span_id").len(), 16);

    let server = span_in_trace("rpc.server", "echo", trace_id);
    assert_eq!(server.field("parent_span_id"), client.field("span_id"));
    assert_ne!(server.field("span_id"), client.field("span_id"));
    assert_eq!(server.field("call_id"), client.field("call_id"));
    assert_eq!(server.field("service"), "Probe");
    assert_eq!(server.field("transport"), "unix");
    assert!(server.fields.contains_key("peer"));
    fixture.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_inside_a_handler_stays_in_the_served_calls_trace() {
    record_spans();
    let servers = TwoServers::start().await;
    let front = FrontClient::connect(&servers.front_address).await.unwrap();
    assert_eq!(front.relay(41).await.unwrap(), 42);

    let outer = spans("rpc.client", "relay");
    assert_eq!(outer.len(), 1, "{outer:?}");
    let trace_id = outer[0].field("trace_id");
    let front_span = span_in_trace("rpc.server", "relay", trace_id);
    assert_eq!(front_span.field("transport"), "mem");
    assert_eq!(
        front_span.field("parent_span_id"),
        outer[0].field("span_id")
    );
    let inner = span_in_trace("rpc.client", "add", trace_id);
    assert_eq!(inner.field("parent_span_id"), front_span.field("span_id"));
    let probe_span = span_in_trace("rpc.server", "add", trace_id);
    assert_eq!(probe_span.field("parent_span_id"), inner.field("span_id"));

    // The handler's own log line is inside its call's span.
    let events = recorded().events.clone();
    let relaying = events
        .iter()
        .find(|e| e.message == "relaying")
        .expect("the handler logged");
    let span = relaying.span.as_ref().expect("logged inside a span");
    assert_eq!(span.name, "rpc.server");
    assert_eq!(span.field("trace_id"), trace_id);
    servers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_traceparent_is_sent_as_the_caller_set_it() {
    record_spans();
    let fixture = Fixture::start(Transport::Unix, Server::new()).await;
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    let chosen: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .unwrap();
    let seen = probe
        .with_metadata(rpc_core::TRACEPARENT, &chosen.to_string())
        .metadata(rpc_core::TRACEPARENT.to_owned())
        .await
        .unwrap();
    assert_eq!(seen.as_deref(), Some(chosen.to_string().as_str()));
    let server = span_in_trace("rpc.server", "metadata", &chosen.trace_id_hex());
    assert_eq!(server.field("parent_span_id"), chosen.span_id_hex());
    fixture.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_inside_a_handler_is_held_to_the_served_calls_deadline() {
    record_spans();
    let servers = TwoServers::start().await;
    let front = FrontClient::connect(&servers.front_address).await.unwrap();
    // No deadline from this side (so no cancel races the handler): the server's 300 ms rule.
    let started = Instant::now();
    let outer = bounded(
        LIMIT,
        "the outer call",
        front.with_timeout(None).relay_stall(),
    )
    .await;
    assert!(
        matches!(outer, Ok(()) | Err(RpcError::DeadlineExceeded { .. })),
        "{outer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let stalled = servers.stalled.clone();
    let recorded = rpc_tests::eventually(LIMIT, || stalled.lock().unwrap().is_some()).await;
    assert!(recorded, "the handler never saw its inner call end");
    let (error, took) = stalled.lock().unwrap().take().unwrap();
    assert!(
        matches!(error, RpcError::DeadlineExceeded { .. }),
        "the inner call failed with {error:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the inner call took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(200),
        "the inner call gave up early: {took:?}"
    );
    servers.shutdown().await;
}
