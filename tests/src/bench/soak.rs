//! `rpc-bench --soak`: many connections to one server process per transport, a fixed number
//! of `add` calls spread over them, every reply checked and every call accounted for.
//!
//! The client is this process: one multi-thread tokio runtime holds every connection, and one
//! task per connection makes its share of the calls one after another, so as many calls are
//! in flight as there are connections. The server is `rpc-bench serve` with the framework's
//! default limits (10,000 connections, no per-peer limit). Its memory comes from
//! `/proc/PID/status`: VmRSS before any connection, VmRSS once the clients have gone, and
//! VmHWM, the peak over its whole life.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use futures::stream::{self, StreamExt as _};
use idl_examples::CalculatorClient;
use rpc_core::ClientOptions;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use super::cli::RunArgs;
use super::env::Env;
use super::framework::start_server;
use super::proc::{Cpus, open_fds, peak_rss_kib, pin_to, raise_nofile_limit, rss_kib};
use super::progress::Progress;
use super::soak_report::{ErrorKind, SoakReport, SoakResult};
use super::transports::{Soak, TRANSPORTS, TransportSpec};

/// How long the server may take to print its address.
const SERVER_START_LIMIT: Duration = Duration::from_secs(30);
/// Connections set up at once: each handshake must finish within the server's 2 s.
const CONNECT_CONCURRENCY: usize = 64;
/// How long one call may take before it fails with a timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a transport's calls may take; calls still unanswered then are lost.
const CALL_PHASE_LIMIT: Duration = Duration::from_secs(60 * 60);
/// How often progress is printed during the calls.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Distinct client errors kept per transport; the rest are counted under one line.
const MAX_ERROR_KINDS: usize = 20;

/// Runs the soak on every transport that allows it (or on `--only`); the exit code is failure
/// if any call came back wrong, failed or was lost, or a transport could not be soaked.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    ensure!(args.connections > 0, "--connections must be at least 1");
    let transports = select(args.only.as_deref())?;
    let nofile = raise_nofile_limit()?;
    let available_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = Cpus::choose(args.pin())?;
    pin_to(cpus.client)?;
    let env = Env::new(cpus)?;
    let progress = Progress::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the client runtime")?;
    progress.note(&format!(
        "soak: {} connections, {} calls per transport, RLIMIT_NOFILE {nofile}",
        args.connections, args.calls
    ));

    let mut results = Vec::new();
    let mut errors = Vec::new();
    for spec in transports {
        match soak_one(spec, &env, args, &runtime, &progress) {
            Ok(result) => {
                progress.note(&format!(
                    "{}: {} ok, {} wrong, {} failed, {} lost in {:.1} s",
                    spec.name,
                    result.ok,
                    result.wrong,
                    result.failed,
                    result.lost(),
                    result.wall_secs
                ));
                results.push(result);
            }
            Err(e) => {
                progress.note(&format!("{}: FAILED: {e:#}", spec.name));
                errors.push(format!("{}: {e:#}", spec.name));
            }
        }
    }
    let report = SoakReport {
        connections: args.connections,
        calls: args.calls,
        pin: args.pin(),
        cpus,
        available_cpus,
        elapsed_secs: progress.elapsed_secs(),
        results,
        errors,
    };
    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    progress.note("done");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The transports to soak: every one that allows it, or the one `only` names.
fn select(only: Option<&str>) -> anyhow::Result<Vec<&'static TransportSpec>> {
    let soaked = || TRANSPORTS.iter().filter(|t| t.soak == Soak::Yes);
    let Some(only) = only else {
        return Ok(soaked().collect());
    };
    match TRANSPORTS.iter().find(|t| t.name == only) {
        Some(spec) => match spec.soak {
            Soak::Yes => Ok(vec![spec]),
            Soak::No(why) => bail!("--soak --only {only}: not soaked: {why}"),
        },
        None => {
            let names: Vec<&str> = soaked().map(|t| t.name).collect();
            bail!(
                "--soak --only {only}: unknown; use one of {}",
                names.join(", ")
            )
        }
    }
}

