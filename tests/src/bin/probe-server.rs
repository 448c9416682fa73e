//! A process for the process-level tests: `probe-server ADDR...` serves the probe service on
//! each address (printing `listening on ADDR` for each, on stdout) until SIGTERM or SIGINT;
//! `probe-server --stall ADDR` connects as a client and waits forever in `stall`, to be killed.

use std::io::Write;

use rpc_tests::{ProbeClient, ProbeImpl, ProbeServer};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--stall") {
        let probe = ProbeClient::connect(&args[1]).await.expect("connect");
        println!("stalling");
        let _ = std::io::stdout().flush();
        let outcome = probe.with_timeout(None).stall().await;
        eprintln!("stall ended: {outcome:?}");
        return;
    }
    let addresses: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = rpc_core::Server::new()
        .max_frame_size(128 * 1024 * 1024)
        .start(ProbeServer::new(ProbeImpl::default()), &addresses)
        .await
        .expect("serve");
    for address in server.local_addresses() {
        println!("listening on {address}");
    }
    let _ = std::io::stdout().flush();
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    server.shutdown().await;
}
