//! Whether a peer has hung up, asked without reading: a server that has stopped reading a
//! connection (its memory budget is spent) still notices when the peer leaves.

use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// `POLLRDHUP` (Linux): the peer shut its writing side or closed (nix does not name it).
const POLLRDHUP: PollFlags = PollFlags::from_bits_retain(0x2000);

/// Whether `fd`'s peer has closed its end (or the descriptor failed), without waiting and
/// without consuming anything that is waiting to be read.
pub(crate) fn hung_up(fd: &impl AsFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), POLLRDHUP)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(0) | Err(_) => false,
        // Only `POLLRDHUP` was asked for, and the kernel adds only `POLLHUP`, `POLLERR` and
        // `POLLNVAL`; nix reports no flags at all (`None`) when a bit it does not name is set,
        // and the one it does not name here is `POLLRDHUP`.
        Ok(_) => fds[0].revents().is_none_or(|events| {
            events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_peer_is_seen_even_behind_unread_data() {
        // Socket pairs and pipes: both report a peer that left.
        use std::io::Write;
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!hung_up(&theirs));
        ours.write_all(b"unread").unwrap();
        assert!(!hung_up(&theirs), "data alone is not a hang-up");
        drop(ours);
        assert!(
            soon(|| hung_up(&theirs)),
            "the peer closed, with data still unread"
        );

        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        nix::unistd::write(&write, b"unread").unwrap();
        assert!(!hung_up(&read));
        drop(write);
        assert!(
            soon(|| hung_up(&read)),
            "the writer closed, with data still unread"
        );
    }

    /// Whether `condition` holds within 10 s. A child that another test forks while a
    /// descriptor here is open holds a copy until it execs (every one is close-on-exec), so a
    /// close is seen by the peer a moment later in that case.
    fn soon(condition: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !condition() {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    }
}