/// Soaks one transport: server up, connections up, calls, clients gone, server down.
fn soak_one(
    spec: &TransportSpec,
    env: &Env,
    args: &RunArgs,
    runtime: &Runtime,
    progress: &Progress,
) -> anyhow::Result<SoakResult> {
    let note = |what: &str| progress.note(&format!("{}: {what}", spec.name));
    let (server, address) = start_server(spec, env, SERVER_START_LIMIT)?;
    let server = server.context("this transport has no server process to soak")?;
    let pid = server.child.pid();
    std::thread::sleep(Duration::from_millis(200));
    let rss_start_kib = rss_kib(pid)?;
    let fds_start = open_fds(pid)?;
    note(&format!(
        "server pid {pid} on {address}, VmRSS {rss_start_kib} KiB; {} connections",
        args.connections
    ));

    let tally = Arc::new(Tally::default());
    let connecting = Instant::now();
    let options = super::tls::options_for(
        env,
        &address,
        ClientOptions::default().call_timeout(Some(CALL_TIMEOUT)),
    )?;
    let clients = runtime.block_on(connect_all(&address, options, args.connections, &tally));
    let connect_secs = connecting.elapsed().as_secs_f64();
    let connected = clients.iter().filter(|c| c.is_some()).count();
    let fds_connected = open_fds(pid)?;
    note(&format!(
        "{connected} connected in {connect_secs:.1} s; {} calls",
        args.calls
    ));

    let calling = Instant::now();
    let finished = runtime.block_on(call_all(clients, args.calls, &tally, &note, pid));
    let wall_secs = calling.elapsed().as_secs_f64();
    if !finished {
        note(&format!(
            "stopped after {CALL_PHASE_LIMIT:?}; unanswered calls are lost"
        ));
    }
    // Every client is dropped by now; give the server time to close its side.
    let rss_after_kib = settled_rss(pid)?;
    let rss_peak_kib = peak_rss_kib(pid)?;
    let fds_after = open_fds(pid)?;
    drop(server);

    let counts = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let ok = counts(&tally.ok);
    Ok(SoakResult {
        transport: spec.name,
        address,
        connections: args.connections,
        connected,
        calls: args.calls,
        sent: counts(&tally.sent),
        ok,
        wrong: counts(&tally.wrong),
        failed: counts(&tally.failed),
        connect_secs,
        wall_secs,
        calls_per_sec: ok as f64 / wall_secs.max(1e-9),
        finished,
        server_pid: pid,
        rss_start_kib,
        rss_peak_kib,
        rss_after_kib,
        fds_start,
        fds_connected,
        fds_after,
        client_errors: tally.error_kinds(),
    })
}

/// Opens `n` connections, `CONNECT_CONCURRENCY` at a time; a failed one is `None` (and noted).
async fn connect_all(
    address: &str,
    options: ClientOptions,
    n: usize,
    tally: &Tally,
) -> Vec<Option<CalculatorClient>> {
    stream::iter(0..n)
        .map(|_| CalculatorClient::connect_with(address, options.clone()))
        .buffered(CONNECT_CONCURRENCY)
        .map(|connected| match connected {
            Ok(client) => Some(client),
            Err(e) => {
                tally.note("connect", &e.to_string(), 1);
                None
            }
        })
        .collect()
        .await
}

/// Makes `calls` calls spread over `clients`, one task per connection; `false` if they had
/// not all finished within [`CALL_PHASE_LIMIT`] (the rest were abandoned). The calls of a
/// connection that did not open count as failed.
async fn call_all(
    clients: Vec<Option<CalculatorClient>>,
    calls: u64,
    tally: &Arc<Tally>,
    note: &impl Fn(&str),
    server_pid: u32,
) -> bool {
    let n = clients.len() as u64;
    let mut tasks = JoinSet::new();
    for (c, client) in (0u64..).zip(clients) {
        let share = calls / n + u64::from(c < calls % n);
        match client {
            Some(client) => {
                tasks.spawn(connection_calls(client, c, share, tally.clone()));
            }
            None if share > 0 => {
                tally.failed.fetch_add(share, Ordering::Relaxed);
                tally.note("not sent", "its connection did not open", share);
            }
            None => {}
        }
    }
    let start = tokio::time::Instant::now();
    let deadline = tokio::time::sleep_until(start + CALL_PHASE_LIMIT);
    tokio::pin!(deadline);
    let mut ticks = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => return true,
                Some(Ok(())) => {}
                Some(Err(e)) => tally.note("task", &e.to_string(), 1),
            },
            _ = ticks.tick() => {
                let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
                let ok = load(&tally.ok);
                note(&format!(
                    "{ok}/{calls} ok ({:.0}/s), {} wrong, {} failed, {} connections busy, \
                     server VmRSS {} KiB",
                    ok as f64 / start.elapsed().as_secs_f64(),
                    load(&tally.wrong),
                    load(&tally.failed),
                    tasks.len(),
                    rss_kib(server_pid).map_or("?".into(), |k| k.to_string()),
                ));
            }
            _ = &mut deadline => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                return false;
            }
        }
    }
}

