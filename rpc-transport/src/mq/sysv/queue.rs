//! One System V message queue (one direction of one connection), and the system limits that
//! govern it, with every failure that hits a limit mapped to an error naming it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

use super::sys::{self, MsgBuf};
use crate::error::TransportError;

/// The type of a message carrying a piece of a frame (`wire.rs`).
pub(super) const DATA: i64 = 1;
/// The type of the message a side sends to its own queue to wake its receiver (its peer
/// is gone); it carries nothing.
pub(super) const WAKE: i64 = 2;
/// The smallest message size that works: a wire header and a useful chunk.
pub(super) const MIN_MSGSIZE: usize = 64;

/// The system's limits on System V message queues (`/proc/sys/kernel/msg*`, Linux's defaults
/// where unreadable).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// `kernel.msgmax`: the largest message.
    pub(super) msgmax: u64,
    /// `kernel.msgmnb`: the bytes a new queue holds.
    pub(super) msgmnb: u64,
}

fn sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn sysctl_text(name: &str) -> String {
    sysctl(name).map_or_else(|| "unknown".into(), |v| v.to_string())
}

impl Limits {
    /// Reads the current limits.
    pub(super) fn read() -> Limits {
        Limits {
            msgmax: sysctl("msgmax").unwrap_or(8192),
            msgmnb: sysctl("msgmnb").unwrap_or(16384),
        }
    }

    /// The message size for queues that hold `qbytes` bytes: at most `kernel.msgmax`, and at
    /// most half the queue, so that two messages fit and the reader drains one while the
    /// writer fills the other. Too small to work: the limit that makes it so.
    pub(super) fn msgsize(&self, qbytes: u64) -> Result<usize, TransportError> {
        let size = self.msgmax.min(qbytes / 2);
        if size >= MIN_MSGSIZE as u64 {
            return Ok(size.min(u32::MAX as u64) as usize);
        }
        Err(if self.msgmax < MIN_MSGSIZE as u64 {
            TransportError::LimitReached {
                limit: "kernel.msgmax",
                detail: format!(
                    "kernel.msgmax is {} bytes; sysv-mq needs messages of at least \
                     {MIN_MSGSIZE}",
                    self.msgmax
                ),
            }
        } else {
            TransportError::LimitReached {
                limit: "kernel.msgmnb",
                detail: format!(
                    "a queue holds {qbytes} bytes (kernel.msgmnb is {}); sysv-mq needs at \
                     least {}",
                    self.msgmnb,
                    2 * MIN_MSGSIZE
                ),
            }
        })
    }
}

/// The error for a failed `msgget` while doing `what`.
pub(super) fn create_error(errno: Errno, what: &str) -> TransportError {
    match errno {
        Errno::ENOSPC => TransportError::LimitReached {
            limit: "kernel.msgmni",
            detail: format!(
                "{what}: the system's message queues are at kernel.msgmni ({}); `ipcs -q` \
                 lists them",
                sysctl_text("msgmni")
            ),
        },
        other => TransportError::Io(io::Error::new(
            io::Error::from(other).kind(),
            format!("{what}: {}", other.desc()),
        )),
    }
}

// `time_t` and `msglen_t` are 64 bits wide on some targets and not on others.
#[allow(clippy::unnecessary_cast)]
fn ctime_of(ds: &libc::msqid_ds) -> i64 {
    ds.msg_ctime as i64
}

#[allow(clippy::unnecessary_cast)]
fn qbytes_of(ds: &libc::msqid_ds) -> u64 {
    ds.msg_qbytes as u64
}

/// Our effective uid.
pub(super) fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A queue by id, with what identifies it beyond the id (its creation time and owner), so
/// that it is never removed once its id may name another queue.
#[derive(Debug)]
pub(super) struct Queue {
    id: i32,
    /// `msg_ctime` when we first looked: the queue's creation (nobody changes its settings).
    ctime: i64,
    /// Set once we removed it, or decided it is gone.
    removed: AtomicBool,
}

/// What a queue operation found instead of doing its work.
#[derive(Debug)]
pub(super) enum Stopped {
    /// The queue is gone (removed, by its reader or because a peer died).
    Gone,
    /// A limit, or another failure.
    Failed(TransportError),
}

impl Queue {
    /// Creates a private queue of mode 0600 for `what` ("the queue to the server of ...").
    pub(super) fn create(what: &str) -> Result<Queue, TransportError> {
        let id = sys::create().map_err(|errno| create_error(errno, what))?;
        match sys::stat(id) {
            Ok(ds) => Ok(Queue {
                id,
                ctime: ctime_of(&ds),
                removed: AtomicBool::new(false),
            }),
            Err(errno) => {
                let _ = sys::remove(id);
                Err(create_error(errno, what))
            }
        }
    }

