//! The call spans are DEBUG spans: a subscriber that records INFO and above, as a service's log
//! usually does, builds neither `rpc.client` nor `rpc.server` spans, and calls made outside a
//! handler carry no `traceparent` (an untraced call pays nothing for tracing). What it does
//! record still says which call failed, and a call made inside a handler still carries the
//! served call's trace. `tracing_spans.rs` shows what a subscriber that records spans sees.
//!
//! The subscriber is this test binary's global one (handlers run on runtime worker threads),
//! so it has a file of its own, and one test.

use std::collections::HashMap;
use std::sync::Mutex;

use rpc_core::{RpcError, Server};
use rpc_tests::{FieldText, Fixture, ProbeClient, Transport, unique_name};
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// What the subscriber saw: span names, and each event's fields as text.
#[derive(Default)]
struct Seen {
    spans: Vec<String>,
    events: Vec<HashMap<String, String>>,
}

static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

fn seen<T>(look: impl FnOnce(&mut Seen) -> T) -> T {
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    look(seen.get_or_insert_with(Seen::default))
}

struct Recorder;

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let name = attrs.metadata().name().to_owned();
        seen(|seen| seen.spans.push(name));
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut FieldText(&mut fields));
        seen(|seen| seen.events.push(fields));
    }
}

/// A service whose handler asks a probe what `traceparent` it was called with.
#[rpc_core::service]
pub trait Relay {
    /// The `traceparent` the probe saw on a call made inside this handler.
    async fn inner_traceparent(&self) -> Option<String>;
}

struct RelayImpl {
    probe: ProbeClient,
}

impl Relay for RelayImpl {
    async fn inner_traceparent(&self) -> Option<String> {
        self.probe
            .metadata("traceparent".into())
            .await
            .expect("the probe answers")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_at_info_builds_no_call_spans_yet_failures_name_their_call() {
    let subscriber = tracing_subscriber::registry().with(Recorder.with_filter(LevelFilter::INFO));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    tracing::info!("recording");
    assert_eq!(seen(|seen| seen.events.len()), 1, "it records INFO");

    for transport in [Transport::Unix, Transport::Shm] {
        let fixture = Fixture::start(transport, Server::new()).await;
        let probe = ProbeClient::connect(&fixture.address).await.unwrap();
        assert_eq!(probe.add(2, 3).await.unwrap(), 5);
        assert_eq!(
            probe.metadata("traceparent".into()).await.unwrap(),
            None,
            "{transport:?}: an untraced call sends no traceparent"
        );

        // A panicking handler is logged at ERROR, naming the call without its span.
        let error = probe.explode().await.unwrap_err();
        assert!(
            matches!(error, RpcError::HandlerPanicked { .. }),
            "{error:?}"
        );
        let logged = seen(|seen| {
            seen.events
                .iter()
                .filter(|e| e.get("message").map(String::as_str) == Some("the handler panicked"))
                .cloned()
                .collect::<Vec<_>>()
        });
        let last = logged.last().expect("the panic was logged");
        assert_eq!(last.get("service").map(String::as_str), Some("Probe"));
        assert_eq!(last.get("method").map(String::as_str), Some("explode"));
        assert!(last.contains_key("call_id"), "{last:?}");

        // A call made inside a handler carries the served call's trace all the same.
        let relay = Server::new()
            .start(
                RelayServer::new(RelayImpl { probe }),
                &[format!("mem://{}", unique_name("relay")).as_str()],
            )
            .await
            .unwrap();
        let client = RelayClient::connect(&relay.local_address()).await.unwrap();
        let inner = client.inner_traceparent().await.unwrap();
        let inner = inner.expect("a call inside a handler carries a traceparent");
        assert_eq!(inner.len(), 55, "{inner}");
        relay.shutdown().await;
        fixture.handle.shutdown().await;
    }
    assert_eq!(
        seen(|seen| seen.spans.iter().filter(|n| n.starts_with("rpc.")).count()),
        0,
        "no call span was built"
    );
}
