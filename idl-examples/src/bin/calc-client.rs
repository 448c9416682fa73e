//! `calc-client --connect ADDR [--timeout DURATION] METHOD ARGS...`: calls the calculator once
//! and prints the result alone on stdout. Errors go to stderr: exit status 1 for an RPC failure
//! (a call past its `--timeout` included), 2 for bad usage, 3 for an application error (such as
//! division by zero).
//!
//! Over `tls://` it trusts the system's root certificates, or the CA of `--tls-ca FILE`, and
//! presents `--tls-cert FILE --tls-key FILE` to servers that require a client certificate.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use idl_examples::CalculatorClient;
use idl_examples::tls_flags::ClientTls;

/// Call the example Calculator service.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The server's address, such as tcp://127.0.0.1:7000 or tls://calc.example:7443.
    #[arg(long)]
    connect: String,
    #[command(flatten)]
    tls: ClientTls,
    /// How long each call may take, such as 200ms, 2s, 1.5s or 1m (default: 30s).
    #[arg(long, value_parser = idl_examples::cli::parse_duration)]
    timeout: Option<Duration>,
    #[command(subcommand)]
    method: Method,
}

#[derive(Subcommand)]
enum Method {
    /// Print A + B.
    Add {
        #[arg(allow_negative_numbers = true)]
        a: i64,
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// Print A / B (integer division).
    Div {
        #[arg(allow_negative_numbers = true)]
        a: i64,
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// Print the sum of the numbers.
    Sum {
        #[arg(allow_negative_numbers = true)]
        xs: Vec<i64>,
    },
    /// Print TEXT as the server echoes it.
    Echo { text: String },
    /// Have the server wait MS milliseconds before it answers.
    Sleep { ms: u64 },
}

enum Failure {
    Rpc(rpc_core::RpcError),
    Application(String),
    Usage(String),
}

impl From<rpc_core::RpcError> for Failure {
    fn from(error: rpc_core::RpcError) -> Self {
        Failure::Rpc(error)
    }
}

async fn run(args: Args) -> Result<String, Failure> {
    let options = args
        .tls
        .apply(rpc_core::ClientOptions::default())
        .map_err(Failure::Usage)?;
    let mut calc = CalculatorClient::connect_with(&args.connect, options).await?;
    if let Some(timeout) = args.timeout {
        calc = calc.with_timeout(Some(timeout));
    }
    Ok(match args.method {
        Method::Add { a, b } => calc.add(a, b).await?.to_string(),
        Method::Div { a, b } => calc
            .div(a, b)
            .await?
            .map_err(|e| Failure::Application(e.to_string()))?
            .to_string(),
        Method::Sum { xs } => calc.sum(xs).await?.to_string(),
        Method::Echo { text } => {
            String::from_utf8_lossy(&calc.echo(text.into_bytes()).await?).into_owned()
        }
        Method::Sleep { ms } => {
            calc.sleep(ms).await?;
            "slept".to_owned()
        }
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("calc-client: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(Failure::Rpc(error)) => {
            eprintln!("calc-client: {error}");
            ExitCode::from(1)
        }
        Err(Failure::Application(message)) => {
            eprintln!("calc-client: {message}");
            ExitCode::from(3)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("calc-client: {message}");
            ExitCode::from(2)
        }
    }
}
