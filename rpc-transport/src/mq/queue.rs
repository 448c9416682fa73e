//! One open POSIX message queue, always used without blocking, and the system limits that
//! govern creating one (with the mapping of `mq_open` failures to typed errors).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::mqueue::{
    MQ_OFlag, MqAttr, MqdT, mq_attr_member_t, mq_close, mq_getattr, mq_open, mq_receive, mq_send,
    mq_set_nonblock, mq_unlink,
};
use nix::sys::stat::Mode;

use crate::error::TransportError;

/// An open queue descriptor (nonblocking), closed on drop.
#[derive(Debug)]
pub(crate) struct Queue {
    mqd: Option<MqdT>,
    /// The largest message the queue takes (`mq_msgsize`).
    msgsize: usize,
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(mqd) = self.mqd.take() {
            let _ = mq_close(mqd);
        }
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.mqd().as_raw_fd()
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mqd().as_fd()
    }
}

impl Queue {
    fn mqd(&self) -> &MqdT {
        self.mqd.as_ref().expect("open until dropped")
    }

    fn wrap(mqd: MqdT) -> io::Result<Queue> {
        let mut queue = Queue {
            mqd: Some(mqd),
            msgsize: 0,
        };
        let attr = mq_getattr(queue.mqd())?;
        queue.msgsize = usize::try_from(attr.msgsize()).unwrap_or(0);
        if attr.flags() & mq_attr_member_t::from(MQ_OFlag::O_NONBLOCK.bits()) == 0 {
            mq_set_nonblock(queue.mqd())?;
        }
        Ok(queue)
    }

