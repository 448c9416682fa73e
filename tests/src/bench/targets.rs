//! The speed targets of the shared-memory and benchmark issues, each checked against figures
//! of the same run: one row per target with the measured ratio and whether it is met. Async
//! figures are judged on the default multi-threaded runtime; a few current-thread rows are
//! shown for comparison, without a verdict. The `loaded:` rows appear only with `--load N`.

use std::fmt::Write;

use super::framework::TransportResult;
use super::raw::Mech;
use super::report::Report;
use super::runtimes::RuntimeKind;
use super::tarpc_svc::TarpcNet;

const MIB: usize = 1024 * 1024;
/// The runtime every verdict is judged on: the default one.
const MT: RuntimeKind = RuntimeKind::MultiThread;
/// The runtime of the rows shown for comparison.
const CT: RuntimeKind = RuntimeKind::CurrentThread;

/// One target: what it asks, the ratio measured, and the bound.
struct Target {
    what: String,
    measured: Option<f64>,
    bound: Bound,
    /// Shown for comparison only (a current-thread figure): no verdict.
    informational: bool,
}

#[derive(Clone, Copy)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn new(what: impl Into<String>, measured: Option<f64>, bound: Bound) -> Target {
        Target {
            what: what.into(),
            measured,
            bound,
            informational: false,
        }
    }

    /// The same target on the current-thread runtime, shown without a verdict.
    fn info(what: impl Into<String>, measured: Option<f64>, bound: Bound) -> Target {
        Target {
            informational: true,
            ..Target::new(what, measured, bound)
        }
    }

    fn row(&self) -> String {
        let (bound, met) = match (self.bound, self.measured) {
            (Bound::AtMost(b), Some(m)) => (format!("≤ {b}"), Some(m <= b)),
            (Bound::AtLeast(b), Some(m)) => (format!("≥ {b}"), Some(m >= b)),
            (Bound::AtMost(b), None) => (format!("≤ {b}"), None),
            (Bound::AtLeast(b), None) => (format!("≥ {b}"), None),
        };
        let measured = self.measured.map_or("-".to_owned(), |m| format!("{m:.2}"));
        let met = match met {
            _ if self.informational => "(for comparison)",
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        format!("| {} | {measured} | {bound} | {met} |", self.what)
    }
}

fn transport<'a>(report: &'a Report, name: &str) -> Option<&'a TransportResult> {
    report.transports.iter().find(|t| t.transport == name)
}

fn echo(t: &TransportResult, bytes: usize) -> Option<f64> {
    t.on(MT)
        .echo
        .iter()
        .find(|b| b.bytes == bytes)
        .map(|b| b.mib_per_s)
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn min(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    }
}

/// The async median of `t` on `kind`, µs.
fn async_p50(t: Option<&TransportResult>, kind: RuntimeKind) -> Option<f64> {
    t.map(|t| t.on(kind).latency.median_us)
}

/// The blocking median of `t`, µs.
fn blocking_p50(t: Option<&TransportResult>) -> Option<f64> {
    t.and_then(|t| t.latency_blocking.as_ref().map(|l| l.median_us))
}

