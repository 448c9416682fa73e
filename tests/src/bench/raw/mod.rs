//! Hand-written request/response ping-pong over each OS mechanism: the floor under a
//! framework transport of the same mechanism.
//!
//! The parent sends a [`MSG`]-byte request (the size of an encoded `add` call) and waits for
//! the child's echo of it, one round trip at a time; the child is `rpc-bench raw-server MECH`.
//! One file per mechanism, each with a `connect` (parent side) and a `serve` (child side).

mod fifo;
mod futex;
mod mq;
mod pipe;
mod shm;
mod sysv_mq;
mod sysv_shm;
mod tcp;
mod unix;

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use serde::Serialize;
use std::io::{self, Read, Write};

use super::env::Env;
use super::plan::Plan;
use super::proc::{ChildGuard, Watchdog};
use super::stats::{Latency, time_sync};

/// Bytes per request and per reply: about an encoded `add(i, i)` frame.
pub const MSG: usize = 32;

/// An OS mechanism with a raw ping-pong baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mech {
    /// Anonymous pipes: the child's stdin and stdout.
    Pipe,
    /// A pair of named pipes (mkfifo).
    Fifo,
    /// A pair of POSIX message queues.
    Mq,
    /// A pair of System V message queues.
    #[serde(rename = "sysv-mq")]
    SysvMq,
    /// A Unix domain stream socket.
    Unix,
    /// TCP over loopback with `TCP_NODELAY`.
    Tcp,
    /// A shared memfd mapping; spin, then futex wait.
    Shm,
    /// A System V shared-memory segment; spin, then futex wait, as `Shm`.
    #[serde(rename = "sysv-shm")]
    SysvShm,
}

impl Mech {
    /// Every mechanism, in table order.
    pub const ALL: [Mech; 8] = [
        Mech::Shm,
        Mech::SysvShm,
        Mech::Pipe,
        Mech::Fifo,
        Mech::Mq,
        Mech::SysvMq,
        Mech::Unix,
        Mech::Tcp,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mech::Pipe => "pipe",
            Mech::Fifo => "fifo",
            Mech::Mq => "mq",
            Mech::SysvMq => "sysv-mq",
            Mech::Unix => "unix",
            Mech::Tcp => "tcp",
            Mech::Shm => "shm",
            Mech::SysvShm => "sysv-shm",
        }
    }

    /// The mechanism called `name`.
    pub fn from_name(name: &str) -> Option<Mech> {
        Mech::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The parent's end of a ping-pong link.
pub trait PingPong {
    /// Sends `request` and waits for the reply into `reply`.
    fn round_trip(&mut self, request: &[u8; MSG], reply: &mut [u8; MSG]) -> io::Result<()>;
}

/// A [`PingPong`] over a pair of byte streams (pipes, FIFOs, sockets).
pub struct Streams<W: Write, R: Read> {
    /// Where requests go.
    pub tx: W,
    /// Where replies come from.
    pub rx: R,
}

impl<W: Write, R: Read> PingPong for Streams<W, R> {
    fn round_trip(&mut self, request: &[u8; MSG], reply: &mut [u8; MSG]) -> io::Result<()> {
        self.tx.write_all(request)?;
        self.rx.read_exact(reply)
    }
}

/// The child's loop over a pair of byte streams: echo every message until end of stream.
pub fn echo_streams(mut rx: impl Read, mut tx: impl Write) -> anyhow::Result<()> {
    let mut message = [0u8; MSG];
    loop {
        match rx.read_exact(&mut message) {
            Ok(()) => tx.write_all(&message)?,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A connected ping-pong: the child, the link, and whatever must live as long as both.
pub struct Session {
    /// The parent's end.
    pub link: Box<dyn PingPong>,
    /// The echo server (killed and reaped on drop, after the link is closed).
    pub child: ChildGuard,
}

/// Starts the child for `mech` and connects to it.
pub fn connect(mech: Mech, env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    match mech {
        Mech::Pipe => pipe::connect(env, plan),
        Mech::Fifo => fifo::connect(env, plan),
        Mech::Mq => mq::connect(env, plan),
        Mech::SysvMq => sysv_mq::connect(env, plan),
        Mech::Unix => unix::connect(env, plan),
        Mech::Tcp => tcp::connect(env, plan),
        Mech::Shm => shm::connect(env, plan),
        Mech::SysvShm => sysv_shm::connect(env, plan),
    }
}

/// The child side: `rpc-bench raw-server MECH ARG`. Prints `ready ...` once listening.
pub fn serve(mech: Mech, arg: Option<&str>) -> anyhow::Result<()> {
    let need = || arg.with_context(|| format!("raw-server {}: missing argument", mech.name()));
    match mech {
        Mech::Pipe => pipe::serve(),
        Mech::Fifo => fifo::serve(need()?),
        Mech::Mq => mq::serve(need()?),
        Mech::SysvMq => sysv_mq::serve(need()?),
        Mech::Unix => unix::serve(need()?),
        Mech::Tcp => tcp::serve(),
        Mech::Shm => shm::serve(need()?),
        Mech::SysvShm => sysv_shm::serve(need()?),
    }
}

/// Median and p99 of the round trips of one mechanism.
#[derive(Debug, Clone, Serialize)]
pub struct RawResult {
    /// The mechanism.
    pub mechanism: Mech,
    /// Bytes per request and reply.
    pub message_bytes: usize,
    /// Round-trip latency.
    pub latency: Latency,
}

/// Measures `mech`: starts its echo child, times the round trips, stops the child.
pub fn measure(mech: Mech, env: &Env, plan: &Plan) -> anyhow::Result<RawResult> {
    let mut session = connect(mech, env, plan)?;
    let dog = Watchdog::arm(session.child.pid(), plan.phase_limit);
    let mut request = [0u8; MSG];
    let mut reply = [0u8; MSG];
    let latency = time_sync(plan.warmup, plan.raw_round_trips, |i| {
        request[..8].copy_from_slice(&i.to_le_bytes());
        request[MSG - 8..].copy_from_slice(&(!i).to_le_bytes());
        session.link.round_trip(&request, &mut reply)?;
        if reply != request {
            bail!("{}: reply {i} differs from its request", mech.name());
        }
        Ok(())
    });
    if dog.fired() {
        bail!(
            "{}: ping-pong took longer than {:?}",
            mech.name(),
            plan.phase_limit
        );
    }
    drop(dog);
    let latency = latency?;
    // Close the link first (the stream children then exit on their own), then the guard
    // kills and reaps the child.
    let Session { link, child } = session;
    drop(link);
    drop(child);
    Ok(RawResult {
        mechanism: mech,
        message_bytes: MSG,
        latency,
    })
}

/// Arguments for `rpc-bench raw-server MECH [ARG] [--cpu N]`.
fn child_args(mech: Mech, arg: Option<String>, env: &Env) -> Vec<std::ffi::OsString> {
    let mut args = vec!["raw-server".into(), mech.name().into()];
    args.extend(arg.map(Into::into));
    args.extend(super::proc::cpu_args(env.cpus.server));
    args
}

/// Prints the child's `ready` line.
fn say_ready(out: &mut impl Write, detail: &str) -> io::Result<()> {
    writeln!(out, "ready {detail}")?;
    out.flush()
}