    /// A queue a peer named: checked to be a private queue of mode 0600 made and owned by our
    /// own uid (our server runs as our uid: anything else is not its).
    pub(super) fn adopt(id: i32) -> io::Result<Queue> {
        let refused = |why: String| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("queue {id}: {why}"),
            )
        };
        let ds = sys::stat(id).map_err(|e| refused(format!("cannot look at it: {}", e.desc())))?;
        let perm = &ds.msg_perm;
        let own = own_uid();
        if perm.uid != own || perm.cuid != own {
            return Err(refused(format!(
                "made by uid {} and owned by uid {}, not by our uid {own}",
                perm.cuid, perm.uid
            )));
        }
        if perm.mode & 0o777 != 0o600 || perm.__key != libc::IPC_PRIVATE {
            return Err(refused(format!(
                "mode {:o} and key {:#x}, not a private queue of mode 600",
                perm.mode & 0o777,
                perm.__key
            )));
        }
        Ok(Queue {
            id,
            ctime: ctime_of(&ds),
            removed: AtomicBool::new(false),
        })
    }

    /// A queue known from a ledger record (`ledger.rs`).
    pub(super) fn recorded(id: i32, ctime: i64) -> Queue {
        Queue {
            id,
            ctime,
            removed: AtomicBool::new(false),
        }
    }

    pub(super) fn id(&self) -> i32 {
        self.id
    }

    pub(super) fn ctime(&self) -> i64 {
        self.ctime
    }

    /// The bytes the queue holds (`msg_qbytes`).
    pub(super) fn qbytes(&self) -> io::Result<u64> {
        Ok(qbytes_of(&sys::stat(self.id)?))
    }

    /// Whether `ds` describes this queue (not another that took its id since).
    fn is_this(&self, ds: &libc::msqid_ds) -> bool {
        ctime_of(ds) == self.ctime
            && ds.msg_perm.uid == own_uid()
            && ds.msg_perm.__key == libc::IPC_PRIVATE
            && ds.msg_perm.mode & 0o777 == 0o600
    }

    /// Sends the message in `buf`: `Ok(false)` if `nowait` and the queue is full.
    pub(super) fn send(&self, buf: &MsgBuf, nowait: bool) -> Result<bool, Stopped> {
        match sys::send(self.id, buf, nowait) {
            Ok(()) => Ok(true),
            // A message larger than the whole queue never fits: Linux calls it full.
            Err(Errno::EAGAIN) if nowait => match self.qbytes() {
                Ok(qbytes) if buf.text().len() as u64 > qbytes => {
                    Err(self.why_invalid(buf.text().len()))
                }
                _ => Ok(false),
            },
            Err(Errno::EIDRM) => Err(Stopped::Gone),
            Err(Errno::EINVAL) => Err(self.why_invalid(buf.text().len())),
            Err(other) => Err(Stopped::Failed(TransportError::Io(io::Error::new(
                io::Error::from(other).kind(),
                format!("sending on System V queue {}: {}", self.id, other.desc()),
            )))),
        }
    }

    /// `EINVAL` from `msgsnd` (or a message larger than the queue): the queue is gone, or the
    /// message exceeds a limit lowered since the connection began.
    fn why_invalid(&self, len: usize) -> Stopped {
        let ds = match sys::stat(self.id) {
            Ok(ds) if self.is_this(&ds) => ds,
            _ => return Stopped::Gone,
        };
        let msgmax = sysctl("msgmax").unwrap_or(u64::MAX);
        let qbytes = qbytes_of(&ds);
        Stopped::Failed(if len as u64 > msgmax {
            TransportError::LimitReached {
                limit: "kernel.msgmax",
                detail: format!(
                    "a message of {len} bytes on System V queue {}: kernel.msgmax is now \
                     {msgmax}",
                    self.id
                ),
            }
        } else if len as u64 > qbytes {
            TransportError::LimitReached {
                limit: "kernel.msgmnb",
                detail: format!(
                    "a message of {len} bytes does not fit System V queue {}, which holds \
                     {qbytes} bytes (kernel.msgmnb is {})",
                    self.id,
                    sysctl_text("msgmnb")
                ),
            }
        } else {
            TransportError::Io(io::Error::other(format!(
                "sending {len} bytes on System V queue {}: invalid argument",
                self.id
            )))
        })
    }

    /// How many messages wait in the queue (`IPC_STAT`).
    pub(super) fn waiting(&self) -> Result<u64, Errno> {
        Ok(sys::stat(self.id)?.msg_qnum)
    }

    /// Receives the next message into `buf`: `Ok(false)` if `nowait` and the queue is empty.
    pub(super) fn receive(&self, buf: &mut MsgBuf, nowait: bool) -> Result<bool, Stopped> {
        match sys::receive(self.id, buf, nowait) {
            Ok(()) => Ok(true),
            Err(Errno::ENOMSG) if nowait => Ok(false),
            Err(Errno::EIDRM | Errno::EINVAL) => Err(Stopped::Gone),
            Err(other) => Err(Stopped::Failed(TransportError::Io(io::Error::new(
                io::Error::from(other).kind(),
                format!("receiving on System V queue {}: {}", self.id, other.desc()),
            )))),
        }
    }

    /// Wakes a thread waiting to receive on the queue (a `WAKE` message, if there is room:
    /// there is whenever a reader waits, since it waits only on an empty queue).
    pub(super) fn wake(&self) {
        let mut buf = MsgBuf::new(0);
        buf.load(WAKE, &[]);
        let _ = sys::send(self.id, &buf, true);
    }

    /// Removes the queue, once: `true` if this call removed it. Waiting senders and receivers
    /// fail with `EIDRM`. Should the id name another queue by now, that one is left alone.
    pub(super) fn remove(&self) -> bool {
        if self.removed.swap(true, Ordering::SeqCst) {
            return false;
        }
        match sys::stat(self.id) {
            Ok(ds) if self.is_this(&ds) => sys::remove(self.id).is_ok(),
            _ => false,
        }
    }

    /// Whether we removed it (or found it gone).
    pub(super) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// Whether a queue with this id and identity exists now.
    #[cfg(test)]
    pub(super) fn exists(&self) -> bool {
        sys::stat(self.id).is_ok_and(|ds| self.is_this(&ds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_size_fits_msgmax_and_half_a_queue() {
        let limits = Limits {
            msgmax: 8192,
            msgmnb: 16384,
        };
        assert_eq!(limits.msgsize(16384).unwrap(), 8192);
        assert_eq!(limits.msgsize(4096).unwrap(), 2048);
        let limit_of = |limits: Limits, qbytes| match limits.msgsize(qbytes) {
            Err(TransportError::LimitReached { limit, .. }) => limit,
            other => panic!("{other:?}"),
        };
        assert_eq!(limit_of(limits, 100), "kernel.msgmnb");
        let tiny = Limits {
            msgmax: 32,
            msgmnb: 16384,
        };
        assert_eq!(limit_of(tiny, 16384), "kernel.msgmax");
    }

    #[test]
    fn creation_errors_name_msgmni() {
        match create_error(Errno::ENOSPC, "test") {
            TransportError::LimitReached { limit, detail } => {
                assert_eq!(limit, "kernel.msgmni");
                assert!(detail.contains("test"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            create_error(Errno::ENOMEM, "test"),
            TransportError::Io(_)
        ));
    }

    #[test]
    fn messages_over_a_limit_name_it() {
        let queue = Queue::create("test").unwrap();
        let limits = Limits::read();
        // Over msgmax: refused by name.
        let mut big = MsgBuf::new(limits.msgmax as usize + 1);
        big.load(DATA, &vec![0; limits.msgmax as usize + 1]);
        match queue.send(&big, true) {
            Err(Stopped::Failed(TransportError::LimitReached { limit, .. })) => {
                assert_eq!(limit, "kernel.msgmax")
            }
            other => panic!("{other:?}"),
        }
        // Over the queue's bytes (lowered below the message): refused by name.
        sys::set_qbytes(queue.id(), 100).unwrap();
        let mut message = MsgBuf::new(200);
        message.load(DATA, &[1; 200]);
        match queue.send(&message, true) {
            Err(Stopped::Failed(TransportError::LimitReached { limit, detail })) => {
                assert_eq!(limit, "kernel.msgmnb");
                assert!(detail.contains("holds 100 bytes"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(queue.remove());
        assert!(!queue.remove(), "only once");
        assert!(matches!(queue.send(&message, true), Err(Stopped::Gone)));
    }

    #[test]
    fn only_our_own_private_queues_are_adopted() {
        let queue = Queue::create("test").unwrap();
        let adopted = Queue::adopt(queue.id()).unwrap();
        assert_eq!(adopted.ctime(), queue.ctime());
        assert!(queue.remove());
        let gone = Queue::adopt(queue.id()).unwrap_err();
        assert_eq!(gone.kind(), io::ErrorKind::PermissionDenied);
        // A removed queue's id is never removed again, even should it be reused.
        assert!(!adopted.remove());
    }
}
