//! A subscriber that records the client's call spans by name alone (no level directive for
//! them) gets them with their trace fields, and the calls carry the `traceparent` that joins
//! them to the server: whether a call is traced is what the span's own filter says.
//!
//! The subscriber is this test binary's global one, so it has a file of its own.

use std::collections::HashMap;
use std::sync::Mutex;

use rpc_core::Server;
use rpc_tests::{FieldText, Fixture, ProbeClient, Transport};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Each recorded span's fields, by span id.
static SPANS: Mutex<Vec<(u64, HashMap<String, String>)>> = Mutex::new(Vec::new());

struct Recorder;

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut FieldText(&mut fields));
        fields.insert("name".into(), attrs.metadata().name().into());
        let mut spans = SPANS.lock().unwrap_or_else(|p| p.into_inner());
        spans.push((id.into_u64(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = SPANS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, fields)) = spans.iter_mut().rev().find(|(at, _)| *at == id.into_u64()) {
            values.record(&mut FieldText(fields));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_by_span_name_gets_traced_client_spans() {
    let by_name = filter_fn(|meta| meta.is_span() && meta.name() == "rpc.client");
    let subscriber = tracing_subscriber::registry().with(Recorder.with_filter(by_name));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let fixture = Fixture::start(Transport::Unix, Server::new()).await;
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    let sent = probe
        .metadata("traceparent".into())
        .await
        .unwrap()
        .expect("a recorded client span's call carries a traceparent");
    fixture.handle.shutdown().await;

    let spans = SPANS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let clients: Vec<_> = spans
        .iter()
        .map(|(_, fields)| fields)
        .filter(|f| f.get("method").map(String::as_str) == Some("metadata"))
        .collect();
    assert_eq!(clients.len(), 1, "{spans:?}");
    let client = clients[0];
    assert_eq!(client.get("name").map(String::as_str), Some("rpc.client"));
    let trace_id = client.get("trace_id").expect("the trace id is recorded");
    let span_id = client.get("span_id").expect("the span id is recorded");
    assert_eq!(sent, format!("00-{trace_id}-{span_id}-01"));
    assert!(
        spans
            .iter()
            .all(|(_, f)| f.get("name").map(String::as_str) != Some("rpc.server")),
        "the filter lets no server span through: {spans:?}"
    );
}
