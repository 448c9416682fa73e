//! `calc-server --listen ADDR [--listen ADDR ...]`: serves the calculator until SIGINT/SIGTERM.
//! `calc-server --schema` prints the service's schema as JSON.
//! With `--listen stdio` alone (the child of a `spawn:` client) it serves its one connection on
//! stdin/stdout and exits when that connection closes.
//!
//! Logs go to stderr (set `RUST_LOG` for more); the bound addresses are logged as
//! `listening on ADDR`, one line each.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use idl_examples::{Calc, CalculatorClient, CalculatorServer};
use tokio::signal::unix::{SignalKind, signal};

/// Serve the example Calculator service.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (repeatable), such as tcp://0.0.0.0:7000 or unix:///tmp/calc.sock.
    #[arg(long = "listen", required_unless_present = "schema")]
    listen: Vec<String>,
    /// Print the service's schema as JSON and exit (compare versions with `rpc-schema diff`).
    #[arg(long, conflicts_with = "listen")]
    schema: bool,
    /// Connections served at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    if args.schema {
        println!("{}", CalculatorClient::schema().to_json());
        return ExitCode::SUCCESS;
    }
    let addresses: Vec<&str> = args.listen.iter().map(String::as_str).collect();
    let server = rpc_core::Server::new().max_connections(args.max_connections);
    let handle = match server.start(CalculatorServer::new(Calc), &addresses).await {
        Ok(handle) => handle,
        Err(error) => {
            eprintln!("calc-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    for address in handle.local_addresses() {
        tracing::info!("listening on {address}");
    }
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("calc-server: cannot watch signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = handle.finished() => tracing::info!("every listener is done: exiting"),
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}
