//! TCP over loopback, `TCP_NODELAY` on both ends.

use std::net::{TcpListener, TcpStream};

use anyhow::Context as _;

use super::{Mech, Session, Streams, child_args, echo_streams, say_ready};
use crate::bench::env::Env;
use crate::bench::plan::Plan;
use crate::bench::proc::ChildGuard;

/// Spawns the child listening on a free loopback port and connects to the port it prints.
pub fn connect(env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    let mut child = ChildGuard::spawn(
        &env.exe,
        &child_args(Mech::Tcp, None, env),
        false,
        "raw tcp server",
    )?;
    let mut stdout = child.take_stdout()?;
    let line = child.read_line_within(&mut stdout, plan.phase_limit)?;
    let address = line
        .strip_prefix("ready ")
        .context("raw tcp server: bad ready line")?;
    let stream = TcpStream::connect(address).with_context(|| format!("connect {address}"))?;
    stream.set_nodelay(true)?;
    Ok(Session {
        link: Box::new(Streams {
            tx: stream.try_clone()?,
            rx: stream,
        }),
        child,
    })
}

/// Listens on `127.0.0.1:0`, prints the port, serves one connection.
pub fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    say_ready(&mut std::io::stdout(), &listener.local_addr()?.to_string())?;
    let (stream, _) = listener.accept()?;
    stream.set_nodelay(true)?;
    echo_streams(&stream, &stream)
}
