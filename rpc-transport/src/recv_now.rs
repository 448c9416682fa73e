//! Reading a socket without waiting, straight from the kernel.
//!
//! tokio's `try_read` answers `WouldBlock` without asking the kernel while its cached
//! readiness says nothing has come; that cache is refreshed only when a runtime worker polls
//! epoll. A task that polls a socket for a reply (the busy-poll before a receive sleeps, a
//! caller reading its own reply) must see bytes the moment they land, not after a worker's
//! next turn at the driver, so it asks the kernel each time: one `recv(MSG_DONTWAIT)`.
//!
//! Mixing this with tokio's own reads of the same socket is safe: a read here never marks the
//! socket as not ready, and tokio marks it so only after the kernel itself said `EAGAIN`;
//! bytes that land after that make epoll report the socket again.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use bytes::{BufMut, BytesMut};

/// Reads what `socket` holds now into `buf`'s spare capacity: the bytes read (0 only at the
/// end of the stream), or `WouldBlock`. (`chunk_mut` reserves room in a full buffer, so there
/// is always spare capacity; were there none, that would be an `InvalidInput` error, never a
/// 0 that would read as the end.)
pub(crate) fn recv_now(socket: BorrowedFd<'_>, buf: &mut BytesMut) -> io::Result<usize> {
    take_now(buf, |at, len| {
        // SAFETY: `take_now` passes `len` writable bytes at `at`, and `recv` writes at most
        // that; `socket` is an open descriptor for the call.
        unsafe { libc::recv(socket.as_raw_fd(), at, len, libc::MSG_DONTWAIT) }
    })
}

/// [`recv_now`] for a descriptor that is not a socket (a pipe's or FIFO's read end), which
/// must be in non-blocking mode (tokio's pipes are): one `read`, `WouldBlock` when empty.
pub(crate) fn read_now(fd: BorrowedFd<'_>, buf: &mut BytesMut) -> io::Result<usize> {
    take_now(buf, |at, len| {
        // SAFETY: `take_now` passes `len` writable bytes at `at`, and `read` writes at most
        // that; `fd` is an open descriptor for the call.
        unsafe { libc::read(fd.as_raw_fd(), at, len) }
    })
}

/// Runs `take` (a `recv` or `read` of at most `len` bytes at the pointer) into `buf`'s spare
/// capacity, again if interrupted, and counts what it wrote into `buf`.
fn take_now(
    buf: &mut BytesMut,
    take: impl Fn(*mut libc::c_void, usize) -> libc::ssize_t,
) -> io::Result<usize> {
    let spare = buf.chunk_mut();
    let len = spare.len();
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no spare capacity to receive into",
        ));
    }
    let at = spare.as_mut_ptr().cast();
    loop {
        // `spare` is `len` writable bytes of `buf` (uninitialized memory is fine for `recv`
        // and `read`, which only write).
        let n = take(at, len);
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the kernel wrote `n <= len` bytes at the start of the spare capacity.
            unsafe { buf.advance_mut(n) };
            return Ok(n);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn reads_what_is_there_then_would_block_then_sees_the_end() {
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut buf = BytesMut::with_capacity(64);
        let nothing = recv_now(theirs.as_fd(), &mut buf).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        ours.write_all(b"hello").unwrap();
        assert_eq!(recv_now(theirs.as_fd(), &mut buf).unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        // `shutdown`, not `drop`: a child that another test forks at this moment holds a copy
        // of `ours` until it execs, and a closed copy is not the end while that one is open.
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(
            recv_now(theirs.as_fd(), &mut buf).unwrap(),
            0,
            "end of stream"
        );
    }

    #[test]
    fn reads_a_pipe_without_waiting() {
        let (theirs, ours) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        nix::fcntl::fcntl(
            &theirs,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut buf = BytesMut::with_capacity(64);
        let nothing = read_now(theirs.as_fd(), &mut buf).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        let mut writer = std::fs::File::from(ours);
        writer.write_all(b"hello").unwrap();
        assert_eq!(read_now(theirs.as_fd(), &mut buf).unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        drop(writer);
        // A child another test forks at this moment holds a copy of the write end until it
        // execs (the end is close-on-exec), so the end of the stream may come a moment later.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match read_now(theirs.as_fd(), &mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no end of stream in 10 s"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                other => panic!("expected the end of stream, got {other:?}"),
            }
        }
    }
}
