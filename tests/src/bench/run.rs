//! The whole benchmark run: framework transports, raw baselines, tarpc, iceoryx2 (with its
//! feature), memcpy; then the report, the JSON file and the chart. With `--load N`, all of it
//! beside N busy-loop processes.

use std::process::ExitCode;

use anyhow::bail;

use super::cli::RunArgs;
use super::env::Env;
use super::load::Load;
use super::plan::Plan;
use super::proc::{Cpus, pin_to};
use super::progress::Progress;
use super::raw::Mech;
use super::report::Report;
use super::runtimes::Runtimes;
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
    /// Whether iceoryx2 request-response is measured (beside shm; only with the `iceoryx2`
    /// feature).
    pub iceoryx2: bool,
}

impl Selection {
    /// Everything, or the transport (with its baselines) or mechanism named by `only`.
    pub fn new(only: Option<&str>) -> anyhow::Result<Selection> {
        let Some(only) = only else {
            return Ok(Selection {
                transports: TRANSPORTS.iter().collect(),
                mechs: Mech::ALL.to_vec(),
                tarpc: TarpcNet::ALL.to_vec(),
                iceoryx2: cfg!(feature = "iceoryx2"),
            });
        };
        if let Some(spec) = TRANSPORTS.iter().find(|t| t.name == only) {
            let companion = super::transports::companion(only);
            return Ok(Selection {
                transports: companion.into_iter().chain([spec]).collect(),
                mechs: spec.raw.into_iter().collect(),
                tarpc: spec.tarpc.into_iter().collect(),
                iceoryx2: cfg!(feature = "iceoryx2") && spec.name == "shm",
            });
        }
        if let Some(mech) = Mech::from_name(only) {
            return Ok(Selection {
                transports: vec![],
                mechs: vec![mech],
                tarpc: vec![],
                iceoryx2: false,
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
    let available_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let env = Env::new(cpus)?;
    let progress = Progress::new();
    // Before pinning, so the busy loops inherit every CPU rather than the client's.
    let load = Load::start(&env, args.load)?;
    pin_to(cpus.client)?;
    let runtimes = Runtimes::new()?;
    progress.note(&format!(
        "{} run, pin {} (client CPU {}, server CPU {}), load {}, {} runtime workers",
        plan.mode,
        format!("{:?}", args.pin()).to_lowercase(),
        cpus.client.map_or("any".into(), |c| c.to_string()),
        cpus.server.map_or("any".into(), |c| c.to_string()),
        load.count(),
        runtimes.workers()
    ));

    let mut errors = Vec::new();
    let mut failed = |what: &str, error: anyhow::Error| {
        progress.note(&format!("{what}: FAILED: {error:#}"));
        errors.push(format!("{what}: {error:#}"));
    };
    let mut transports = Vec::new();
    for spec in &selection.transports {
        match framework::measure(spec, &env, &plan, &runtimes, &progress) {
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
        match tarpc_svc::measure(net, &env, &plan, &runtimes) {
            Ok(result) => tarpcs.push(result),
            Err(e) => failed(&format!("tarpc {}", net.name()), e),
        }
    }
    let iceoryx2 = if selection.iceoryx2 {
        progress.note("iceoryx2 request-response: latency, throughput");
        measure_iceoryx2(&env, &plan).unwrap_or_else(|e| {
            failed("iceoryx2 request-response", e);
            None
        })
    } else {
        None
    };
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
        load: load.count(),
        runtimes: super::runtimes::labels(),
        runtime_workers: runtimes.workers(),
        elapsed_secs: progress.elapsed_secs(),
        plan,
        transports,
        raw: raws,
        tarpc: tarpcs,
        iceoryx2,
        memcpy: memcpys,
        errors,
    };
    if let Some(path) = &args.png
        && let Err(e) = chart::draw(&report, path)
    {
        progress.note(&format!("chart: FAILED: {e:#}"));
        report.errors.push(format!("chart: {e:#}"));
    }
    drop(load);
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

#[cfg(feature = "iceoryx2")]
fn measure_iceoryx2(
    env: &Env,
    plan: &Plan,
) -> anyhow::Result<Option<super::iceoryx::IceoryxResult>> {
    super::iceoryx::measure(env, plan).map(Some)
}

#[cfg(not(feature = "iceoryx2"))]
fn measure_iceoryx2(
    _env: &Env,
    _plan: &Plan,
) -> anyhow::Result<Option<super::iceoryx::IceoryxResult>> {
    Ok(None)
}
