//! The same `add` and `echo` service in tarpc (bincode over TCP or a Unix socket), its server
//! process (`rpc-bench tarpc-server`) and the figures compared with the framework.

use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::process::ChildStdout;

use anyhow::{Context as _, anyhow, bail, ensure};
use futures::{StreamExt, future};
use serde::Serialize;
use serde_bytes::ByteBuf;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{ClientMessage, Response, client, context};

use super::runtimes::{PerRuntime, RuntimeKind, Runtimes};

use super::MIB;
use super::env::Env;
use super::plan::Plan;
use super::proc::{ChildGuard, cpu_args};
use super::stats::{
    Bulk, CheckedAdd, Latency, bulk_async, check_pattern, concurrent_rate, pattern, time_async,
};

/// The benchmark service, in tarpc's IDL.
#[tarpc::service]
pub trait TarpcBench {
    /// Returns `a + b` (wrapping).
    async fn add(a: i64, b: i64) -> i64;
    /// Returns `data` unchanged.
    async fn echo(data: ByteBuf) -> ByteBuf;
}

/// The tarpc server's implementation.
#[derive(Debug, Clone, Copy)]
pub struct TarpcImpl;

impl TarpcBench for TarpcImpl {
    async fn add(self, _: context::Context, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn echo(self, _: context::Context, data: ByteBuf) -> ByteBuf {
        data
    }
}

/// A tarpc transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TarpcNet {
    /// TCP over loopback.
    Tcp,
    /// A Unix domain socket.
    Unix,
}

impl TarpcNet {
    /// Both, in table order.
    pub const ALL: [TarpcNet; 2] = [TarpcNet::Tcp, TarpcNet::Unix];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            TarpcNet::Tcp => "tcp",
            TarpcNet::Unix => "unix",
        }
    }
}

/// tarpc's figures on one transport, its client on each runtime (the server process is the
/// same, on the default multi-threaded runtime).
#[derive(Debug, Clone, Serialize)]
pub struct TarpcResult {
    /// The transport.
    pub transport: TarpcNet,
    /// The client's figures on each runtime.
    pub asynchronous: PerRuntime<TarpcFigures>,
}

impl TarpcResult {
    /// The figures of `kind`.
    pub fn on(&self, kind: RuntimeKind) -> &TarpcFigures {
        self.asynchronous.get(kind)
    }
}

/// tarpc's client figures on one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct TarpcFigures {
    /// Sequential `add` calls.
    pub latency: Latency,
    /// Calls per second with `in_flight_calls` tasks sharing one client.
    pub in_flight: f64,
    /// How many calls were in flight.
    pub in_flight_calls: usize,
    /// `echo` of 1 MiB.
    pub echo: Bulk,
}

/// `rpc-bench tarpc-server --listen tcp:HOST:PORT|unix:PATH`: serves until killed and prints
/// the bound address (in the same form) as stdout's first line.
pub fn serve(listen: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("build the runtime")?;
    runtime.block_on(async {
        if let Some(address) = listen.strip_prefix("tcp:") {
            let incoming = tarpc::serde_transport::tcp::listen(address, Bincode::default).await?;
            announce(&format!("tcp:{}", incoming.local_addr()))?;
            incoming
                .filter_map(|t| future::ready(t.ok()))
                .for_each(spawn_channel)
                .await;
        } else if let Some(path) = listen.strip_prefix("unix:") {
            let incoming = tarpc::serde_transport::unix::listen(path, Bincode::default).await?;
            announce(listen)?;
            incoming
                .filter_map(|t| future::ready(t.ok()))
                .for_each(spawn_channel)
                .await;
        } else {
            bail!("tarpc-server: unknown address {listen}");
        }
        Ok(())
    })
}

fn announce(address: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{address}")?;
    stdout.flush()
}

