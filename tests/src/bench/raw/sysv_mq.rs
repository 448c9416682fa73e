//! A pair of System V message queues (`IPC_PRIVATE`, mode 0600), requests and replies, made
//! by the parent, which hands their ids to the child and removes both when done (the child
//! removes nothing). Blocking `msgsnd` and `msgrcv` on both sides.
//!
//! `msgrcv` has no timeout, so a thread of the parent waits for the child's end (its stdout
//! closing) and then removes the queues: a parent waiting for the reply of a child that died
//! (or that the watchdog killed) gets `EIDRM` instead of waiting forever.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use nix::errno::Errno;

use super::{MSG, Mech, PingPong, Session, child_args, say_ready};
use crate::bench::env::Env;
use crate::bench::plan::Plan;
use crate::bench::proc::ChildGuard;

/// A message: its type and [`MSG`] bytes.
#[repr(C)]
struct Message {
    mtype: libc::c_long,
    text: [u8; MSG],
}

fn send(id: i32, message: &Message) -> io::Result<()> {
    loop {
        // SAFETY: `message` is a `long` type followed by `MSG` bytes, all of which msgsnd may
        // read; it outlives the call.
        let sent = unsafe { libc::msgsnd(id, (message as *const Message).cast(), MSG, 0) };
        match Errno::result(sent) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop).map_err(io::Error::from),
        }
    }
}

fn receive(id: i32, message: &mut Message) -> io::Result<usize> {
    loop {
        // SAFETY: `message` has room for the type and `MSG` bytes of text, as many as msgrcv
        // may write (longer messages are cut with MSG_NOERROR); it outlives the call.
        let read = unsafe {
            libc::msgrcv(
                id,
                (message as *mut Message).cast(),
                MSG,
                0,
                libc::MSG_NOERROR,
            )
        };
        match Errno::result(read) {
            Err(Errno::EINTR) => continue,
            other => return other.map(|n| n as usize).map_err(io::Error::from),
        }
    }
}

/// The two queues, removed once (by whoever comes first: the link's drop, or the thread that
/// saw the child end).
struct Queues {
    ids: [i32; 2],
    removed: Mutex<bool>,
}

impl Queues {
    fn create() -> anyhow::Result<Queues> {
        let make = || {
            // SAFETY: msgget takes no pointer.
            Errno::result(unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) })
        };
        let mut queues = Queues {
            ids: [-1, -1],
            removed: Mutex::new(false),
        };
        // Each one made is removed on drop, should the other fail.
        queues.ids[0] = make().context("msgget req")?;
        queues.ids[1] = make().context("msgget resp")?;
        Ok(queues)
    }

    fn remove(&self) {
        let mut removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        if !std::mem::replace(&mut *removed, true) {
            for id in self.ids.into_iter().filter(|&id| id >= 0) {
                // SAFETY: IPC_RMID reads no buffer; a null pointer is allowed.
                unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
            }
        }
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        self.remove();
    }
}

struct Link {
    queues: Arc<Queues>,
    message: Message,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.queues.remove();
    }
}

impl PingPong for Link {
    fn round_trip(&mut self, request: &[u8; MSG], reply: &mut [u8; MSG]) -> io::Result<()> {
        let [req, resp] = self.queues.ids;
        self.message.mtype = 1;
        self.message.text = *request;
        send(req, &self.message)?;
        if receive(resp, &mut self.message)? != MSG {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short message"));
        }
        *reply = self.message.text;
        Ok(())
    }
}

/// Creates the queues, spawns the child with their ids, and watches for its end.
pub fn connect(env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    let queues = Arc::new(Queues::create()?);
    let [req, resp] = queues.ids;
    let mut child = ChildGuard::spawn(
        &env.exe,
        &child_args(Mech::SysvMq, Some(format!("{req},{resp}")), env),
        false,
        "raw sysv-mq server",
    )?;
    let mut stdout = child.take_stdout()?;
    child.read_line_within(&mut stdout, plan.phase_limit)?;
    let watched = queues.clone();
    std::thread::Builder::new()
        .name("raw-sysv-mq-child-end".into())
        .spawn(move || {
            let _ = stdout.read_to_end(&mut Vec::new());
            watched.remove();
        })
        .context("a thread to watch the child")?;
    Ok(Session {
        link: Box::new(Link {
            queues,
            message: Message {
                mtype: 1,
                text: [0; MSG],
            },
        }),
        child,
    })
}

/// Echoes every message of the queues named `REQ,RESP` until they are removed.
pub fn serve(ids: &str) -> anyhow::Result<()> {
    let (req, resp) = ids.split_once(',').context("expected REQ,RESP")?;
    let (req, resp): (i32, i32) = (req.parse()?, resp.parse()?);
    say_ready(&mut std::io::stdout(), ids)?;
    let mut message = Message {
        mtype: 0,
        text: [0; MSG],
    };
    loop {
        match receive(req, &mut message) {
            Ok(_) => send(resp, &message)?,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EIDRM | libc::EINVAL)) => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}
