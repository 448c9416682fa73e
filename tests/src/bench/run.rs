//! The whole benchmark run: framework transports, raw baselines, tarpc, memcpy; then the
//! report, the JSON file and the chart.

use std::process::ExitCode;

use anyhow::{Context as _, bail};

use super::cli::RunArgs;
use super::env::Env;
use super::plan::Plan;
use super::proc::{Cpus, pin_to};
use super::progress::Progress;
use super::raw::Mech;
use super::report::Report;
use super::tarpc_svc::TarpcNet;
use super::transports::{TRANSPORTS, TransportSpec};
use super::{MIB, chart, framework, memcpy, raw, tarpc_svc};

/// What `--only` leaves to measure.
#[derive(Debug)]
pub struct Selection {
    /// Framework transports.
    pub transports: Vec<&'static TransportSpec>,
    /// Raw mechanisms.
    pub mechs: Vec<Mech>,
    /// tarpc transports.
    pub tarpc: Vec<TarpcNet>,
}

impl Selection {
    /// Everything, or the transport (with its baselines) or mechanism named by `only`.
    pub fn new(only: Option<&str>) -> anyhow::Result<Selection> {
        let Some(only) = only else {
            return Ok(Selection {
                transports: TRANSPORTS.iter().collect(),
                mechs: Mech::ALL.to_vec(),
                tarpc: TarpcNet::ALL.to_vec(),
            });
        };
        if let Some(spec) = TRANSPORTS.iter().find(|t| t.name == only) {
            let companion = super::transports::companion(only);
            return Ok(Selection {
                transports: companion.into_iter().chain([spec]).collect(),
                mechs: spec.raw.into_iter().collect(),
                tarpc: spec.tarpc.into_iter().collect(),
            });
        }
        if let Some(mech) = Mech::from_name(only) {
            return Ok(Selection {
                transports: vec![],
                mechs: vec![mech],
                tarpc: vec![],
            });
        }
        let mut known: Vec<&str> = TRANSPORTS.iter().map(|t| t.name).collect();
        for mech in Mech::ALL {
            if !known.contains(&mech.name()) {
                known.push(mech.name());
            }
        }
        bail!("--only {only}: unknown; use one of {}", known.join(", "))
    }
}

/// Runs the benchmark with `args` (or the soak, with `--soak`); the exit code is failure if
/// any measurement failed.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.soak {
        return super::soak::run(args);
    }
    let plan = if args.tiny {
        Plan::tiny()
    } else if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let selection = Selection::new(args.only.as_deref())?;
    let cpus = Cpus::choose(args.pin())?;
    pin_to(cpus.client)?;
    let available_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = Env::new(cpus)?;
    let progress = Progress::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build the client runtime")?;
    progress.note(&format!(
        "{} run, pin {} (client CPU {}, server CPU {})",
        plan.mode,
        format!("{:?}", args.pin()).to_lowercase(),
        cpus.client.map_or("any".into(), |c| c.to_string()),
        cpus.server.map_or("any".into(), |c| c.to_string())
    ));

    let mut errors = Vec::new();
    let mut failed = |what: &str, error: anyhow::Error| {
        progress.note(&format!("{what}: FAILED: {error:#}"));
        errors.push(format!("{what}: {error:#}"));
    };
    let mut transports = Vec::new();
    for spec in &selection.transports {
        match framework::measure(spec, &env, &plan, &runtime, &progress) {
            Ok(result) => transports.push(result),
            Err(e) => failed(spec.name, e),
        }
    }
    let mut raws = Vec::new();
    for &mech in &selection.mechs {
        progress.note(&format!("raw {}: ping-pong", mech.name()));
        match raw::measure(mech, &env, &plan) {
            Ok(result) => raws.push(result),
            Err(e) => failed(&format!("raw {}", mech.name()), e),
        }
    }
    let mut tarpcs = Vec::new();
    for &net in &selection.tarpc {
        progress.note(&format!("tarpc {}: latency, throughput, echo", net.name()));
        match tarpc_svc::measure(net, &env, &plan, &runtime) {
            Ok(result) => tarpcs.push(result),
            Err(e) => failed(&format!("tarpc {}", net.name()), e),
        }
    }
    progress.note("memcpy");
    let memcpys = [
        (MIB, plan.memcpy_small_iterations),
        (64 * MIB, plan.memcpy_large_iterations),
    ]
    .into_iter()
    .filter(|&(_, iterations)| iterations > 0)
    .map(|(size, iterations)| memcpy::measure(size, iterations))
    .collect();

    let mut report = Report {
        mode: plan.mode,
        pin: args.pin(),
        cpus,
        available_cpus,
        elapsed_secs: progress.elapsed_secs(),
        plan,
        transports,
        raw: raws,
        tarpc: tarpcs,
        memcpy: memcpys,
        errors,
    };
    if let Some(path) = &args.png
        && let Err(e) = chart::draw(&report, path)
    {
        progress.note(&format!("chart: FAILED: {e:#}"));
        report.errors.push(format!("chart: {e:#}"));
    }
    print!("{}", report.markdown());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    progress.note("done");
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
