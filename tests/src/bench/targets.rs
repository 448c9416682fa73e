//! The speed targets of the shared-memory and benchmark issues, each checked against figures
//! of the same run: one row per target with the measured ratio and whether it is met.

use std::fmt::Write;

use super::framework::TransportResult;
use super::raw::Mech;
use super::report::Report;
use super::tarpc_svc::TarpcNet;

const MIB: usize = 1024 * 1024;

/// One target: what it asks, the ratio measured, and the bound.
struct Target {
    what: String,
    measured: Option<f64>,
    bound: Bound,
}

#[derive(Clone, Copy)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn row(&self) -> String {
        let (bound, met) = match (self.bound, self.measured) {
            (Bound::AtMost(b), Some(m)) => (format!("≤ {b}"), Some(m <= b)),
            (Bound::AtLeast(b), Some(m)) => (format!("≥ {b}"), Some(m >= b)),
            (Bound::AtMost(b), None) => (format!("≤ {b}"), None),
            (Bound::AtLeast(b), None) => (format!("≥ {b}"), None),
        };
        let measured = self.measured.map_or("-".to_owned(), |m| format!("{m:.2}"));
        let met = match met {
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
    t.echo
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

fn targets(report: &Report) -> Vec<Target> {
    let shm = transport(report, "shm");
    let unix = transport(report, "unix");
    let raw = |mech| report.raw_of(Some(mech)).map(|r| r.latency.median_us);
    let tarpc = |net| report.tarpc_of(Some(net));
    let memcpy = |bytes| {
        report
            .memcpy
            .iter()
            .find(|m| m.copy.bytes == bytes)
            .map(|m| m.copy.mib_per_s)
    };
    let blocking = |t: Option<&TransportResult>| {
        t.and_then(|t| t.latency_blocking.as_ref().map(|l| l.median_us))
    };
    let asynchronous = |t: Option<&TransportResult>| t.map(|t| t.latency_async.median_us);
    let mut all = vec![
        Target {
            what: "shm: blocking `add` median / raw shm ping-pong".into(),
            measured: div(blocking(shm), raw(Mech::Shm)),
            bound: Bound::AtMost(2.0),
        },
        Target {
            what: "shm: blocking `add` speed-up over blocking unix".into(),
            measured: div(blocking(unix), blocking(shm)),
            bound: Bound::AtLeast(20.0),
        },
        Target {
            what: "shm: async `add` speed-up over async unix".into(),
            measured: div(asynchronous(unix), asynchronous(shm)),
            bound: Bound::AtLeast(5.0),
        },
        Target {
            what: "shm: 32 in flight / tarpc unix 32 in flight".into(),
            measured: div(
                shm.map(|t| t.throughput.in_flight),
                tarpc(TarpcNet::Unix).map(|t| t.in_flight),
            ),
            bound: Bound::AtLeast(8.0),
        },
        Target {
            what: "shm: 1 MiB echo / memcpy 1 MiB".into(),
            measured: div(shm.and_then(|t| echo(t, MIB)), memcpy(MIB)),
            bound: Bound::AtLeast(0.125),
        },
        Target {
            what: "shm: 64 MiB echo / memcpy 64 MiB".into(),
            measured: div(shm.and_then(|t| echo(t, 64 * MIB)), memcpy(64 * MIB)),
            bound: Bound::AtLeast(0.25),
        },
        Target {
            what: "shm: 64 MiB echo / unix 64 MiB echo".into(),
            measured: div(
                shm.and_then(|t| echo(t, 64 * MIB)),
                unix.and_then(|t| echo(t, 64 * MIB)),
            ),
            bound: Bound::AtLeast(3.0),
        },
    ];
    // tls is compared with plain TCP in a table of its own (`tls.rs`): its raw baseline is TCP
    // without TLS, so a bound on the ratio would measure TLS itself, not the framework.
    for t in report.transports.iter().filter(|t| t.transport != "tls") {
        let raw = report.raw_of(t.raw_mechanism).map(|r| r.latency.median_us);
        let best = match t.latency_blocking.as_ref() {
            Some(b) => b.median_us.min(t.latency_async.median_us),
            None => t.latency_async.median_us,
        };
        all.push(Target {
            what: format!("{}: best `add` median / raw ping-pong", t.transport),
            measured: div(Some(best), raw),
            bound: Bound::AtMost(1.3),
        });
        if let Some(tarpc) = report.tarpc_of(t.tarpc) {
            all.push(Target {
                what: format!("{}: async `add` median / tarpc", t.transport),
                measured: div(
                    Some(t.latency_async.median_us),
                    Some(tarpc.latency.median_us),
                ),
                bound: Bound::AtMost(0.5),
            });
            all.push(Target {
                what: format!("{}: 32 in flight / tarpc", t.transport),
                measured: div(Some(t.throughput.in_flight), Some(tarpc.in_flight)),
                bound: Bound::AtLeast(2.0),
            });
            all.push(Target {
                what: format!("{}: 1 MiB echo / tarpc", t.transport),
                measured: div(echo(t, MIB), Some(tarpc.echo.mib_per_s)),
                bound: Bound::AtLeast(5.0),
            });
            all.push(Target {
                what: format!("{}: KiB per idle connection", t.transport),
                measured: t.memory.as_ref().map(|m| m.per_connection_kib),
                bound: Bound::AtMost(64.0),
            });
        }
    }
    all
}

/// Writes the targets table.
pub fn write_targets(report: &Report, out: &mut String) -> std::fmt::Result {
    writeln!(out, "### Targets, as ratios of this run\n")?;
    writeln!(out, "| target | measured | required | met |")?;
    writeln!(out, "|---|---:|---:|---|")?;
    for target in targets(report) {
        writeln!(out, "{}", target.row())?;
    }
    writeln!(out)
}