    /// Adopts a descriptor received from a peer, checking that it is a message queue (and
    /// making it nonblocking: the peer's own descriptor shares the flag, and it uses the queue
    /// without blocking too).
    pub(crate) fn from_received(fd: OwnedFd) -> io::Result<Queue> {
        Queue::wrap(super::fd::mqd_from_owned(fd)).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the peer's descriptor is not a message queue: {e}"),
            )
        })
    }

    /// `mq_msgsize`: the largest message this queue takes.
    pub(crate) fn msgsize(&self) -> usize {
        self.msgsize
    }

    /// Sends one message now, or `WouldBlock` if the queue is full.
    pub(crate) fn try_send(&self, message: &[u8]) -> io::Result<()> {
        loop {
            match mq_send(self.mqd(), message, 0) {
                Err(Errno::EINTR) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// Receives one message now into `buf` (at least [`msgsize`](Self::msgsize) bytes), or
    /// `WouldBlock` if the queue is empty.
    pub(crate) fn try_receive(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut priority = 0;
        loop {
            match mq_receive(self.mqd(), buf, &mut priority) {
                Err(Errno::EINTR) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    /// Messages waiting in the queue now.
    pub(crate) fn waiting(&self) -> io::Result<u64> {
        Ok(u64::try_from(mq_getattr(self.mqd())?.curmsgs()).unwrap_or(0))
    }
}

/// The queue name `/NAME` as a C string.
pub(crate) fn queue_name(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}")).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// The system's limits on queues: `/proc/sys/fs/mqueue/*` (Linux's defaults where unreadable).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemLimits {
    /// `fs.mqueue.msg_max`: the most messages a queue may hold.
    pub(crate) msg_max: i64,
    /// `fs.mqueue.msgsize_max`: the largest message size a queue may have.
    pub(crate) msgsize_max: i64,
}

fn sysctl(name: &str) -> Option<i64> {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl SystemLimits {
    /// Reads the current limits.
    pub(crate) fn read() -> SystemLimits {
        SystemLimits {
            msg_max: sysctl("msg_max").unwrap_or(10).max(1),
            msgsize_max: sysctl("msgsize_max").unwrap_or(8192).max(128),
        }
    }
}

/// This process's soft `RLIMIT_MSGQUEUE`, from `/proc/self/limits`.
fn msgqueue_rlimit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max msgqueue size"))
                .and_then(|line| line.split_whitespace().nth(3).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// This process's soft `RLIMIT_MSGQUEUE` in bytes; `None` if unlimited or unknown.
fn msgqueue_rlimit_bytes() -> Option<u64> {
    msgqueue_rlimit().parse().ok()
}

/// Roughly what Linux charges to `RLIMIT_MSGQUEUE` for a queue: its messages, plus about 88
/// bytes of bookkeeping per message.
pub(crate) fn queue_cost(maxmsg: i64, msgsize: i64) -> u64 {
    (maxmsg.max(0) as u64) * (msgsize.max(0) as u64 + 88)
}

/// How many reply queues (clients) the default sizing leaves room for within
/// `RLIMIT_MSGQUEUE`, besides one server queue.
pub(crate) const REPLY_QUEUES_PER_RLIMIT: u64 = 64;
/// The smallest message size a reply queue falls back to.
pub(crate) const MIN_REPLY_MSGSIZE: i64 = 256;

/// The message sizes to try for a reply queue, largest first. The first is the largest
/// (halving from `msgsize_max`) for which [`REPLY_QUEUES_PER_RLIMIT`] reply queues take at
/// most that share of `RLIMIT_MSGQUEUE` (under Linux's default 800 KiB, 1 KiB: 64 clients and
/// a server fit); should even that not fit, smaller ones down to [`MIN_REPLY_MSGSIZE`].
pub(crate) fn reply_msgsizes(limits: &SystemLimits) -> Vec<i64> {
    let mut size = limits.msgsize_max;
    if let Some(rlimit) = msgqueue_rlimit_bytes() {
        let share = rlimit / REPLY_QUEUES_PER_RLIMIT;
        while size / 2 >= MIN_REPLY_MSGSIZE && queue_cost(limits.msg_max, size) > share {
            size /= 2;
        }
    }
    let mut sizes = vec![size];
    while size / 2 >= MIN_REPLY_MSGSIZE {
        size /= 2;
        sizes.push(size);
    }
    sizes
}

/// Turns a failed `mq_open` of a queue with `limits` (for `what`, such as "creating the server
/// queue /calc") into the error an operator can act on.
pub(crate) fn open_error(errno: Errno, what: &str, limits: &SystemLimits) -> TransportError {
    let limit = |limit, detail: String| TransportError::LimitReached { limit, detail };
    match errno {
        Errno::EMFILE => {
            // The descriptor table is full, or this user's queues would take more bytes than
            // RLIMIT_MSGQUEUE allows: whichever it is, a plain file tells.
            if std::fs::File::open("/dev/null").is_ok() {
                limit(
                    "RLIMIT_MSGQUEUE",
                    format!(
                        "{what}: this user's queues would exceed RLIMIT_MSGQUEUE ({} bytes); this \
                         queue of {} messages of {} bytes takes about {} bytes",
                        msgqueue_rlimit(),
                        limits.msg_max,
                        limits.msgsize_max,
                        queue_cost(limits.msg_max, limits.msgsize_max)
                    ),
                )
            } else {
                limit(
                    "RLIMIT_NOFILE",
                    format!("{what}: this process has no descriptor left"),
                )
            }
        }
        Errno::ENFILE => limit(
            "fs.file-max",
            format!("{what}: the system has no descriptor left"),
        ),
        Errno::ENOSPC => limit(
            "fs.mqueue.queues_max",
            format!(
                "{what}: the system's queue count is at fs.mqueue.queues_max ({})",
                sysctl("queues_max").map_or_else(|| "unknown".into(), |v| v.to_string())
            ),
        ),
        Errno::EINVAL => {
            let now = SystemLimits::read();
            if limits.msg_max > now.msg_max {
                limit(
                    "fs.mqueue.msg_max",
                    format!(
                        "{what}: {} messages asked, fs.mqueue.msg_max is {}",
                        limits.msg_max, now.msg_max
                    ),
                )
            } else {
                limit(
                    "fs.mqueue.msgsize_max",
                    format!(
                        "{what}: messages of {} bytes asked, fs.mqueue.msgsize_max is {}",
                        limits.msgsize_max, now.msgsize_max
                    ),
                )
            }
        }
        other => TransportError::Io(io::Error::other(format!("{what}: {}", other.desc()))),
    }
}

/// Creates the queue `name` (mode 0600, nonblocking, as large as `limits` allow); fails with
/// `EEXIST` if it exists.
pub(crate) fn create(
    name: &CString,
    access: MQ_OFlag,
    limits: &SystemLimits,
) -> Result<Queue, Errno> {
    let attr = MqAttr::new(
        0,
        limits.msg_max as mq_attr_member_t,
        limits.msgsize_max as mq_attr_member_t,
        0,
    );
    let flags =
        access | MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_NONBLOCK | MQ_OFlag::O_CLOEXEC;
    let mqd = mq_open(
        name.as_c_str(),
        flags,
        Mode::S_IRUSR | Mode::S_IWUSR,
        Some(&attr),
    )?;
    Queue::wrap(mqd).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// [`create`], halving the message size (down to [`MIN_REPLY_MSGSIZE`]) while the user's
/// `RLIMIT_MSGQUEUE` budget, shared with its other processes, has no room for the queue. When
/// it had to shrink, it shrinks once more if it can, leaving about as much again for the
/// clients' reply queues (a server that takes the last of the budget serves nobody). The error
/// comes with the limits last tried.
pub(crate) fn create_shrinking(
    name: &CString,
    access: MQ_OFlag,
    limits: &SystemLimits,
) -> Result<Queue, (Errno, SystemLimits)> {
    let mut attempt = *limits;
    loop {
        match create(name, access, &attempt) {
            Ok(queue) if attempt.msgsize_max == limits.msgsize_max => return Ok(queue),
            Ok(queue) => {
                let mut smaller = attempt;
                smaller.msgsize_max /= 2;
                let queue = if smaller.msgsize_max >= MIN_REPLY_MSGSIZE {
                    drop(queue);
                    let _ = unlink(name);
                    attempt = smaller;
                    create(name, access, &attempt).map_err(|errno| (errno, attempt))?
                } else {
                    queue
                };
                tracing::warn!(
                    queue = ?name,
                    msgsize = attempt.msgsize_max,
                    "RLIMIT_MSGQUEUE has no room for a full-size queue (other queues of this \
                     user hold it): made one of smaller messages"
                );
                return Ok(queue);
            }
            Err(Errno::EMFILE) if attempt.msgsize_max / 2 >= MIN_REPLY_MSGSIZE => {
                attempt.msgsize_max /= 2;
            }
            Err(errno) => return Err((errno, attempt)),
        }
    }
}

/// Opens the existing queue `name` for sending.
pub(crate) fn open_for_sending(name: &CString) -> Result<Queue, Errno> {
    let flags = MQ_OFlag::O_WRONLY | MQ_OFlag::O_NONBLOCK | MQ_OFlag::O_CLOEXEC;
    let mqd = mq_open(name.as_c_str(), flags, Mode::empty(), None)?;
    Queue::wrap(mqd).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Removes the queue `name`; `Ok(false)` if there was none.
pub(crate) fn unlink(name: &CString) -> Result<bool, Errno> {
    match mq_unlink(name.as_c_str()) {
        Ok(()) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_limits_are_read() {
        let limits = SystemLimits::read();
        assert!(limits.msg_max >= 1);
        assert!(limits.msgsize_max >= 128);
        assert_ne!(msgqueue_rlimit(), "unknown");
    }

    #[test]
    fn reply_queues_leave_room_for_64_clients() {
        let limits = SystemLimits::read();
        let sizes = reply_msgsizes(&limits);
        assert!(sizes.windows(2).all(|w| w[0] == 2 * w[1]), "{sizes:?}");
        assert!(*sizes.last().unwrap() >= MIN_REPLY_MSGSIZE);
        if let Some(rlimit) = msgqueue_rlimit_bytes() {
            let first = sizes[0];
            assert!(
                first == limits.msgsize_max
                    || queue_cost(limits.msg_max, first) * REPLY_QUEUES_PER_RLIMIT <= rlimit,
                "{sizes:?} under {rlimit}"
            );
        }
    }

    #[test]
    fn errors_name_the_limit() {
        let limits = SystemLimits::read();
        let limit_of = |errno| match open_error(errno, "test", &limits) {
            TransportError::LimitReached { limit, .. } => limit,
            other => panic!("{other:?}"),
        };
        assert_eq!(limit_of(Errno::EMFILE), "RLIMIT_MSGQUEUE");
        assert_eq!(limit_of(Errno::ENOSPC), "fs.mqueue.queues_max");
        assert_eq!(limit_of(Errno::ENFILE), "fs.file-max");
        assert_eq!(limit_of(Errno::EINVAL), "fs.mqueue.msgsize_max");
        assert!(matches!(
            open_error(Errno::EACCES, "test", &limits),
            TransportError::Io(_)
        ));
    }
}
