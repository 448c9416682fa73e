//! The module's only `unsafe`: taking ownership of descriptors the kernel hands us.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::mqueue::MqdT;

/// Receives one message without waiting (`recvmsg` with `MSG_DONTWAIT | MSG_CMSG_CLOEXEC`)
/// into `data`, with room for `room` descriptors: the bytes read, every descriptor that
/// arrived (owned, so none can leak), and whether the kernel cut the control data short
/// (`MSG_CTRUNC`). Unlike nix's `cmsgs()`, which refuses to look at truncated control data,
/// this takes the descriptors the kernel did install even then.
pub(super) fn recv_with_rights(
    socket: BorrowedFd<'_>,
    data: &mut [u8],
    room: usize,
) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
    let fd_bytes = room
        .saturating_mul(size_of::<RawFd>())
        .min(u32::MAX as usize / 2) as u32;
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    // `u64`s, so the buffer is aligned for `cmsghdr`.
    let mut control = vec![0u64; space.div_ceil(size_of::<u64>())];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero `msghdr` is valid (null pointers, zero lengths).
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = space as _;
    let read = loop {
        // SAFETY: `header` points at `iov` (describing `data`, writable for its length) and at
        // `control` (writable for `space` bytes); all outlive the call.
        let read = unsafe {
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut header,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        if read >= 0 {
            break read as usize;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    let truncated = header.msg_flags & libc::MSG_CTRUNC != 0;
    let start = control.as_ptr() as usize;
    // The kernel sets `msg_controllen` to the bytes it wrote, never more than `space`.
    let end = start + (header.msg_controllen as usize).min(space);
    let mut fds = Vec::new();
    // SAFETY: `header` describes the control data the kernel just wrote into `control`;
    // CMSG_FIRSTHDR and CMSG_NXTHDR return headers inside it (or null), each fully inside the
    // written bytes. Each `SCM_RIGHTS` header is followed by `cmsg_len` bytes (clamped to the
    // written data here) of descriptors the kernel installed in our table for this message
    // alone: nothing else knows or owns them, so each is owned (and closed) exactly once.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            let entry = cmsg.read_unaligned();
            if entry.cmsg_level == libc::SOL_SOCKET && entry.cmsg_type == libc::SCM_RIGHTS {
                let first = libc::CMSG_DATA(cmsg);
                let last = (cmsg as usize + entry.cmsg_len as usize).min(end);
                let count = last.saturating_sub(first as usize) / size_of::<RawFd>();
                for i in 0..count {
                    let raw = first.cast::<RawFd>().add(i).read_unaligned();
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    Ok((read, fds, truncated))
}

/// Views a received descriptor as a message-queue descriptor. The caller checks it really is
/// a queue (with `mq_getattr`) before using it.
pub(super) fn mqd_from_owned(fd: OwnedFd) -> MqdT {
    // SAFETY: on Linux an `mqd_t` is a plain file descriptor, and `fd` is open and ours (it is
    // consumed here, so `MqdT` becomes its only owner). Should it not be a queue, every `mq_*`
    // call on it fails with `EBADF` rather than misbehaving, and closing it with `mq_close` is a
    // plain `close`.
    unsafe { MqdT::from_raw_fd(fd.into_raw_fd()) }
}

/// Sets `RLIMIT_MSGQUEUE` (soft and hard) of this process, for tests that need many queues.
#[cfg(test)]
pub(super) fn set_msgqueue_limit(bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: `limit` is a valid, initialized `rlimit` that outlives the call, which only reads it.
    if unsafe { libc::setrlimit(libc::RLIMIT_MSGQUEUE, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A type that owns its descriptor for its whole life: open until dropped, never swapped, and
/// `as_raw_fd` always returns it.
pub(super) trait OwnsFd: std::os::fd::AsRawFd {}

impl OwnsFd for std::sync::Arc<super::queue::Queue> {}
impl OwnsFd for std::os::unix::net::UnixStream {}

/// Registers `inner` with the current tokio runtime for `interest`.
pub(super) fn register<T: OwnsFd>(
    inner: T,
    interest: tokio::io::Interest,
) -> std::io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: an `OwnsFd` keeps its descriptor open, and the same, until dropped, and the
    // `AsyncFd` owns `inner` for its whole life; `Queue` closes its descriptor only in `Drop`.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(inner, interest) }
        .map_err(|e| e.into_parts().1)
}
