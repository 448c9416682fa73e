//! The whole benchmark run: each framework transport followed by its baselines (raw
//! mechanism, tarpc, and iceoryx2 beside shm with its feature), then memcpy; then the report,
//! the JSON file and the chart. With `--load N`, all of it beside N busy-loop processes.

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
    // Each transport's baselines (its raw mechanism, its tarpc peer, iceoryx2 beside shm) are
    // measured right after it, so every ratio compares figures taken minutes apart at most:
    // this host's cross-CPU speed can change from one minute to the next.
    let mut transports = Vec::new();
    let mut baselines = Baselines::default();
    for spec in &selection.transports {
        match framework::measure(spec, &env, &plan, &runtimes, &progress) {
            Ok(result) => transports.push(result),
            Err(e) => failed(spec.name, e),
        }
        let iceoryx2 = selection.iceoryx2 && spec.name == "shm";
        baselines.measure(
            spec.raw.filter(|m| selection.mechs.contains(m)),
            spec.tarpc.filter(|t| selection.tarpc.contains(t)),
            iceoryx2,
            (&env, &plan, &runtimes, &progress),
            &mut failed,
        );
    }
    // Baselines no transport above took along (`--only` a raw mechanism, say).
    for &mech in &selection.mechs {
        let context = (&env, &plan, &runtimes, &progress);
        baselines.measure(Some(mech), None, false, context, &mut failed);
    }
    for &net in &selection.tarpc {
        let context = (&env, &plan, &runtimes, &progress);
        baselines.measure(None, Some(net), false, context, &mut failed);
    }
    baselines.measure(
        None,
        None,
        selection.iceoryx2,
        (&env, &plan, &runtimes, &progress),
        &mut failed,
    );
    let Baselines {
        mut raws,
        mut tarpcs,
        iceoryx2,
        ..
    } = baselines;
    raws.sort_by_key(|r| Mech::ALL.iter().position(|&m| m == r.mechanism));
    tarpcs.sort_by_key(|t| TarpcNet::ALL.iter().position(|&n| n == t.transport));
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
        logging: super::logging::filter(),
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

/// What a measurement needs to run.
type Context<'a> = (&'a Env, &'a Plan, &'a Runtimes, &'a Progress);

/// The baselines measured so far, each once.
#[derive(Default)]
struct Baselines {
    raws: Vec<super::raw::RawResult>,
    tarpcs: Vec<super::tarpc_svc::TarpcResult>,
    iceoryx2: Option<super::iceoryx::IceoryxResult>,
    /// Whether iceoryx2 was measured (or tried).
    iceoryx2_done: bool,
    /// Mechanisms and tarpc transports measured (or tried).
    mechs_done: Vec<Mech>,
    tarpc_done: Vec<TarpcNet>,
}

impl Baselines {
    /// Measures the raw mechanism, tarpc transport and iceoryx2 asked for that are not
    /// measured yet.
    fn measure(
        &mut self,
        mech: Option<Mech>,
        tarpc: Option<TarpcNet>,
        iceoryx2: bool,
        (env, plan, runtimes, progress): Context<'_>,
        failed: &mut impl FnMut(&str, anyhow::Error),
    ) {
        if let Some(mech) = mech
            && !self.mechs_done.contains(&mech)
        {
            self.mechs_done.push(mech);
            progress.note(&format!("raw {}: ping-pong", mech.name()));
            match raw::measure(mech, env, plan) {
                Ok(result) => self.raws.push(result),
                Err(e) => failed(&format!("raw {}", mech.name()), e),
            }
        }
        if let Some(net) = tarpc
            && !self.tarpc_done.contains(&net)
        {
            self.tarpc_done.push(net);
            progress.note(&format!("tarpc {}: latency, throughput, echo", net.name()));
            match tarpc_svc::measure(net, env, plan, runtimes) {
                Ok(result) => self.tarpcs.push(result),
                Err(e) => failed(&format!("tarpc {}", net.name()), e),
            }
        }
        if iceoryx2 && !self.iceoryx2_done {
            self.iceoryx2_done = true;
            progress.note("iceoryx2 request-response: latency, throughput");
            self.iceoryx2 = measure_iceoryx2(env, plan).unwrap_or_else(|e| {
                failed("iceoryx2 request-response", e);
                None
            });
        }
    }
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
