//! What is measured on each framework transport, from the client side (this process: the
//! async client on both [`Runtimes`], the blocking client outside any runtime), against a
//! server in its own process.

use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::process::ChildStdout;
use std::time::Duration;

use anyhow::{Context as _, anyhow, ensure};
use idl_examples::CalculatorClient;
use rpc_core::ClientOptions;
use serde::Serialize;
use tokio::runtime::Runtime;

use super::runtimes::{PerRuntime, RuntimeKind, Runtimes};

use super::MIB;
use super::env::Env;
use super::plan::Plan;
use super::proc::{ChildGuard, cpu_args, rss_kib};
use super::progress::Progress;
use super::raw::Mech;
use super::stats::{
    Bulk, CheckedAdd, Latency, bulk_async, check_pattern, concurrent_rate, pattern, rate_async,
    time_async,
};
use super::tarpc_svc::TarpcNet;
use super::tls;
use super::transports::{Endpoint, TransportSpec};

/// The largest frame client and server accept: room for a 64 MiB echo and its header.
pub const MAX_FRAME: usize = 64 * MIB + MIB;

/// Every figure of one framework transport.
#[derive(Debug, Clone, Serialize)]
pub struct TransportResult {
    /// The transport's short name.
    pub transport: &'static str,
    /// The address the client connected to.
    pub address: String,
    /// The raw mechanism it is compared with.
    pub raw_mechanism: Option<Mech>,
    /// The tarpc transport it is compared with.
    pub tarpc: Option<TarpcNet>,
    /// The async client's figures on each runtime.
    pub asynchronous: PerRuntime<AsyncFigures>,
    /// Sequential `add` calls from the blocking client (`None`: not available yet).
    pub latency_blocking: Option<Latency>,
    /// How many calls were in flight for [`AsyncFigures::in_flight`].
    pub in_flight_calls: usize,
    /// `process_count` `rpc-bench client` processes (each on the default multi-threaded
    /// runtime) calling sequentially at once: calls per second, added up.
    pub processes: f64,
    /// How many client processes.
    pub process_count: usize,
    /// Server memory per idle connection (`None` without a single server process).
    pub memory: Option<Memory>,
}

/// What the async client measures on one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct AsyncFigures {
    /// Sequential `add` calls.
    pub latency: Latency,
    /// Calls per second, one call in flight (sequential).
    pub one_in_flight: f64,
    /// Calls per second of `in_flight_calls` spawned tasks sharing one connection (cloned
    /// client).
    pub in_flight: f64,
    /// `echo` of 1 MiB (and 64 MiB unless skipped).
    pub echo: Vec<Bulk>,
}

impl TransportResult {
    /// The async figures of `kind`.
    pub fn on(&self, kind: RuntimeKind) -> &AsyncFigures {
        self.asynchronous.get(kind)
    }
}

/// The server's resident memory around opening idle connections.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// VmRSS with one connection open, KiB.
    pub rss_before_kib: u64,
    /// VmRSS with `connections` more open, KiB.
    pub rss_after_kib: u64,
    /// Idle connections opened.
    pub connections: usize,
    /// `(after - before) / connections`, KiB.
    pub per_connection_kib: f64,
}

/// A framework server process and its stdout (kept open so its writes never fail).
#[derive(Debug)]
pub struct ServerProcess {
    /// The process, killed when dropped.
    pub child: ChildGuard,
    _stdout: ChildStdout,
}

/// Measures every figure of `spec`: server memory, the blocking client, the async client on
/// each runtime (each with a connection of its own), then the extra client processes.
pub fn measure(
    spec: &TransportSpec,
    env: &Env,
    plan: &Plan,
    runtimes: &Runtimes,
    progress: &Progress,
) -> anyhow::Result<TransportResult> {
    let step = |what: &str| progress.note(&format!("{}: {what}", spec.name));
    let (server, address) = start_server(spec, env, plan.phase_limit)?;
    let defaults = ClientOptions::default();
    let plain = tls::options_for(env, &address, defaults.clone())?;
    let options = tls::options_for(
        env,
        &address,
        defaults
            .max_frame_size(MAX_FRAME)
            .call_timeout(Some(plan.phase_limit)),
    )?;
    let limit = plan.phase_limit;

    let memory = match &server {
        Some(server) => {
            step("memory per idle connection");
            let pid = server.child.pid();
            let measured = memory(&address, &plain, pid, plan);
            let runtime = runtimes.get(RuntimeKind::MultiThread);
            Some(runtime.block_on(bounded(limit, "memory", measured))?)
        }
        None => None,
    };

    step("blocking small-call latency");
    let latency_blocking = blocking_latency(&address, plain, plan).transpose()?;

    let asynchronous = runtimes.each(|kind, runtime| {
        step(&format!("async client on {}", kind.label()));
        async_figures(runtime, &address, options.clone(), plan, &step)
    })?;

    step(&format!("{} client processes", plan.client_processes));
    let processes = processes(env, &address, plan)?;
    drop(server);
    Ok(TransportResult {
        transport: spec.name,
        address,
        raw_mechanism: spec.raw,
        tarpc: spec.tarpc,
        asynchronous,
        latency_blocking,
        in_flight_calls: plan.in_flight,
        processes,
        process_count: plan.client_processes,
        memory,
    })
}