fn targets(report: &Report) -> Vec<Target> {
    let shm = transport(report, "shm");
    let unix = transport(report, "unix");
    let raw = |mech| report.raw_of(Some(mech)).map(|r| r.latency.median_us);
    let memcpy = |bytes| {
        report
            .memcpy
            .iter()
            .find(|m| m.copy.bytes == bytes)
            .map(|m| m.copy.mib_per_s)
    };
    let iceoryx2 = report.iceoryx2.as_ref().map(|i| i.latency.median_us);
    let tarpc_unix_in_flight = report
        .tarpc_of(Some(TarpcNet::Unix))
        .map(|t| t.on(MT).in_flight);
    let mut all = vec![
        Target::new(
            "shm: async `add` p50 / blocking `add` p50",
            div(async_p50(shm, MT), blocking_p50(shm)),
            Bound::AtMost(1.5),
        ),
        Target::info(
            "shm: async `add` p50 on current-thread / blocking `add` p50",
            div(async_p50(shm, CT), blocking_p50(shm)),
            Bound::AtMost(1.5),
        ),
        Target::new(
            "shm: async `add` p50 / iceoryx2 request-response p50",
            div(async_p50(shm, MT), iceoryx2),
            Bound::AtMost(0.6),
        ),
        Target::new(
            "shm: async `add` p99 / async `add` p50",
            shm.map(|t| t.on(MT).latency.p99_us / t.on(MT).latency.median_us),
            Bound::AtMost(3.0),
        ),
        Target::new(
            "shm: 32 in flight / tarpc unix 32 in flight",
            div(shm.map(|t| t.on(MT).in_flight), tarpc_unix_in_flight),
            Bound::AtLeast(10.0),
        ),
        Target::new(
            "shm: blocking `add` p50 / raw shm ping-pong p50",
            div(blocking_p50(shm), raw(Mech::Shm)),
            Bound::AtMost(3.0),
        ),
        Target::new(
            "shm: blocking `add` speed-up over blocking unix",
            div(blocking_p50(unix), blocking_p50(shm)),
            Bound::AtLeast(20.0),
        ),
        Target::new(
            "shm: async `add` speed-up over async unix",
            div(async_p50(unix, MT), async_p50(shm, MT)),
            Bound::AtLeast(5.0),
        ),
    ];
    if report.load > 0 {
        let unix_best = min(async_p50(unix, MT), blocking_p50(unix));
        all.push(Target::new(
            "loaded: shm async p50 / min(unix async p50, unix blocking p50)",
            div(async_p50(shm, MT), unix_best),
            Bound::AtMost(1.0),
        ));
        all.push(Target::new(
            "loaded: shm blocking p50 / min(unix async p50, unix blocking p50)",
            div(blocking_p50(shm), unix_best),
            Bound::AtMost(1.0),
        ));
        for t in &report.transports {
            let worst = t
                .latency_blocking
                .as_ref()
                .map_or(0.0, |b| b.p99_us)
                .max(t.on(MT).latency.p99_us);
            all.push(Target::new(
                format!("loaded: {}: worst p99 (async, blocking), ms", t.transport),
                Some(worst / 1000.0),
                Bound::AtMost(10.0),
            ));
        }
    }
    all.extend([
        Target::new(
            "shm: 1 MiB echo / memcpy 1 MiB",
            div(shm.and_then(|t| echo(t, MIB)), memcpy(MIB)),
            Bound::AtLeast(0.25),
        ),
        Target::new(
            "shm: 64 MiB echo / memcpy 64 MiB",
            div(shm.and_then(|t| echo(t, 64 * MIB)), memcpy(64 * MIB)),
            Bound::AtLeast(0.25),
        ),
        Target::new(
            "shm: 64 MiB echo / unix 64 MiB echo",
            div(
                shm.and_then(|t| echo(t, 64 * MIB)),
                unix.and_then(|t| echo(t, 64 * MIB)),
            ),
            Bound::AtLeast(3.0),
        ),
    ]);
    // tls is compared with plain TCP in a table of its own (`tls.rs`): its raw baseline is TCP
    // without TLS, so a bound on the ratio would measure TLS itself, not the framework.
    for t in report.transports.iter().filter(|t| t.transport != "tls") {
        let raw = report.raw_of(t.raw_mechanism).map(|r| r.latency.median_us);
        let best = match t.latency_blocking.as_ref() {
            Some(b) => b.median_us.min(t.on(MT).latency.median_us),
            None => t.on(MT).latency.median_us,
        };
        all.push(Target::new(
            format!("{}: best `add` p50 / raw ping-pong", t.transport),
            div(Some(best), raw),
            Bound::AtMost(1.3),
        ));
        if let Some(tarpc) = report.tarpc_of(t.tarpc) {
            for kind in RuntimeKind::ALL {
                let (ours, theirs) = (t.on(kind), tarpc.on(kind));
                let (p50, in_flight) = (
                    div(Some(ours.latency.median_us), Some(theirs.latency.median_us)),
                    div(Some(ours.in_flight), Some(theirs.in_flight)),
                );
                let on = if kind == MT { "" } else { " on current-thread" };
                for mut row in [
                    Target::new(
                        format!("{}: async `add` p50 / tarpc's{on}", t.transport),
                        p50,
                        Bound::AtMost(0.3),
                    ),
                    Target::new(
                        format!("{}: 32 in flight / tarpc's{on}", t.transport),
                        in_flight,
                        Bound::AtLeast(3.0),
                    ),
                ] {
                    row.informational = kind != MT;
                    all.push(row);
                }
            }
            all.push(Target::new(
                format!("{}: 1 MiB echo / tarpc", t.transport),
                div(echo(t, MIB), Some(tarpc.on(MT).echo.mib_per_s)),
                Bound::AtLeast(5.0),
            ));
            all.push(Target::new(
                format!("{}: KiB per idle connection", t.transport),
                t.memory.as_ref().map(|m| m.per_connection_kib),
                Bound::AtMost(64.0),
            ));
        }
    }
    all
}

/// Writes the targets table.
pub fn write_targets(report: &Report, out: &mut String) -> std::fmt::Result {
    writeln!(
        out,
        "### Targets, as ratios of this run (async client on {})\n",
        MT.label()
    )?;
    writeln!(out, "| target | measured | required | met |")?;
    writeln!(out, "|---|---:|---:|---|")?;
    for target in targets(report) {
        writeln!(out, "{}", target.row())?;
    }
    writeln!(out)
}
