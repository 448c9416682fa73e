//! The module's only `unsafe`: taking ownership of descriptors the kernel hands us.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use nix::mqueue::MqdT;

/// Takes ownership of a descriptor received with `SCM_RIGHTS`.
pub(super) fn owned_from_received(raw: RawFd) -> OwnedFd {
    // SAFETY: the kernel just installed `raw` in our table for the message we received; nothing
    // else knows or owns it, so taking ownership here closes it exactly once.
    unsafe { OwnedFd::from_raw_fd(raw) }
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