/// The async client's figures on `runtime`: it connects, calls and is dropped inside the
/// runtime, as a user's `#[tokio::main] async fn main` would; the calls in flight are
/// `tokio::spawn`ed tasks (on a multi-threaded runtime, its workers).
fn async_figures(
    runtime: &Runtime,
    address: &str,
    options: ClientOptions,
    plan: &Plan,
    step: &impl Fn(&str),
) -> anyhow::Result<AsyncFigures> {
    let limit = plan.phase_limit;
    runtime.block_on(async {
        let client = bounded(limit, "connect", async {
            Ok(CalculatorClient::connect_with(address, options).await?)
        })
        .await?;
        step("small-call latency");
        let latency = bounded(limit, "latency", async {
            time_async(plan.warmup, plan.latency_calls, |i| add(&client, i)).await
        })
        .await?;
        step("throughput");
        let one_in_flight = bounded(limit, "1 in flight", async {
            rate_async(plan.throughput_time, |i| add(&client, i)).await
        })
        .await?;
        let in_flight = bounded(
            limit,
            "calls in flight",
            concurrent_rate(&client, plan.in_flight, plan.throughput_time),
        )
        .await?;
        let mut echo = Vec::new();
        for (size, iterations) in [
            (MIB, plan.echo_small_iterations),
            (64 * MIB, plan.echo_large_iterations),
        ] {
            if iterations > 0 {
                step(&format!("echo {} MiB", size / MIB));
                let measured = echo_rate(&client, size, iterations, plan.bulk_time);
                echo.push(bounded(limit, "echo", measured).await?);
            }
        }
        Ok(AsyncFigures {
            latency,
            one_in_flight,
            in_flight,
            echo,
        })
    })
}

/// Small-call latency of the blocking client (`CalculatorBlockingClient`), run outside any
/// runtime on the main thread, before the async phases.
pub fn blocking_latency(
    address: &str,
    options: ClientOptions,
    plan: &Plan,
) -> Option<anyhow::Result<Latency>> {
    let calc = match idl_examples::CalculatorBlockingClient::connect_with(address, options) {
        Ok(calc) => calc,
        Err(e) => return Some(Err(e.into())),
    };
    Some(super::stats::time_sync(
        plan.warmup,
        plan.latency_calls,
        |i| {
            let i = i as i64;
            ensure!(calc.add(i, i)? == i.wrapping_mul(2), "wrong sum");
            Ok(())
        },
    ))
}

/// Starts the server process of `spec` (if it has one), waits at most `limit` for its address
/// and returns the address to call.
pub fn start_server(
    spec: &TransportSpec,
    env: &Env,
    limit: Duration,
) -> anyhow::Result<(Option<ServerProcess>, String)> {
    match spec.endpoint {
        Endpoint::Served(listen) => {
            let listen = listen(env);
            let mut args: Vec<OsString> = vec![
                "serve".into(),
                "--listen".into(),
                listen.clone().into(),
                "--max-frame".into(),
                MAX_FRAME.to_string().into(),
            ];
            args.extend(cpu_args(env.cpus.server));
            args.extend(tls::server_args(env, &listen));
            let what = format!("{} server", spec.name);
            let mut child = ChildGuard::spawn(&env.exe, &args, false, &what)?;
            let mut stdout = child.take_stdout()?;
            let address = child.read_line_within(&mut stdout, limit)?;
            Ok((
                Some(ServerProcess {
                    child,
                    _stdout: stdout,
                }),
                address,
            ))
        }
        Endpoint::ClientSpawned(address) => Ok((None, address(env))),
    }
}

/// Fails with `what` if `future` takes longer than `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| anyhow!("{what} took longer than {limit:?}"))?
}

/// `add(i, i)`, checked.
async fn add(client: &CalculatorClient, i: u64) -> anyhow::Result<()> {
    let i = i as i64;
    let sum = client.add(i, i).await?;
    ensure!(sum == i.wrapping_mul(2), "add({i}, {i}) returned {sum}");
    Ok(())
}

