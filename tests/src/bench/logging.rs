//! With `RUST_LOG` set, every process of the run (the measuring client, our servers, tarpc's
//! and iceoryx2's, the extra clients: children inherit the variable) installs a
//! `tracing_subscriber::fmt` subscriber with that filter, as a service that logs does. Its
//! output goes nowhere: the figures then include what formatting costs, not a terminal's
//! speed. Without it no process has a subscriber, and `tracing` costs next to nothing.

/// The `RUST_LOG` filter of this run, if any.
pub fn filter() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
}

/// Installs the subscriber, if `RUST_LOG` asks for one (once per process, first thing).
pub fn init() {
    if let Some(filter) = filter() {
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .init();
    }
}
