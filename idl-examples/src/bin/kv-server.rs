//! `kv-server --listen ADDR [--listen ADDR ...] [--with-calculator]`: serves the key-value store
//! (and, with `--with-calculator`, the Calculator too, on the same addresses) until SIGINT or
//! SIGTERM. `kv-server --schema` prints the service's schema as JSON.
//!
//! Logs go to stderr (set `RUST_LOG` for more); the bound addresses are logged as
//! `listening on ADDR`, one line each.

use std::process::ExitCode;

use clap::Parser;
use idl_examples::{Calc, CalculatorServer, KvClient, KvServer, KvStore, cli};

/// Serve the example key-value store.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (repeatable), such as tcp://0.0.0.0:7001 or unix:///tmp/kv.sock.
    #[arg(long = "listen", required_unless_present = "schema")]
    listen: Vec<String>,
    /// Also serve the Calculator on the same addresses.
    #[arg(long)]
    with_calculator: bool,
    /// Print the service's schema as JSON and exit.
    #[arg(long, conflicts_with = "listen")]
    schema: bool,
    /// Connections served at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    cli::init_logging();
    let args = Args::parse();
    if args.schema {
        println!("{}", KvClient::schema().to_json());
        return ExitCode::SUCCESS;
    }
    let mut server = rpc_core::Server::new()
        .max_connections(args.max_connections)
        .add(KvServer::new(KvStore::default()));
    if args.with_calculator {
        server = server.add(CalculatorServer::new(Calc));
    }
    cli::serve(server, &args.listen, "kv-server").await
}