/// `echo` of `size` bytes, checked, after one untimed call.
async fn echo_rate(
    client: &CalculatorClient,
    size: usize,
    iterations: usize,
    time: Duration,
) -> anyhow::Result<Bulk> {
    // The same block each time (cloning `Bytes` copies nothing); the reply is checked.
    let data = rpc_core::Bytes::from(pattern(size));
    let echo = |_: Vec<u8>| {
        let data = data.clone();
        async move {
            let back = client.echo(data).await?;
            ensure!(
                check_pattern(&back, size),
                "echo of {size} bytes came back wrong"
            );
            anyhow::Ok(Vec::new())
        }
    };
    echo(Vec::new()).await?;
    bulk_async(size, iterations, time, Vec::new(), echo).await
}

/// Server VmRSS with one connection, then with `plan.idle_connections` more (each made one
/// call, so its buffers exist), or as many as the system allows: message queues stop at the
/// user's `RLIMIT_MSGQUEUE`, and the table says how many were opened.
async fn memory(
    address: &str,
    options: &ClientOptions,
    pid: u32,
    plan: &Plan,
) -> anyhow::Result<Memory> {
    let settle = Duration::from_millis(200);
    tokio::time::sleep(settle).await;
    let before = rss_kib(pid)?;
    let mut idle = Vec::with_capacity(plan.idle_connections);
    for i in 0..plan.idle_connections {
        let client = match CalculatorClient::connect_with(address, options.clone()).await {
            Err(rpc_core::RpcError::Connect {
                source: rpc_core::transport::TransportError::LimitReached { .. },
                ..
            }) if !idle.is_empty() => break,
            other => other?,
        };
        add(&client, i as u64).await?;
        idle.push(client);
    }
    let opened = idle.len();
    tokio::time::sleep(settle).await;
    let after = rss_kib(pid)?;
    drop(idle);
    // Let the closed connections' tasks finish (on message queues they unlink their queues),
    // so the next client's connection is not refused by RLIMIT_MSGQUEUE.
    tokio::time::sleep(settle).await;
    Ok(Memory {
        rss_before_kib: before,
        rss_after_kib: after,
        connections: opened,
        per_connection_kib: (after as f64 - before as f64) / opened.max(1) as f64,
    })
}

/// Runs `plan.client_processes` `rpc-bench client` processes at once; returns their calls per
/// second added up.
fn processes(env: &Env, address: &str, plan: &Plan) -> anyhow::Result<f64> {
    let mut clients = Vec::new();
    for n in 0..plan.client_processes {
        let mut args: Vec<OsString> = vec![
            "client".into(),
            "--connect".into(),
            address.into(),
            "--millis".into(),
            plan.processes_time.as_millis().to_string().into(),
        ];
        args.extend(cpu_args(env.cpus.client));
        args.extend(tls::client_args(env, address));
        let mut child = ChildGuard::spawn(&env.exe, &args, true, &format!("client process {n}"))?;
        let stdout = child.take_stdout()?;
        let stdin = child.take_stdin()?;
        clients.push((child, stdout, stdin));
    }
    for (child, stdout, _) in &mut clients {
        let line = child.read_line_within(stdout, plan.phase_limit)?;
        ensure!(line == "ready", "{}: unexpected {line:?}", child.what());
    }
    for (_, _, stdin) in &mut clients {
        writeln!(stdin, "go")?;
        stdin.flush()?;
    }
    let mut rate = 0.0;
    for (child, stdout, _) in &mut clients {
        let line = child.read_line_within(stdout, plan.processes_time + plan.phase_limit)?;
        let (calls, nanos) = parse_counts(&line)
            .with_context(|| format!("{}: unexpected {line:?}", child.what()))?;
        rate += calls as f64 / (nanos as f64 / 1e9);
    }
    for (child, _, _) in clients {
        child.finish(plan.phase_limit)?;
    }
    Ok(rate)
}

/// Parses `calls N nanos T`.
fn parse_counts(line: &str) -> Option<(u64, u64)> {
    let mut words = line.split_whitespace();
    match (words.next()?, words.next()?, words.next()?, words.next()?) {
        ("calls", calls, "nanos", nanos) => Some((calls.parse().ok()?, nanos.parse().ok()?)),
        _ => None,
    }
}

impl CheckedAdd for CalculatorClient {
    fn checked_add(&self, i: u64) -> impl Future<Output = anyhow::Result<()>> + Send {
        add(self, i)
    }
}
