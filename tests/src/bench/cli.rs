//! The command line: the run's flags, and the hidden subcommands the run starts its child
//! processes with.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::raw::Mech;

/// Benchmark the RPC framework per transport against raw OS mechanisms and tarpc.
///
/// Prints markdown tables on stdout and progress on stderr. Client and server always run in
/// separate processes (this binary, re-executed).
///
/// `--soak` instead holds `--connections` connections to one server process per transport and
/// makes `--calls` checked `add` calls over them, counting sent, ok, wrong and failed calls;
/// any wrong or failed call makes the exit status non-zero. It runs on tcp, tls, unix, shm,
/// mmap, sysv-shm (a segment per connection: kernel.shmmni, 4096 by default, bounds them), fifo
/// and sysv-mq (two queues per connection: kernel.msgmni, 32,000 by default, bounds them). Not
/// on spawn (stdio): each connection is a server child of its own, so no one
/// server holds the connections. Not on mq: every connection holds a reply queue, and the
/// default `fs.mqueue.queues_max` (256) and `RLIMIT_MSGQUEUE` (800 KiB, about 60
/// connections) stop far below 1,000.
#[derive(Debug, Parser)]
#[command(name = "rpc-bench", args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A child process's role (internal).
    #[command(subcommand)]
    pub child: Option<ChildCommand>,
    /// The run's settings.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Settings of a benchmark run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Fewer iterations and one 64 MiB echo: done in well under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Even fewer iterations and no 64 MiB echo: checks that every path works (tests).
    #[arg(long, hide = true, conflicts_with = "quick")]
    pub tiny: bool,
    /// Run one framework transport (`tcp`, `tls`, `unix`, ...) and its baselines, or one raw
    /// mechanism (`pipe`, `fifo`, `mq`, `shm`, ...) alone. `tls` runs `tcp` too, so the report
    /// shows what TLS costs.
    #[arg(long, value_name = "TRANSPORT")]
    pub only: Option<String>,
    /// Pin client and server to the same CPU, to separate CPUs, or not at all [default:
    /// split; with `--soak`, none, so the client's runtime has a worker per CPU].
    #[arg(long, value_enum)]
    pub pin: Option<Pin>,
    /// Run N busy-loop processes (unpinned) beside client and server for the whole run, and
    /// title the report "Loaded machine (--load N)".
    #[arg(long, value_name = "N", default_value_t = 0, conflicts_with = "soak")]
    pub load: usize,
    /// Also write every figure to this JSON file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Also draw small-call latency per transport into this PNG file.
    #[arg(long, value_name = "PATH", conflicts_with = "soak")]
    pub png: Option<PathBuf>,
    /// Soak instead: many connections to one server, every reply checked (see above).
    #[arg(long, conflicts_with_all = ["quick", "tiny"])]
    pub soak: bool,
    /// With `--soak`: connections held at once to each server.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "soak")]
    pub connections: usize,
    /// With `--soak`: calls in total per transport, spread evenly over the connections.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, requires = "soak")]
    pub calls: u64,
}

impl RunArgs {
    /// The CPU placement: `--pin`, or `split` (`none` with `--soak`).
    pub fn pin(&self) -> Pin {
        self.pin
            .unwrap_or(if self.soak { Pin::None } else { Pin::Split })
    }
}

/// CPU placement of client and server processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pin {
    /// Client and server on the same CPU.
    Same,
    /// Client and server on different CPUs.
    Split,
    /// Let the scheduler decide.
    None,
}

/// The roles of child processes. Each prints one line on stdout when ready.
#[derive(Debug, Subcommand)]
pub enum ChildCommand {
    /// Serve the framework's Calculator on ADDR; prints the bound address.
    #[command(hide = true)]
    Serve {
        /// The address to listen on.
        #[arg(long)]
        listen: String,
        /// Largest frame, in bytes.
        #[arg(long)]
        max_frame: usize,
        /// CPU to pin to.
        #[arg(long)]
        cpu: Option<usize>,
        /// The certificate (PEM) of a `tls://` listener.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Call `add` on ADDR for a fixed time after `go` on stdin; prints `calls N nanos T`.
    #[command(hide = true)]
    Client {
        /// The address to connect to.
        #[arg(long)]
        connect: String,
        /// How long to call, in milliseconds.
        #[arg(long)]
        millis: u64,
        /// CPU to pin to.
        #[arg(long)]
        cpu: Option<usize>,
        /// The CA (PEM) a `tls://` server's certificate is verified against.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
    },
    /// Answer raw ping-pong messages over one OS mechanism.
    #[command(hide = true)]
    RawServer {
        /// The mechanism.
        #[arg(value_enum)]
        mech: Mech,
        /// The mechanism's rendezvous: a path, a queue name or a descriptor number.
        arg: Option<String>,
        /// CPU to pin to.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Serve the tarpc version of the service on `tcp:HOST:PORT` or `unix:PATH`.
    #[command(hide = true)]
    TarpcServer {
        /// The address to listen on.
        #[arg(long)]
        listen: String,
        /// CPU to pin to.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Spin until killed (one process of `--load N`); prints `burning` first.
    #[command(hide = true)]
    Burn,
    /// Serve `add` over iceoryx2 request-response on SERVICE; prints `ready` (needs the
    /// `iceoryx2` feature).
    #[command(hide = true)]
    Iceoryx2Server {
        /// The iceoryx2 service name.
        service: String,
        /// CPU to pin to.
        #[arg(long)]
        cpu: Option<usize>,
    },
}
