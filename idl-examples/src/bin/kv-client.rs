//! `kv-client --connect ADDR get|put|delete|list|watch ...`: one call to the key-value store.
//! Results go to stdout (`list` prints `KEY=VALUE` lines; `watch` prints `put KEY=VALUE` or
//! `deleted KEY` for each change until interrupted). Errors go to stderr: exit status 1 for
//! an RPC failure, 3 when `get` or `delete` finds no such key.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use idl_examples::{Change, KvClient, cli};
use rpc_core::{ClientOptions, RpcError, StreamExt};

/// Call the example key-value store.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The server's address, such as unix:///tmp/kv.sock.
    #[arg(long)]
    connect: String,
    /// Deadline of the call, such as 200ms or 5s (`watch` has none unless given).
    #[arg(long, value_parser = cli::parse_duration)]
    timeout: Option<Duration>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the value of KEY.
    Get { key: String },
    /// Set KEY to VALUE; print the value it replaced, if any.
    Put { key: String, value: String },
    /// Delete KEY; print the value it had.
    Delete { key: String },
    /// Print every entry whose key starts with PREFIX, as KEY=VALUE lines in key order.
    List {
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Print each change to a key starting with PREFIX as it happens, until interrupted.
    Watch {
        #[arg(default_value = "")]
        prefix: String,
    },
}

enum Failure {
    Rpc(RpcError),
    NoSuchKey(String),
}

impl From<RpcError> for Failure {
    fn from(error: RpcError) -> Self {
        Failure::Rpc(error)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn run(args: Args) -> Result<(), Failure> {
    let options = ClientOptions::default();
    let kv = KvClient::connect_with(&args.connect, options).await?;
    let kv = match args.timeout {
        Some(timeout) => kv.with_timeout(Some(timeout)),
        None => kv,
    };
    match args.command {
        Command::Get { key } => match kv.get(key.clone()).await? {
            Some(value) => println!("{}", text(&value)),
            None => return Err(Failure::NoSuchKey(key)),
        },
        Command::Put { key, value } => {
            if let Some(old) = kv.put(key, value.into_bytes()).await? {
                println!("{}", text(&old));
            }
        }
        Command::Delete { key } => match kv.delete(key.clone()).await? {
            Some(old) => println!("{}", text(&old)),
            None => return Err(Failure::NoSuchKey(key)),
        },
        Command::List { prefix } => {
            let mut entries = kv.list(prefix).await?;
            while let Some(entry) = entries.next().await {
                let entry = entry?;
                println!("{}={}", entry.key, text(&entry.value));
            }
        }
        Command::Watch { prefix } => {
            let mut changes = kv.watch(prefix).await?;
            while let Some(change) = changes.next().await {
                match change? {
                    Change::Put { key, value } => println!("put {key}={}", text(&value)),
                    Change::Deleted { key } => println!("deleted {key}"),
                }
            }
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = tokio::select! {
        outcome = run(args) => outcome,
        // `watch` runs until interrupted; an interrupted client has done what it was asked.
        _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rpc(error)) => {
            eprintln!("kv-client: {error}");
            ExitCode::from(1)
        }
        Err(Failure::NoSuchKey(key)) => {
            eprintln!("kv-client: no such key '{key}'");
            ExitCode::from(3)
        }
    }
}
