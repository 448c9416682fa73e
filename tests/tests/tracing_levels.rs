//! The call spans are DEBUG spans: a subscriber that records INFO and above, as a service's log
//! usually does, builds neither `rpc.client` nor `rpc.server` spans, and its calls carry no
//! `traceparent` (an untraced call pays nothing for tracing). `tracing_spans.rs` shows what a
//! subscriber that records them sees.
//!
//! The subscriber is this test binary's global one (handlers run on runtime worker threads),
//! so it has a file of its own.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rpc_core::Server;
use rpc_tests::{Fixture, ProbeClient, Transport};
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Spans this subscriber built, by name.
static SPANS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Events it recorded (to show it records at all).
static EVENTS: AtomicUsize = AtomicUsize::new(0);

struct Recorder;

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let name = attrs.metadata().name().to_owned();
        SPANS.lock().unwrap_or_else(|p| p.into_inner()).push(name);
    }

    fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
        EVENTS.fetch_add(1, Ordering::SeqCst);
    }
}

fn call_spans() -> Vec<String> {
    let spans = SPANS.lock().unwrap_or_else(|p| p.into_inner());
    spans
        .iter()
        .filter(|name| name.starts_with("rpc."))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_at_info_builds_no_call_spans_and_calls_carry_no_traceparent() {
    let subscriber = tracing_subscriber::registry().with(Recorder.with_filter(LevelFilter::INFO));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    tracing::info!("recording");
    assert_eq!(
        EVENTS.load(Ordering::SeqCst),
        1,
        "the subscriber records INFO"
    );

    for transport in [Transport::Unix, Transport::Shm] {
        let fixture = Fixture::start(transport, Server::new()).await;
        let probe = ProbeClient::connect(&fixture.address).await.unwrap();
        assert_eq!(probe.add(2, 3).await.unwrap(), 5);
        assert_eq!(
            probe.metadata("traceparent".into()).await.unwrap(),
            None,
            "{transport:?}: an untraced call sends no traceparent"
        );
        fixture.handle.shutdown().await;
    }
    assert_eq!(call_spans(), Vec::<String>::new());
}
