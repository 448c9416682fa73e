//! [`Report`]: every figure of a run, as markdown tables (stdout) and JSON (`--json`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::MIB;
use super::cli::Pin;
use super::framework::TransportResult;
use super::iceoryx::IceoryxResult;
use super::memcpy::MemcpyResult;
use super::plan::Plan;
use super::proc::Cpus;
use super::raw::{Mech, RawResult};
use super::runtimes::{PerRuntime, RuntimeKind};
use super::stats::Latency;
use super::tarpc_svc::{TarpcNet, TarpcResult};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `full`, `quick` or `tiny`.
    pub mode: &'static str,
    /// The `--pin` setting.
    pub pin: Pin,
    /// The CPUs client and servers were pinned to.
    pub cpus: Cpus,
    /// CPUs this process may run on.
    pub available_cpus: usize,
    /// Busy-loop processes that ran beside client and server (`--load N`).
    pub load: usize,
    /// What the `multi_thread` and `current_thread` keys of every async figure stand for.
    pub runtimes: PerRuntime<&'static str>,
    /// Worker threads of the client's multi-threaded runtime (as `#[tokio::main]` builds it
    /// in this process, after pinning).
    pub runtime_workers: usize,
    /// The `RUST_LOG` filter every process of the run logged through (see
    /// [`super::logging`]); `None`: no subscriber.
    pub logging: Option<String>,
    /// Wall time of the whole run, seconds.
    pub elapsed_secs: f64,
    /// Iterations and time budgets.
    pub plan: Plan,
    /// Framework transports.
    pub transports: Vec<TransportResult>,
    /// Raw ping-pong baselines.
    pub raw: Vec<RawResult>,
    /// tarpc on the same transports.
    pub tarpc: Vec<TarpcResult>,
    /// iceoryx2 request-response (`None`: not built with the `iceoryx2` feature, or not
    /// selected).
    pub iceoryx2: Option<IceoryxResult>,
    /// In-process copy bandwidth.
    pub memcpy: Vec<MemcpyResult>,
    /// Measurements that failed, with the reason.
    pub errors: Vec<String>,
}

impl Report {
    /// The raw baseline of `mech`, if measured.
    pub fn raw_of(&self, mech: Option<Mech>) -> Option<&RawResult> {
        self.raw.iter().find(|r| Some(r.mechanism) == mech)
    }

    /// tarpc's figures on `net`, if measured.
    pub fn tarpc_of(&self, net: Option<TarpcNet>) -> Option<&TarpcResult> {
        self.tarpc.iter().find(|r| Some(r.transport) == net)
    }