/// One connection's share: `add(a, b)` with operands derived from (connection, call), each
/// reply compared with `a + b` (wrapping, as the server adds). After an error on a closed
/// connection, the rest of the share counts as failed without being sent.
async fn connection_calls(client: CalculatorClient, c: u64, share: u64, tally: Arc<Tally>) {
    for k in 0..share {
        let (a, b) = operands(c, k);
        tally.sent.fetch_add(1, Ordering::Relaxed);
        match client.add(a, b).await {
            Ok(sum) if sum == a.wrapping_add(b) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(sum) => {
                tally.wrong.fetch_add(1, Ordering::Relaxed);
                let expected = a.wrapping_add(b);
                let example = format!(
                    "connection {c}, call {k}: add({a}, {b}) returned {sum}, expected {expected}"
                );
                tally.note("wrong sum", &example, 1);
            }
            Err(e) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tally.note("call", &e.to_string(), 1);
                if client.client().is_closed() {
                    let rest = share - k - 1;
                    if rest > 0 {
                        tally.failed.fetch_add(rest, Ordering::Relaxed);
                        tally.note("not sent", "its connection had closed", rest);
                    }
                    return;
                }
            }
        }
    }
}

/// The operands of call `k` on connection `c`: full-range values, distinct per call.
pub fn operands(c: u64, k: u64) -> (i64, i64) {
    let a = splitmix64((c << 32) ^ k);
    (a as i64, splitmix64(a) as i64)
}

/// SplitMix64's output function: a cheap, well-mixed bijection of `u64`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Server VmRSS once it has stopped changing after the clients left (two reads 500 ms apart
/// agree; at most 10 s), by when it has closed its side of the connections.
fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    let step = Duration::from_millis(500);
    std::thread::sleep(step);
    let mut last = rss_kib(pid)?;
    for _ in 0..20 {
        std::thread::sleep(step);
        let now = rss_kib(pid)?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

/// Counts shared by the connection tasks, and the client errors seen.
#[derive(Debug, Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    wrong: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<BTreeMap<(String, String), u64>>,
}

impl Tally {
    /// Records `count` occurrences of `message` in `stage`; past [`MAX_ERROR_KINDS`] distinct
    /// ones, a new kind is counted as "other".
    fn note(&self, stage: &str, message: &str, count: u64) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let key = (stage.to_owned(), message.to_owned());
        let key = if errors.contains_key(&key) || errors.len() < MAX_ERROR_KINDS {
            key
        } else if stage == "wrong sum" {
            (stage.to_owned(), "(more wrong sums)".to_owned())
        } else {
            ("other".to_owned(), "(more kinds of error)".to_owned())
        };
        *errors.entry(key).or_default() += count;
    }

    /// The errors seen, most frequent first.
    fn error_kinds(&self) -> Vec<ErrorKind> {
        let errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let mut kinds: Vec<ErrorKind> = errors
            .iter()
            .map(|((stage, message), &count)| ErrorKind {
                stage: stage.clone(),
                message: message.clone(),
                count,
            })
            .collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.count));
        kinds
    }
}

#[cfg(test)]
mod tests {
    use super::operands;

    #[test]
    fn operands_differ_per_call_and_connection() {
        let mut seen = std::collections::HashSet::new();
        for c in 0..50 {
            for k in 0..200 {
                assert!(seen.insert(operands(c, k)), "repeat at ({c}, {k})");
            }
        }
    }
}
