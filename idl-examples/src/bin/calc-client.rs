//! `calc-client --connect ADDR [--timeout DURATION] METHOD ARGS...`: calls the calculator once
//! and prints the result alone on stdout. Errors go to stderr: exit status 1 for an RPC failure
//! (a call past its `--timeout` included), 2 for bad usage, 3 for an application error (such as
//! division by zero).
//!
//! `--repeat N --in-flight K` makes the call N times, K at once, prints its result once, and a
//! summary line on stderr (`calc-client: N calls, K in flight, F failed in S s: R calls/s`).
//! `--timing` reports on stderr how long connecting and the call took. `--reconnect` connects
//! again after a broken connection. `--keepalive-interval`,
//! `--keepalive-timeout` or `--no-keepalive` set how a dead server is noticed.
//!
//! Over `tls://` it trusts the system's root certificates, or the CA of `--tls-ca FILE`, and
//! presents `--tls-cert FILE --tls-key FILE` to servers that require a client certificate.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use idl_examples::CalculatorClient;
use idl_examples::keepalive_flags::KeepaliveFlags;
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
    #[command(flatten)]
    keepalive: KeepaliveFlags,
    /// Make the call N times (see --in-flight) and print a summary line on stderr.
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u64,
    /// How many of the --repeat calls are in flight at once.
    #[arg(long, value_name = "K", default_value_t = 1, requires = "repeat")]
    in_flight: u64,
    /// Report on stderr how long connecting and the call took
    /// (`calc-client: connected in MS ms`, `calc-client: call ended after MS ms`).
    #[arg(long)]
    timing: bool,
    /// Connect again when the connection breaks (exponential backoff with jitter); calls of
    /// idempotent methods (add, div, sum) are made again within their deadline.
    #[arg(long)]
    reconnect: bool,
    #[command(subcommand)]
    method: Method,
}

#[derive(Clone, Subcommand)]
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
        .map_err(Failure::Usage)?
        .keepalive(args.keepalive.keepalive());
    // The default policy (rpc-core does not export `ReconnectPolicy` by name yet).
    let options = match args.reconnect {
        true => options.reconnect(Some(Default::default())),
        false => options,
    };
    let connecting = Instant::now();
    let mut calc = CalculatorClient::connect_with(&args.connect, options).await?;
    if args.timing {
        eprintln!(
            "calc-client: connected in {} ms",
            millis(connecting.elapsed())
        );
    }
    if let Some(timeout) = args.timeout {
        calc = calc.with_timeout(Some(timeout));
    }
    if args.repeat > 1 || args.in_flight > 1 {
        return repeat(&calc, &args.method, args.repeat, args.in_flight.max(1)).await;
    }
    let calling = Instant::now();
    let outcome = call(&calc, args.method).await;
    if args.timing {
        eprintln!(
            "calc-client: call ended after {} ms",
            millis(calling.elapsed())
        );
    }
    outcome
}

fn millis(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

/// Makes `method`'s call `count` times, `in_flight` at once; prints a summary on stderr and
/// returns the first result (or the first failure, once all calls are done).
async fn repeat(
    calc: &CalculatorClient,
    method: &Method,
    count: u64,
    in_flight: u64,
) -> Result<String, Failure> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.min(count) {
        let (calc, method, next) = (calc.clone(), method.clone(), next.clone());
        workers.spawn(async move {
            let mut first = None;
            let mut failed = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let outcome = call(&calc, method.clone()).await;
                failed += u64::from(outcome.is_err());
                first.get_or_insert(outcome);
            }
            (first, failed)
        });
    }
    let (mut first, mut failed) = (None, 0u64);
    while let Some(joined) = workers.join_next().await {
        let (outcome, worker_failed) = joined.expect("a calling task panicked");
        failed += worker_failed;
        match (&first, outcome) {
            (None, Some(outcome)) | (Some(Ok(_)), Some(outcome @ Err(_))) => first = Some(outcome),
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "calc-client: {count} calls, {in_flight} in flight, {failed} failed in {:.3} s: {:.1} calls/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
    first.unwrap_or_else(|| Err(Failure::Usage("--repeat 0 makes no call".to_owned())))
}

async fn call(calc: &CalculatorClient, method: Method) -> Result<String, Failure> {
    Ok(match method {
        Method::Add { a, b } => calc.add(a, b).await?.to_string(),
        Method::Div { a, b } => calc
            .div(a, b)
            .await?
            .map_err(|e| Failure::Application(e.to_string()))?
            .to_string(),
        Method::Sum { xs } => calc.sum(xs).await?.to_string(),
        Method::Echo { text } => {
            String::from_utf8_lossy(&calc.echo(text.into_bytes().into()).await?).into_owned()
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
