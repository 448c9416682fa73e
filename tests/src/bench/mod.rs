//! `rpc-bench`: the framework against the raw OS mechanisms it is built on, and against tarpc.
//!
//! Every measurement runs client and server in separate processes, as users run them: the
//! binary re-executes itself ([`std::env::current_exe`]) with a hidden subcommand for each
//! server or extra client ([`cli::ChildCommand`]). The parent is always the measuring client;
//! its async client is measured on two tokio runtimes ([`runtimes`]), the default
//! multi-threaded one (as `#[tokio::main]` builds it, the one every target is judged on) and
//! a current-thread one.
//!
//! - [`cli`]: the command line (the run's flags and the hidden child subcommands).
//! - [`run`]: the whole run, in order: framework transports, raw baselines, tarpc, iceoryx2,
//!   memcpy (all beside `--load N` busy loops, if asked).
//! - [`soak`], [`soak_report`]: `--soak`, many connections to one server and every reply
//!   checked; its table and JSON.
//! - [`transports`]: the table of framework transports; one line per transport.
//! - [`tls`]: the run's `tls://` certificates and the table of what TLS costs over TCP.
//! - [`framework`]: what is measured on each framework transport, from the client side.
//! - [`child`]: the framework's server (`serve`) and extra client processes (`client`).
//! - [`raw`]: hand-written request/response ping-pong over each OS mechanism, one file each.
//! - [`tarpc_svc`]: the same service in tarpc, its server and its measurements.
//! - [`iceoryx`]: iceoryx2 request-response, the same `add` (feature `iceoryx2`).
//! - [`runtimes`]: the two tokio runtimes every async client figure is measured on.
//! - [`load`]: `--load N`, busy-loop processes beside client and server.
//! - [`logging`]: with `RUST_LOG` set, every process logs as a service would.
//! - [`memcpy`]: in-process copy bandwidth, the ceiling for bulk transfers.
//! - [`stats`], [`plan`]: timing loops and percentiles; how much each mode measures.
//! - [`proc`], [`mod@env`]: child processes (guards, watchdogs, pinning, RSS); scratch files.
//! - [`report`], [`chart`], [`progress`]: markdown and JSON output, the PNG chart, stderr
//!   progress.

pub mod chart;
pub mod child;
pub mod cli;
pub mod env;
pub mod framework;
pub mod iceoryx;
pub mod load;
pub mod logging;
pub mod memcpy;
pub mod plan;
pub mod proc;
pub mod progress;
pub mod raw;
pub mod report;
pub mod run;
pub mod runtimes;
pub mod soak;
pub mod soak_report;
pub mod stats;
pub mod targets;
pub mod tarpc_svc;
pub mod tls;
pub mod transports;

/// Bytes in a mebibyte.
pub const MIB: usize = 1024 * 1024;
