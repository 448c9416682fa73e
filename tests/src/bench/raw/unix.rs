//! A Unix domain stream socket in the scratch directory.

use std::os::unix::net::{UnixListener, UnixStream};

use anyhow::Context as _;

use super::{Mech, Session, Streams, child_args, echo_streams, say_ready};
use crate::bench::env::Env;
use crate::bench::plan::Plan;
use crate::bench::proc::ChildGuard;

/// Spawns the child listening on a fresh socket path and connects to it.
pub fn connect(env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    let path = env.path("raw").with_extension("sock");
    let mut child = ChildGuard::spawn(
        &env.exe,
        &child_args(Mech::Unix, Some(path.display().to_string()), env),
        false,
        "raw unix server",
    )?;
    let mut stdout = child.take_stdout()?;
    child.read_line_within(&mut stdout, plan.phase_limit)?;
    let stream =
        UnixStream::connect(&path).with_context(|| format!("connect {}", path.display()))?;
    Ok(Session {
        link: Box::new(Streams {
            tx: stream.try_clone()?,
            rx: stream,
        }),
        child,
    })
}

/// Listens on `path`, serves one connection.
pub fn serve(path: &str) -> anyhow::Result<()> {
    let listener = UnixListener::bind(path).with_context(|| format!("bind {path}"))?;
    say_ready(&mut std::io::stdout(), path)?;
    let (stream, _) = listener.accept()?;
    drop(listener);
    let _ = std::fs::remove_file(path);
    echo_streams(&stream, &stream)
}
