//! A replica of a tiny service, and a client that counts which replica answers: for the test
//! of `dns+tcp://` discovery and balancing across hosts (`tests/cross_host_dns.rs`).
//!
//! - `replica --name NAME --listen ADDR`: serves `Replica`, whose `name` answers NAME; logs
//!   `listening on ADDR` on stdout.
//! - `replica --connect ADDR [--rate R] [--for DURATION]`: calls `name` R times a second
//!   (default 100), each call on its own task with a 2 s deadline, and every 200 ms prints the
//!   running totals, `counts a=12 b=10 c=11 errors=0` (replica names sorted). Errors are also
//!   printed, one line each (`error: ...`). Exits when its stdin closes (the test is gone) or
//!   after DURATION (default 2m).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The service each replica serves.
#[rpc_core::service]
pub trait Replica {
    /// The replica's name.
    #[rpc(idempotent)]
    async fn name(&self) -> String;
}

#[derive(Clone)]
struct Named(String);

impl Replica for Named {
    async fn name(&self) -> String {
        self.0.clone()
    }
}

#[derive(Default)]
struct Args {
    name: Option<String>,
    listen: Option<String>,
    connect: Option<String>,
    rate: u32,
    run_for: Duration,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        rate: 100,
        run_for: Duration::from_secs(120),
        ..Args::default()
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => args.name = Some(value),
            "--listen" => args.listen = Some(value),
            "--connect" => args.connect = Some(value),
            "--rate" => args.rate = value.parse().map_err(|e| format!("--rate: {e}"))?,
            "--for" => args.run_for = idl_examples::cli::parse_duration(&value)?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("replica: {message}");
            return ExitCode::from(2);
        }
    };
    let outcome = match (&args.name, &args.listen, &args.connect) {
        (Some(name), Some(listen), None) => serve(name, listen).await,
        (None, None, Some(connect)) => count(connect, args.rate, args.run_for).await,
        _ => Err("use --name NAME --listen ADDR, or --connect ADDR [--rate R]".to_owned()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("replica: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(name: &str, listen: &str) -> Result<(), String> {
    let server = rpc_core::Server::new().add(ReplicaServer::new(Named(name.to_owned())));
    let handle = server.listen(&[listen]).await.map_err(|e| e.to_string())?;
    for address in handle.local_addresses() {
        println!("listening on {address}");
    }
    let _ = std::io::stdout().flush();
    handle.finished().await;
    Ok(())
}

/// Running totals: calls answered per replica name, and failed calls.
#[derive(Default)]
struct Totals {
    answered: BTreeMap<String, u64>,
    errors: u64,
}

async fn count(connect: &str, rate: u32, run_for: Duration) -> Result<(), String> {
    let client = ReplicaClient::connect_with(connect, rpc_core::ClientOptions::default())
        .await
        .map_err(|e| format!("cannot connect to {connect}: {e}"))?
        .with_timeout(Some(Duration::from_secs(2)));
    println!("connected to {connect}");
    let totals = Arc::new(Mutex::new(Totals::default()));
    let (stdin_closed_tx, mut stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = stdin_closed_tx.send(());
    });
    let mut calls = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut report = tokio::time::interval(Duration::from_millis(200));
    let end = tokio::time::sleep(run_for);
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = calls.tick() => {
                let (client, totals) = (client.clone(), totals.clone());
                tokio::spawn(async move {
                    let outcome = client.name().await;
                    let mut totals = totals.lock().unwrap();
                    match outcome {
                        Ok(name) => *totals.answered.entry(name).or_default() += 1,
                        Err(error) => {
                            totals.errors += 1;
                            println!("error: {error}");
                        }
                    }
                });
            }
            _ = report.tick() => {
                let totals = totals.lock().unwrap();
                let counts: Vec<String> =
                    totals.answered.iter().map(|(name, n)| format!("{name}={n}")).collect();
                println!("counts {} errors={}", counts.join(" "), totals.errors);
                let _ = std::io::stdout().flush();
            }
            _ = &mut stdin_closed => return Ok(()),
            _ = &mut end => return Ok(()),
        }
    }
}
