//! `rpc-demo`: serves the Calculator on every transport at once, calls each through its own
//! client, and prints a table of transport, calls, p50 and p99; then serves the Calculator and
//! the key-value store on one listener and shows streaming calls (a second table). Needs no
//! argument; exits non-zero if any row failed.
//!
//! The `spawn:` row's server is this same executable started as a child with `--serve-stdio`
//! (the Calculator on its stdin and stdout), so `cargo run --bin rpc-demo` needs no other
//! binary built. The `tls` row's certificates are made in memory at start-up (a new CA each
//! run), so it needs no file either.

use std::process::ExitCode;

use idl_examples::demo::{ClientKind, LatencyRow, measure, measure_with, micros};
use idl_examples::demo_tls::DemoPki;
use idl_examples::{Calc, CalculatorServer};

const CALLS: usize = 2000;

/// The path of a file beside this executable, as a string.
fn sibling(name: &str) -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(|d| d.join(name)).unwrap_or_default();
    dir.display().to_string()
}

/// The child of the `spawn:` row: serves the Calculator on stdin/stdout until its client goes.
async fn serve_stdio() -> ExitCode {
    let server = rpc_core::Server::new();
    match server.start(CalculatorServer::new(Calc), &["stdio"]).await {
        Ok(handle) => {
            handle.finished().await;
            handle.shutdown().await;
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("rpc-demo --serve-stdio: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a row of the latency table; whether it succeeded.
fn print_row(
    name: &str,
    address: &str,
    measured: Result<LatencyRow, impl std::fmt::Display>,
) -> bool {
    match measured {
        Ok(row) => {
            println!(
                "| {name} | {} | {} | {} | {} |",
                row.address.replace(&sibling(""), ""),
                row.calls,
                micros(row.p50),
                micros(row.p99)
            );
            true
        }
        Err(error) => {
            println!("| {name} | {address} | failed: {error} | | |");
            false
        }
    }
}

/// A server with a certificate for this host from a CA made now, and a client trusting it.
fn tls_setup() -> Result<(rpc_core::Server, rpc_core::ClientOptions), String> {
    let pki = DemoPki::generate("rpc-demo CA")?;
    let server = rpc_core::Server::new().transport_setting(pki.local_server_settings()?);
    let options = rpc_core::ClientOptions::default().transport_setting(pki.client_settings()?);
    Ok((server, options))
}

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--serve-stdio") {
        return serve_stdio().await;
    }
    let this = std::env::current_exe()
        .map(|exe| exe.display().to_string())
        .unwrap_or_else(|_| "rpc-demo".to_owned());
    let dir = std::env::temp_dir().join(format!("rpc-demo-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("rpc-demo: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let pid = std::process::id();
    let (async_client, blocking) = (ClientKind::Async, ClientKind::Blocking);
    let transports = [
        ("tcp", "tcp://127.0.0.1:0".to_owned(), async_client),
        (
            "unix",
            format!("unix://{}/calc.sock", dir.display()),
            async_client,
        ),
        (
            "unix (abstract)",
            format!("unix:@rpc-demo-{pid}"),
            async_client,
        ),
        ("mem", format!("mem://rpc-demo-{pid}"), async_client),
        ("shm", format!("shm://rpc-demo-{pid}"), async_client),
        (
            "shm (blocking client)",
            format!("shm://rpc-demo-b-{pid}"),
            blocking,
        ),
        (
            "mmap",
            format!("mmap://{}/calc.seg", dir.display()),
            async_client,
        ),
        (
            "sysv-shm",
            format!("sysv-shm://rpc-demo-{pid}"),
            async_client,
        ),
        (
            "pipes (spawned child)",
            format!("spawn:{this} --serve-stdio"),
            async_client,
        ),
        (
            "fifo",
            format!("fifo://{}/calc.fifo", dir.display()),
            async_client,
        ),
        ("mq", format!("mq://rpc-demo-{pid}"), async_client),
        ("sysv-mq", format!("sysv-mq://rpc-demo-{pid}"), async_client),
    ];
    println!("| transport | address | calls | p50 | p99 |");
    println!("|---|---|---:|---:|---:|");
    let mut failed = false;
    for (name, address, kind) in transports {
        failed |= !print_row(name, &address, measure(&address, kind, CALLS).await);
    }
    let tls = "tls://127.0.0.1:0";
    let measured = match tls_setup() {
        Ok(setup) => measure_with(tls, async_client, CALLS, setup)
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error),
    };
    failed |= !print_row("tls", tls, measured);
    println!();
    println!("| demo | address | outcome |");
    println!("|---|---|---|");
    let both = format!("unix://{}/calc-and-kv.sock", dir.display());
    let kv_only = format!("shm://rpc-demo-kv-{pid}");
    match idl_examples::demo_services::rows(&both, &kv_only).await {
        Ok(rows) => {
            for row in rows {
                match row.outcome {
                    Ok(outcome) => println!("| {} | {} | {outcome} |", row.what, row.address),
                    Err(error) => {
                        failed = true;
                        println!("| {} | {} | failed: {error} |", row.what, row.address);
                    }
                }
            }
        }
        Err(error) => {
            failed = true;
            println!("| serving Calculator and Kv together | {both} | failed: {error} |");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
