//! The framework's child processes: `rpc-bench serve` (the server of every framework
//! measurement) and `rpc-bench client` (one of the extra client processes).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use idl_examples::{Calc, CalculatorClient, CalculatorServer};
use rpc_core::ClientOptions;

use super::proc::read_line;

/// `rpc-bench serve --listen ADDR`: serves the calculator and prints the bound address as
/// stdout's first line (except on `stdio`, where stdout is the transport). Runs until SIGTERM
/// (then shuts down gracefully), or on `stdio` until its one connection closes.
///
/// The server is started as the README's quick start shows: a default `rpc_core::Server::new()`
/// (only `max_frame_size` raised, for the 64 MiB echo; a `tls://` listener adds its certificate
/// and key, PEM files) on the default multi-threaded runtime, built exactly as `#[tokio::main]`
/// builds it (no worker count or other tuning). It calls `start` rather than `serve` only to
/// learn the bound address and to shut down on SIGTERM; `serve` is `start` plus waiting.
pub fn serve(listen: &str, max_frame: usize, tls: Option<(&Path, &Path)>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the runtime")?;
    runtime.block_on(async {
        let mut server = rpc_core::Server::new().max_frame_size(max_frame);
        if let Some((cert, key)) = tls {
            server =
                server.transport_setting(rpc_core::TlsServerSettings::from_pem_files(cert, key)?);
        }
        let handle = server
            .start(CalculatorServer::new(Calc), &[listen])
            .await
            .with_context(|| format!("serve on {listen}"))?;
        if listen != "stdio" {
            let mut stdout = std::io::stdout();
            writeln!(stdout, "{}", handle.local_address())?;
            stdout.flush()?;
        }
        // SIGTERM (how the benchmark stops its servers) shuts down gracefully, so named
        // resources such as a message queue are removed.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = handle.finished() => {}
            _ = terminate.recv() => {}
        }
        handle.shutdown().await;
        Ok(())
    })
}

/// `rpc-bench client --connect ADDR --millis T`: connects, warms up, prints `ready`, waits for
/// a line on stdin, then calls `add` sequentially for T ms and prints `calls N nanos T`.
/// A `tls://` server's certificate is verified against `tls_ca` (a PEM file). Runs on the
/// default multi-threaded runtime (as `#[tokio::main]` builds it), like a user's client.
pub fn client(address: &str, millis: u64, tls_ca: Option<&Path>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the runtime")?;
    let calc = runtime.block_on(async {
        let options = super::tls::client_options(ClientOptions::default(), tls_ca)?;
        let calc = CalculatorClient::connect_with(address, options).await?;
        for i in 0..100 {
            ensure!(calc.add(i, i).await? == 2 * i, "wrong sum");
        }
        anyhow::Ok(calc)
    })?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    read_line(&mut std::io::stdin())?.context("no go line on stdin")?;
    let (calls, elapsed) = runtime.block_on(async {
        let limit = Duration::from_millis(millis);
        let start = Instant::now();
        let mut calls = 0i64;
        while start.elapsed() < limit {
            ensure!(calc.add(calls, 1).await? == calls + 1, "wrong sum");
            calls += 1;
        }
        anyhow::Ok((calls, start.elapsed()))
    })?;
    writeln!(stdout, "calls {calls} nanos {}", elapsed.as_nanos())?;
    stdout.flush()?;
    Ok(())
}