/// Serves one connection, each request in a task of its own (as tarpc's examples do).
async fn spawn_channel<T>(transport: T)
where
    T: tarpc::Transport<Response<TarpcBenchResponse>, ClientMessage<TarpcBenchRequest>>
        + Send
        + 'static,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    tokio::spawn(
        BaseChannel::with_defaults(transport)
            .execute(TarpcImpl.serve())
            .for_each(|response| async move {
                tokio::spawn(response);
            }),
    );
}

/// Connects a tarpc client to an address printed by the server.
async fn connect(address: &str) -> anyhow::Result<TarpcBenchClient> {
    let config = client::Config::default();
    if let Some(address) = address.strip_prefix("tcp:") {
        let transport = tarpc::serde_transport::tcp::connect(address, Bincode::default).await?;
        Ok(TarpcBenchClient::new(config, transport).spawn())
    } else if let Some(path) = address.strip_prefix("unix:") {
        let transport = tarpc::serde_transport::unix::connect(path, Bincode::default).await?;
        Ok(TarpcBenchClient::new(config, transport).spawn())
    } else {
        bail!("unknown tarpc address {address}")
    }
}

/// Starts a tarpc server process on `net` and measures it from this process, with a client
/// (and connection) of its own on each runtime.
pub fn measure(
    net: TarpcNet,
    env: &Env,
    plan: &Plan,
    runtimes: &Runtimes,
) -> anyhow::Result<TarpcResult> {
    let listen = match net {
        TarpcNet::Tcp => "tcp:127.0.0.1:0".to_owned(),
        TarpcNet::Unix => format!("unix:{}.sock", env.path("tarpc").display()),
    };
    let mut args: Vec<OsString> = vec!["tarpc-server".into(), "--listen".into(), listen.into()];
    args.extend(cpu_args(env.cpus.server));
    let mut server = ChildGuard::spawn(
        &env.exe,
        &args,
        false,
        &format!("tarpc {} server", net.name()),
    )?;
    let mut stdout: ChildStdout = server.take_stdout()?;
    let address = server.read_line_within(&mut stdout, plan.phase_limit)?;
    let limit = plan.phase_limit;
    let result = runtimes.each(|kind, runtime| {
        runtime.block_on(async {
            tokio::time::timeout(limit, run(address.as_str(), plan))
                .await
                .map_err(|_| {
                    anyhow!(
                        "tarpc {} on {} took longer than {limit:?}",
                        net.name(),
                        kind.label()
                    )
                })?
        })
    });
    drop(server);
    Ok(TarpcResult {
        transport: net,
        asynchronous: result?,
    })
}

async fn run(address: &str, plan: &Plan) -> anyhow::Result<TarpcFigures> {
    let client = connect(address).await?;
    let latency = time_async(plan.warmup, plan.latency_calls, |i| add(&client, i)).await?;
    let in_flight = concurrent_rate(&client, plan.in_flight, plan.throughput_time).await?;
    let echo = |data: Vec<u8>| {
        let client = &client;
        async move {
            let back = client
                .echo(context::current(), ByteBuf::from(data))
                .await?
                .into_vec();
            ensure!(check_pattern(&back, MIB), "tarpc echo came back wrong");
            anyhow::Ok(back)
        }
    };
    let data = echo(pattern(MIB)).await?;
    let echo = bulk_async(MIB, plan.echo_small_iterations, plan.bulk_time, data, echo).await?;
    Ok(TarpcFigures {
        latency,
        in_flight,
        in_flight_calls: plan.in_flight,
        echo,
    })
}

async fn add(client: &TarpcBenchClient, i: u64) -> anyhow::Result<()> {
    let i = i as i64;
    let sum = client.add(context::current(), i, i).await?;
    ensure!(
        sum == i.wrapping_mul(2),
        "tarpc add({i}, {i}) returned {sum}"
    );
    Ok(())
}

impl CheckedAdd for TarpcBenchClient {
    fn checked_add(&self, i: u64) -> impl Future<Output = anyhow::Result<()>> + Send {
        add(self, i)
    }
}
