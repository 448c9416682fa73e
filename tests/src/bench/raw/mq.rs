//! A pair of POSIX message queues, `/NAME-req` and `/NAME-resp`, unlinked as soon as both
//! processes have them open (and again on drop, should anything fail before that).

use std::ffi::CString;
use std::io;
use std::time::Duration;

use anyhow::Context as _;
use nix::mqueue::{
    MQ_OFlag, MqAttr, MqdT, mq_close, mq_open, mq_receive, mq_send, mq_timedreceive, mq_unlink,
};
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime};

use super::{MSG, Mech, PingPong, Session, child_args, say_ready};
use crate::bench::env::Env;
use crate::bench::plan::Plan;
use crate::bench::proc::ChildGuard;

/// Largest message the queues take; a receive buffer must be at least this big.
const MSG_MAX: usize = 64;

/// An open queue, closed on drop.
struct Queue(Option<MqdT>);

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(q) = self.0.take() {
            let _ = mq_close(q);
        }
    }
}

impl Queue {
    fn get(&self) -> &MqdT {
        self.0.as_ref().expect("open until dropped")
    }
}

/// Queue names, unlinked on drop.
struct Names(Vec<CString>);

impl Drop for Names {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = mq_unlink(name.as_c_str());
        }
    }
}

fn names(base: &str) -> anyhow::Result<(CString, CString)> {
    Ok((
        CString::new(format!("/{base}-req"))?,
        CString::new(format!("/{base}-resp"))?,
    ))
}

struct Link {
    tx: Queue,
    rx: Queue,
    buf: [u8; MSG_MAX],
    /// How long a reply may take before the round trip fails (a dead child never answers).
    limit: Duration,
}

impl PingPong for Link {
    fn round_trip(&mut self, request: &[u8; MSG], reply: &mut [u8; MSG]) -> io::Result<()> {
        mq_send(self.tx.get(), request, 0)?;
        let now = clock_gettime(ClockId::CLOCK_REALTIME)?;
        let deadline = now + TimeSpec::from_duration(self.limit);
        let mut priority = 0;
        let n = mq_timedreceive(self.rx.get(), &mut self.buf, &mut priority, &deadline)?;
        if n != MSG {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short message"));
        }
        reply.copy_from_slice(&self.buf[..MSG]);
        Ok(())
    }
}

/// Creates the queues, spawns the child, unlinks the names once it has opened them.
pub fn connect(env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    let base = env.unique("rpc-bench-mq");
    let (req, resp) = names(&base)?;
    let attr = MqAttr::new(0, 8, MSG_MAX as _, 0);
    let mode = Mode::S_IRUSR | Mode::S_IWUSR;
    let create = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_CLOEXEC;
    let unlink = Names(vec![req.clone(), resp.clone()]);
    let tx = Queue(Some(
        mq_open(
            req.as_c_str(),
            create | MQ_OFlag::O_WRONLY,
            mode,
            Some(&attr),
        )
        .context("mq_open req")?,
    ));
    let rx = Queue(Some(
        mq_open(
            resp.as_c_str(),
            create | MQ_OFlag::O_RDONLY,
            mode,
            Some(&attr),
        )
        .context("mq_open resp")?,
    ));
    let mut child = ChildGuard::spawn(
        &env.exe,
        &child_args(Mech::Mq, Some(base), env),
        false,
        "raw mq server",
    )?;
    let mut stdout = child.take_stdout()?;
    child.read_line_within(&mut stdout, plan.phase_limit)?;
    drop(unlink);
    Ok(Session {
        link: Box::new(Link {
            tx,
            rx,
            buf: [0; MSG_MAX],
            limit: plan.phase_limit,
        }),
        child,
    })
}

/// Opens the queues named after `base` and echoes until killed.
pub fn serve(base: &str) -> anyhow::Result<()> {
    let (req, resp) = names(base)?;
    let rx = Queue(Some(
        mq_open(req.as_c_str(), MQ_OFlag::O_RDONLY, Mode::empty(), None).context("mq_open req")?,
    ));
    let tx = Queue(Some(
        mq_open(resp.as_c_str(), MQ_OFlag::O_WRONLY, Mode::empty(), None)
            .context("mq_open resp")?,
    ));
    say_ready(&mut std::io::stdout(), base)?;
    let mut buf = [0u8; MSG_MAX];
    let mut priority = 0;
    loop {
        let n = mq_receive(rx.get(), &mut buf, &mut priority)?;
        mq_send(tx.get(), &buf[..n], 0)?;
    }
}
