//! A process for the process-level tests.
//!
//! - `probe-server [OPTIONS] ADDR...` serves the probe service on each address (printing
//!   `listening on ADDR` for each, on stdout) until SIGTERM or SIGINT, or until every listener
//!   is done (`stdio` serves one connection, then the process exits).
//! - `probe-server --stall ADDR` connects as a client and waits forever in `stall`, to be killed.
//!
//! Options: `--max-frame-size N`, `--max-in-flight N`, `--max-connections N` (server limits),
//! `--nofile N` (its own descriptor limit), `--idle-timeout-ms N`, `--dedicated-threads N`,
//! `--stall-counter FILE` (count running `stall` calls in a file the test maps too) and
//! `--tag TAG` (ignored; lets a test find its children in `/proc`).

use std::io::Write;
use std::sync::Arc;

use rpc_tests::{ProbeClient, ProbeImpl, ProbeServer, SharedCounter};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--stall") {
        let address = args.nth(1).expect("--stall ADDR");
        let probe = ProbeClient::connect(&address).await.expect("connect");
        println!("stalling");
        let _ = std::io::stdout().flush();
        let outcome = probe.with_timeout(None).stall().await;
        eprintln!("stall ended: {outcome:?}");
        return;
    }
    let mut server = rpc_core::Server::new().max_frame_size(128 * 1024 * 1024);
    let mut probe = ProbeImpl::default();
    let mut addresses = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        let number = |v: String| -> usize { v.parse().expect("a number") };
        match arg.as_str() {
            "--max-frame-size" => server = server.max_frame_size(number(value())),
            "--max-in-flight" => server = server.max_in_flight(number(value())),
            "--max-connections" => server = server.max_connections(number(value())),
            "--stall-counter" => {
                let counter = SharedCounter::in_file(value().as_ref()).expect("stall counter");
                probe = ProbeImpl::counting_in(Arc::new(counter));
            }
            "--tag" => drop(value()),
            "--nofile" => {
                let limit = number(value()) as u64;
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_NOFILE,
                    limit,
                    limit,
                )
                .expect("setrlimit RLIMIT_NOFILE");
            }
            "--dedicated-threads" => server = server.dedicated_threads(number(value())),
            "--idle-timeout-ms" => {
                let ms = number(value()) as u64;
                server = server.idle_timeout(Some(std::time::Duration::from_millis(ms)));
            }
            _ => addresses.push(arg),
        }
    }
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let server = server
        .start(ProbeServer::new(probe), &addresses)
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
        _ = server.finished() => {}
    }
    server.shutdown().await;
}