    /// Writes the JSON form to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("write {}", path.display()))
    }

    /// The markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        writeln!(
            out,
            "## rpc-bench ({} run, pin {}: client CPU {}, server CPU {}; load {}; {:.0} s)\n",
            self.mode,
            format!("{:?}", self.pin).to_lowercase(),
            cpu(self.cpus.client),
            cpu(self.cpus.server),
            self.load,
            self.elapsed_secs
        )?;
        writeln!(
            out,
            "Async client figures on two tokio runtimes: **{}** ({} worker{}; every ratio and \
             target is judged on it) and **{}**. Servers: a default `rpc_core::Server::new()` \
             on the default multi-thread runtime. Load: {}. Logging: {}.\n",
            RuntimeKind::MultiThread.label(),
            self.runtime_workers,
            if self.runtime_workers == 1 { "" } else { "s" },
            RuntimeKind::CurrentThread.label(),
            if self.load == 0 {
                "none".to_owned()
            } else {
                format!(
                    "{} busy-loop process{}",
                    self.load,
                    if self.load == 1 { "" } else { "es" }
                )
            },
            match &self.logging {
                None => "none (no `tracing` subscriber)".to_owned(),
                Some(filter) => format!(
                    "every process (ours, tarpc's, iceoryx2's) with a `tracing_subscriber::fmt` \
                     subscriber, `RUST_LOG={filter}`, output discarded"
                ),
            }
        )?;
        if self.load > 0 {
            self.loaded_section(out)?;
        }
        if !self.transports.is_empty() {
            for kind in RuntimeKind::ALL {
                self.latency_table(out, kind)?;
            }
            for kind in RuntimeKind::ALL {
                self.throughput_table(out, kind)?;
            }
            for kind in RuntimeKind::ALL {
                self.bulk_table(out, kind)?;
            }
            self.memory_table(out)?;
            super::tls::write_cost(self, out)?;
        }
        if !self.raw.is_empty() {
            writeln!(
                out,
                "### Raw ping-pong, {}-byte request and reply, µs\n",
                super::raw::MSG
            )?;
            writeln!(out, "| mechanism | median | p99 | round trips |")?;
            writeln!(out, "|---|---:|---:|---:|")?;
            for r in &self.raw {
                let l = &r.latency;
                writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    r.mechanism.name(),
                    us(l.median_us),
                    us(l.p99_us),
                    l.samples
                )?;
            }
            writeln!(out)?;
        }
        if !self.memcpy.is_empty() {
            writeln!(out, "### In-process copy (the ceiling for bulk), MiB/s\n")?;
            writeln!(out, "| size | copy_from_slice | to_vec (allocating) |")?;
            writeln!(out, "|---|---:|---:|")?;
            for m in &self.memcpy {
                writeln!(
                    out,
                    "| {} | {} | {} |",
                    size(m.copy.bytes),
                    num(m.copy.mib_per_s),
                    num(m.allocating_copy.mib_per_s)
                )?;
            }
            writeln!(out)?;
        }
        if !self.transports.is_empty() {
            super::targets::write_targets(self, out)?;
        }
        if !self.errors.is_empty() {
            writeln!(out, "### Failed\n")?;
            for e in &self.errors {
                writeln!(out, "- {e}")?;
            }
            writeln!(out)?;
        }
        Ok(())
    }

    fn loaded_section(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "### Loaded machine (--load {})\n", self.load)?;
        writeln!(
            out,
            "{} busy-loop process{} (`rpc-bench burn`, unpinned) ran beside client and server \
             during every measurement of this report. Worst case per transport, µs:\n",
            self.load,
            if self.load == 1 { "" } else { "es" }
        )?;
        writeln!(
            out,
            "| transport | async p99, {} | async p99, {} | blocking p99 | worst p99 ≤ 10 ms |",
            RuntimeKind::MultiThread.label(),
            RuntimeKind::CurrentThread.label()
        )?;
        writeln!(out, "|---|---:|---:|---:|---|")?;
        for t in &self.transports {
            let b = t.latency_blocking.as_ref();
            let worst = RuntimeKind::ALL
                .iter()
                .map(|&k| t.on(k).latency.p99_us)
                .chain(b.map(|l| l.p99_us))
                .fold(0.0, f64::max);
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                t.transport,
                us(t.on(RuntimeKind::MultiThread).latency.p99_us),
                us(t.on(RuntimeKind::CurrentThread).latency.p99_us),
                opt(b, |l| us(l.p99_us)),
                if worst <= 10_000.0 { "yes" } else { "**no**" }
            )?;
        }
        if let Some(ice) = &self.iceoryx2 {
            writeln!(
                out,
                "| iceoryx2 request-response | - | - | {} | {} |",
                us(ice.latency.p99_us),
                if ice.latency.p99_us <= 10_000.0 {
                    "yes"
                } else {
                    "**no**"
                }
            )?;
        }
        writeln!(out)
    }

    fn latency_table(&self, out: &mut String, kind: RuntimeKind) -> std::fmt::Result {
        writeln!(
            out,
            "### Small calls: sequential `add(i, i)`, µs; async client on {}\n",
            kind.label()
        )?;
        writeln!(
            out,
            "| transport | async median | async p99 | blocking median | blocking p99 \
             | raw median | raw p99 | async / raw | blocking / raw | tarpc median | tarpc p99 \
             | async / tarpc |"
        )?;
        writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for t in &self.transports {
            let a = &t.on(kind).latency;
            let b = t.latency_blocking.as_ref();
            let raw = self.raw_of(t.raw_mechanism).map(|r| &r.latency);
            let tarpc = self.tarpc_of(t.tarpc).map(|r| &r.on(kind).latency);
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.transport,
                us(a.median_us),
                us(a.p99_us),
                opt(b, |l| us(l.median_us)),
                opt(b, |l| us(l.p99_us)),
                opt(raw, |l| us(l.median_us)),
                opt(raw, |l| us(l.p99_us)),
                opt(raw, |l: &Latency| ratio(a.median_us, l.median_us)),
                match (b, raw) {
                    (Some(b), Some(r)) => ratio(b.median_us, r.median_us),
                    _ => "-".to_owned(),
                },
                opt(tarpc, |l| us(l.median_us)),
                opt(tarpc, |l| us(l.p99_us)),
                opt(tarpc, |l: &Latency| ratio(a.median_us, l.median_us)),
            )?;
        }
        if let Some(ice) = &self.iceoryx2 {
            let l = &ice.latency;
            let raw = self.raw_of(Some(Mech::Shm)).map(|r| &r.latency);
            writeln!(
                out,
                "| iceoryx2 request-response | - | - | {} | {} | {} | {} | - | {} | - | - | - |",
                us(l.median_us),
                us(l.p99_us),
                opt(raw, |r| us(r.median_us)),
                opt(raw, |r| us(r.p99_us)),
                opt(raw, |r: &Latency| ratio(l.median_us, r.median_us)),
            )?;
            writeln!(
                out,
                "\niceoryx2 request-response: its own client (no async runtime) polling for the \
                 reply, figures in the blocking columns; raw is the shm ping-pong."
            )?;
        }
        writeln!(out)
    }

    fn throughput_table(&self, out: &mut String, kind: RuntimeKind) -> std::fmt::Result {
        let Some(first) = self.transports.first() else {
            return Ok(());
        };
        let n = first.in_flight_calls;
        let processes = kind == RuntimeKind::MultiThread;
        writeln!(
            out,
            "### Throughput, calls/s; async client on {}\n",
            kind.label()
        )?;
        write!(
            out,
            "| transport | 1 in flight | {n} in flight, 1 connection |"
        )?;
        if processes {
            write!(
                out,
                " {} client processes (each on the default runtime) |",
                first.process_count
            )?;
        }
        writeln!(out, " tarpc {n} in flight | {n} in flight / tarpc |")?;
        writeln!(
            out,
            "|---|---:|---:|{}---:|---:|",
            if processes { "---:|" } else { "" }
        )?;
        for t in &self.transports {
            let f = t.on(kind);
            let tarpc = self.tarpc_of(t.tarpc).map(|r| r.on(kind));
            write!(
                out,
                "| {} | {} | {} |",
                t.transport,
                num(f.one_in_flight),
                num(f.in_flight)
            )?;
            if processes {
                write!(out, " {} |", num(t.processes))?;
            }
            writeln!(
                out,
                " {} | {} |",
                opt(tarpc, |r| num(r.in_flight)),
                opt(tarpc, |r| ratio(f.in_flight, r.in_flight)),
            )?;
        }
        if let Some(ice) = &self.iceoryx2 {
            write!(
                out,
                "| iceoryx2 request-response ({} outstanding requests from one client) | {} | {} |",
                ice.in_flight_calls,
                num(ice.one_in_flight),
                num(ice.in_flight)
            )?;
            if processes {
                write!(out, " - |")?;
            }
            writeln!(out, " - | - |")?;
        }
        writeln!(out)
    }

    fn bulk_table(&self, out: &mut String, kind: RuntimeKind) -> std::fmt::Result {
        let echo = |t: &TransportResult, bytes: usize| {
            t.on(kind)
                .echo
                .iter()
                .find(|b| b.bytes == bytes)
                .map(|b| b.mib_per_s)
        };
        let copy = |bytes: usize| {
            self.memcpy
                .iter()
                .find(|m| m.copy.bytes == bytes)
                .map(|m| m.allocating_copy.mib_per_s)
        };
        writeln!(
            out,
            "### Bulk: `echo` round trips, MiB/s of payload; async client on {}\n",
            kind.label()
        )?;
        writeln!(
            out,
            "| transport | 1 MiB | 64 MiB | tarpc 1 MiB | 1 MiB / tarpc | 1 MiB / to_vec |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|")?;
        for t in &self.transports {
            let small = echo(t, MIB);
            let tarpc = self.tarpc_of(t.tarpc).map(|r| r.on(kind).echo.mib_per_s);
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                t.transport,
                opt(small.as_ref(), |v| num(*v)),
                opt(echo(t, 64 * MIB).as_ref(), |v| num(*v)),
                opt(tarpc.as_ref(), |v| num(*v)),
                pair(small, tarpc, ratio),
                pair(small, copy(MIB), ratio),
            )?;
        }
        writeln!(out)
    }

    fn memory_table(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "### Server memory (VmRSS) around idle connections\n")?;
        writeln!(
            out,
            "| transport | RSS before, KiB | RSS after, KiB | connections | KiB per connection |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|")?;
        for t in &self.transports {
            let m = t.memory.as_ref();
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                t.transport,
                opt(m, |m| m.rss_before_kib.to_string()),
                opt(m, |m| m.rss_after_kib.to_string()),
                opt(m, |m| m.connections.to_string()),
                opt(m, |m| format!("{:.1}", m.per_connection_kib)),
            )?;
        }
        writeln!(out)
    }
}

fn cpu(c: Option<usize>) -> String {
    c.map_or_else(|| "any".into(), |c| c.to_string())
}

fn opt<T>(value: Option<&T>, show: impl FnOnce(&T) -> String) -> String {
    value.map_or_else(|| "-".into(), show)
}

fn pair(a: Option<f64>, b: Option<f64>, show: impl FnOnce(f64, f64) -> String) -> String {
    match (a, b) {
        (Some(a), Some(b)) => show(a, b),
        _ => "-".into(),
    }
}

/// Microseconds: two decimals below 10, one below 1000, none above.
fn us(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A count or a rate, without decimals.
fn num(v: f64) -> String {
    format!("{v:.0}")
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a / b < 0.1 {
        format!("{:.3}×", a / b)
    } else if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "-".into()
    }
}

fn size(bytes: usize) -> String {
    format!("{} MiB", bytes / MIB)
}
