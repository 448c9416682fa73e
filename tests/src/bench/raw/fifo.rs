//! A pair of named pipes (FIFOs) in a scratch directory: `req` (parent to child) and `resp`.
//!
//! Opening a FIFO blocks until the other end opens it, which could hang if the other process
//! died; so the parent opens its ends without blocking (read end: `O_NONBLOCK`, then made
//! blocking; write end: retried while the child has no reader yet), within a deadline.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::Mode;
use nix::unistd::mkfifo;

use super::{Mech, Session, Streams, child_args, echo_streams, say_ready};
use crate::bench::env::Env;
use crate::bench::plan::Plan;
use crate::bench::proc::ChildGuard;

/// Creates the FIFOs, spawns the child and opens the parent's ends.
pub fn connect(env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    let dir = env.path("fifo");
    std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
    let (req, resp) = (dir.join("req"), dir.join("resp"));
    mkfifo(&req, Mode::S_IRUSR | Mode::S_IWUSR).context("mkfifo req")?;
    mkfifo(&resp, Mode::S_IRUSR | Mode::S_IWUSR).context("mkfifo resp")?;
    // Our read end exists before the child starts, so its blocking open for writing returns.
    let rx = open_read(&resp)?;
    let mut child = ChildGuard::spawn(
        &env.exe,
        &child_args(Mech::Fifo, Some(dir.display().to_string()), env),
        false,
        "raw fifo server",
    )?;
    let tx = open_write(&req, Instant::now() + plan.phase_limit)?;
    let mut stdout = child.take_stdout()?;
    child.read_line_within(&mut stdout, plan.phase_limit)?;
    Ok(Session {
        link: Box::new(Streams { tx, rx }),
        child,
    })
}

/// Opens `dir/req` for reading and `dir/resp` for writing (both blocking opens: the parent
/// kills this process if they never return), then echoes.
pub fn serve(dir: &str) -> anyhow::Result<()> {
    let dir = Path::new(dir);
    let rx =
        File::from(open(&dir.join("req"), OFlag::O_RDONLY, Mode::empty()).context("open req")?);
    let tx =
        File::from(open(&dir.join("resp"), OFlag::O_WRONLY, Mode::empty()).context("open resp")?);
    say_ready(&mut std::io::stdout(), "fifo")?;
    echo_streams(rx, tx)
}

/// Opens a FIFO for reading without waiting for a writer, then makes reads blocking.
fn open_read(path: &Path) -> anyhow::Result<File> {
    let fd = open(
        path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {}", path.display()))?;
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::empty())).context("clear O_NONBLOCK")?;
    Ok(File::from(fd))
}

/// Opens a FIFO for writing once it has a reader (ENXIO until then), before `deadline`.
fn open_write(path: &Path, deadline: Instant) -> anyhow::Result<File> {
    loop {
        match open(
            path,
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                fcntl(&fd, FcntlArg::F_SETFL(OFlag::empty())).context("clear O_NONBLOCK")?;
                return Ok(File::from(fd));
            }
            Err(Errno::ENXIO) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(Errno::ENXIO) => bail!("{}: no reader before the deadline", path.display()),
            Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
        }
    }
}
