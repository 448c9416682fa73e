//! Anonymous pipes: the parent writes to the child's stdin and reads its stdout.

use std::fs::File;
use std::os::fd::AsFd;

use anyhow::Context as _;

use super::{Mech, Session, Streams, child_args, echo_streams, say_ready};
use crate::bench::env::Env;
use crate::bench::plan::Plan;
use crate::bench::proc::ChildGuard;

/// Spawns the child with piped stdin and stdout.
pub fn connect(env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    let mut child = ChildGuard::spawn(
        &env.exe,
        &child_args(Mech::Pipe, None, env),
        true,
        "raw pipe server",
    )?;
    let mut rx = child.take_stdout()?;
    let tx = child.take_stdin()?;
    child.read_line_within(&mut rx, plan.phase_limit)?;
    Ok(Session {
        link: Box::new(Streams { tx, rx }),
        child,
    })
}

/// Echoes stdin to stdout, unbuffered, until end of stream.
pub fn serve() -> anyhow::Result<()> {
    // Own duplicates of descriptors 0 and 1, to read and write them without std's buffers.
    let stdin = File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("dup stdin")?,
    );
    let mut stdout = File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("dup stdout")?,
    );
    say_ready(&mut stdout, "pipe")?;
    echo_streams(stdin, stdout)
}
