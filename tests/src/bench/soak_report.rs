//! [`SoakReport`]: what `rpc-bench --soak` counted and measured, as a markdown table (stdout)
//! and JSON (`--json`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::cli::Pin;
use super::proc::Cpus;

/// Everything one soak run counted.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Connections asked for per transport.
    pub connections: usize,
    /// Calls asked for per transport.
    pub calls: u64,
    /// The `--pin` setting.
    pub pin: Pin,
    /// The CPUs client and servers were pinned to.
    pub cpus: Cpus,
    /// CPUs this process may run on.
    pub available_cpus: usize,
    /// Wall time of the whole run, seconds.
    pub elapsed_secs: f64,
    /// One entry per transport soaked.
    pub results: Vec<SoakResult>,
    /// Transports that could not be soaked, with the reason.
    pub errors: Vec<String>,
}

/// One transport's soak.
#[derive(Debug, Clone, Serialize)]
pub struct SoakResult {
    /// The transport's short name.
    pub transport: &'static str,
    /// The address the clients connected to.
    pub address: String,
    /// Connections asked for.
    pub connections: usize,
    /// Connections that opened.
    pub connected: usize,
    /// Calls asked for.
    pub calls: u64,
    /// Calls sent.
    pub sent: u64,
    /// Replies with the exact sum.
    pub ok: u64,
    /// Replies with another value.
    pub wrong: u64,
    /// Calls that ended in an error, or were never sent because their connection had not
    /// opened or had closed.
    pub failed: u64,
    /// Seconds to open the connections.
    pub connect_secs: f64,
    /// Seconds from the first call to the last reply (connections already open).
    pub wall_secs: f64,
    /// `ok / wall_secs`.
    pub calls_per_sec: f64,
    /// Whether every call ended before the time limit.
    pub finished: bool,
    /// The server process.
    pub server_pid: u32,
    /// Server VmRSS before any connection, KiB.
    pub rss_start_kib: u64,
    /// Server VmHWM (its peak VmRSS), KiB.
    pub rss_peak_kib: u64,
    /// Server VmRSS once the clients had gone, KiB.
    pub rss_after_kib: u64,
    /// Descriptors the server held before any connection.
    pub fds_start: usize,
    /// Descriptors the server held with every connection open.
    pub fds_connected: usize,
    /// Descriptors the server held once the clients had gone.
    pub fds_after: usize,
    /// Client-side errors, most frequent first.
    pub client_errors: Vec<ErrorKind>,
}

/// One kind of client-side error and how many calls (or connections) it hit.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorKind {
    /// `connect`, `call`, `wrong sum`, `not sent`, `task` or `other`.
    pub stage: String,
    /// The error (for a wrong sum: the first call it happened to).
    pub message: String,
    /// Occurrences.
    pub count: u64,
}

impl SoakResult {
    /// Calls that neither came back nor failed (abandoned at the time limit).
    pub fn lost(&self) -> u64 {
        self.calls
            .saturating_sub(self.ok + self.wrong + self.failed)
    }

    /// Every call came back with the exact sum.
    pub fn passed(&self) -> bool {
        self.ok == self.calls && self.wrong == 0 && self.failed == 0
    }

    /// Client-side errors, added up.
    pub fn error_count(&self) -> u64 {
        self.client_errors.iter().map(|e| e.count).sum()
    }
}

impl SoakReport {
    /// Every transport was soaked and every call on it came back right.
    pub fn passed(&self) -> bool {
        self.errors.is_empty() && self.results.iter().all(SoakResult::passed)
    }

    /// Writes the JSON form to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(path, json + "\n").with_context(|| format!("write {}", path.display()))
    }

    /// The markdown table, the client errors and the transports that failed.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = self.write_markdown(&mut out);
        out
    }

    fn write_markdown(&self, out: &mut String) -> std::fmt::Result {
        let cpu = |c: Option<usize>| c.map_or_else(|| "any".into(), |c| c.to_string());
        writeln!(
            out,
            "## rpc-bench --soak ({} connections x {} calls per transport, pin {}: client CPU \
             {}, server CPU {}; {} CPUs; {:.0} s)\n",
            self.connections,
            self.calls,
            format!("{:?}", self.pin).to_lowercase(),
            cpu(self.cpus.client),
            cpu(self.cpus.server),
            self.available_cpus,
            self.elapsed_secs
        )?;
        writeln!(
            out,
            "Each connection calls `add(a, b)` one call after another with its share of the \
             calls; every reply is compared with `a + b`. Wall time runs from the first call \
             to the last reply, calls/s counts correct replies. Server memory from \
             /proc/PID/status: VmRSS at start (no connection), VmHWM (peak), VmRSS after the \
             clients left; its descriptors (/proc/PID/fd) at start, connected and after.\n"
        )?;
        writeln!(
            out,
            "| transport | connections | calls | sent | ok | wrong | failed | lost | connect, s \
             | wall, s | calls/s | server RSS start, KiB | server peak (VmHWM), KiB | server RSS \
             after, KiB | server fds start/connected/after | client errors | result |"
        )?;
        writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
        )?;
        for r in &self.results {
            writeln!(
                out,
                "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.0} | {} | {} \
                 | {} | {}/{}/{} | {} | {} |",
                r.transport,
                r.connected,
                r.connections,
                r.calls,
                r.sent,
                r.ok,
                r.wrong,
                r.failed,
                r.lost(),
                r.connect_secs,
                r.wall_secs,
                r.calls_per_sec,
                r.rss_start_kib,
                r.rss_peak_kib,
                r.rss_after_kib,
                r.fds_start,
                r.fds_connected,
                r.fds_after,
                r.error_count(),
                if r.passed() { "pass" } else { "**FAIL**" }
            )?;
        }
        writeln!(out)?;
        let with_errors: Vec<&SoakResult> = self
            .results
            .iter()
            .filter(|r| !r.client_errors.is_empty())
            .collect();
        if !with_errors.is_empty() {
            writeln!(out, "### Client errors\n")?;
            for r in with_errors {
                for e in &r.client_errors {
                    writeln!(
                        out,
                        "- {}: {} x{}: {}",
                        r.transport, e.stage, e.count, e.message
                    )?;
                }
            }
            writeln!(out)?;
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
}
