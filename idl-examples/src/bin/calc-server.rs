//! `calc-server --listen ADDR [--listen ADDR ...]`: serves the calculator until SIGINT/SIGTERM.
//! A `tls://HOST:PORT` listener needs `--tls-cert FILE --tls-key FILE` (PEM); with
//! `--tls-ca FILE` it requires client certificates signed by that CA (mutual TLS).
//! `--keepalive-interval DURATION --keepalive-timeout DURATION` set how fast a silent client
//! (a dead peer behind a half-open connection) is dropped; `--no-keepalive` never pings.
//! `calc-server --schema` prints the service's schema as JSON.
//! With `--listen stdio` alone (the child of a `spawn:` client) it serves its one connection on
//! stdin/stdout and exits when that connection closes.
//!
//! Logs go to stderr (set `RUST_LOG` for more); the bound addresses are logged as
//! `listening on ADDR`, one line each.

use std::process::ExitCode;

use clap::Parser;
use idl_examples::keepalive_flags::KeepaliveFlags;
use idl_examples::tls_flags::ServerTls;
use idl_examples::{Calc, CalculatorClient, CalculatorServer, cli};

/// Serve the example Calculator service.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (repeatable), such as tcp://0.0.0.0:7000, unix:///tmp/calc.sock or
    /// tls://0.0.0.0:7443 (with --tls-cert and --tls-key).
    #[arg(long = "listen", required_unless_present = "schema")]
    listen: Vec<String>,
    /// Print the service's schema as JSON and exit (compare versions with `rpc-schema diff`).
    #[arg(long, conflicts_with = "listen")]
    schema: bool,
    /// Connections served at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    #[command(flatten)]
    tls: ServerTls,
    #[command(flatten)]
    keepalive: KeepaliveFlags,
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_logging();
    let args = Args::parse();
    if args.schema {
        println!("{}", CalculatorClient::schema().to_json());
        return ExitCode::SUCCESS;
    }
    let server = rpc_core::Server::new()
        .max_connections(args.max_connections)
        .keepalive(args.keepalive.keepalive())
        .add(CalculatorServer::new(Calc));
    let server = match args.tls.apply(server, &args.listen) {
        Ok(server) => server,
        Err(message) => {
            eprintln!("calc-server: {message}");
            return ExitCode::from(2);
        }
    };
    cli::serve(server, &args.listen, "calc-server").await
}
