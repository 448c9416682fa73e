//! The Unix socket `@rpc-mq/NAME` in the abstract namespace: the server's lock on the name, the
//! place where a client hands the server its reply queue, and afterwards each connection's
//! liveness signal.
//!
//! Hello, client to server: `[HELLO_MAGIC 8][reserved 8]` with the reply queue's descriptor
//! (`SCM_RIGHTS`). Welcome, server to client: `[WELCOME_MAGIC 8][token u64 LE][msgsize u64 LE]`
//! with a write-only descriptor of the server queue. Neither queue has a name by then: each
//! was removed as soon as it was opened, so nothing outlives the processes holding them.
//! After the welcome, the server writes only credit (see `link.rs`).

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, UnixCredentials,
    getsockopt, sendmsg, sockopt,
};

use crate::connection::PeerInfo;

/// Bytes of a hello.
pub(crate) const HELLO_LEN: usize = 16;
/// Bytes of a welcome.
pub(crate) const WELCOME_LEN: usize = 24;
const HELLO_MAGIC: &[u8; 8] = b"rpcmq\x02hi";
const WELCOME_MAGIC: &[u8; 8] = b"rpcmq\x02ok";

/// The abstract socket name of `mq://NAME` (without its leading '@').
pub(crate) fn socket_name(name: &str) -> String {
    format!("rpc-mq/{name}")
}

/// Binds and listens on the rendezvous socket `@socket` (nonblocking); `AddrInUse` if a
/// server has it. (`sysv-mq://` shares this with `mq://` under a name of its own.)
pub(crate) fn listen(socket: &str) -> io::Result<UnixListener> {
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(socket)?)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A nonblocking socket connecting to the rendezvous socket.
///
/// A blocking `connect` to a server whose backlog is full (a hung server) would wait forever;
/// a nonblocking one fails with `EAGAIN` instead, and the caller retries until its deadline.
pub(crate) struct Connecting {
    socket: OwnedFd,
    address: UnixAddr,
}

impl Connecting {
    /// A nonblocking, close-on-exec socket for the rendezvous socket `@socket`; nothing is
    /// sent yet.
    pub(crate) fn new(socket: &str) -> io::Result<Connecting> {
        let address = UnixAddr::new_abstract(socket.as_bytes())?;
        let socket = nix::sys::socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        Ok(Connecting { socket, address })
    }

    /// One attempt: `Ok(true)` once connected, `Ok(false)` if the server's backlog is full (try
    /// again later); `ConnectionRefused` if nobody listens.
    pub(crate) fn attempt(&self) -> io::Result<bool> {
        loop {
            match nix::sys::socket::connect(self.socket.as_raw_fd(), &self.address) {
                Ok(()) | Err(Errno::EISCONN) => return Ok(true),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(false),
                Err(errno) => return Err(errno.into()),
            }
        }
    }

    /// The connected socket (nonblocking).
    pub(crate) fn into_stream(self) -> UnixStream {
        UnixStream::from(self.socket)
    }
}

/// The peer's credentials (`SO_PEERCRED`, taken when the connection was made).
pub(crate) fn credentials(socket: &impl AsFd) -> io::Result<UnixCredentials> {
    Ok(getsockopt(socket, sockopt::PeerCredentials)?)
}

/// The peer's credentials as a [`PeerInfo`]: those of a Unix-socket peer, which it is (gid
/// included, so a server may admit by group).
pub(crate) fn peer_info(cred: &UnixCredentials) -> PeerInfo {
    PeerInfo::Unix {
        pid: Some(cred.pid()),
        uid: cred.uid(),
        gid: cred.gid(),
    }
}

/// A client's check of the process bound at `@rpc-mq/NAME`: abstract sockets have no
/// permissions, so anyone may bind the name while our server is down, and only the peer's uid
/// tells a stranger from a server we may trust: one of our own uid `own`, or root (who can
/// read any process's queues and memory anyway). A server of a third user is refused, even
/// one that admits us. `peer` names the other side in the error.
pub(crate) fn require_trusted_server(peer_uid: u32, own: u32, peer: &str) -> io::Result<()> {
    if peer_uid == own || peer_uid == 0 {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the {peer} runs as uid {peer_uid}, neither our uid {own} nor root; refusing it"
            ),
        ))
    }
}

/// Our effective uid.
pub(crate) fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Sends `data` with the descriptor `fd` in one message.
pub(crate) fn send_with_fd(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fd: BorrowedFd<'_>,
) -> io::Result<()> {
    let raw = [fd.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&raw)];
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(data)],
        &control,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        None,
    )?;
    short(sent, data.len())
}

fn short(sent: usize, want: usize) -> io::Result<()> {
    if sent == want {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short rendezvous message",
        ))
    }
}

/// The most descriptors one `SCM_RIGHTS` message can carry (the kernel's `SCM_MAX_FD`).
pub(crate) const SCM_MAX_FD: usize = 253;

/// Receives one message (without waiting) into `data`: the bytes read (0 at end of stream) and
/// every descriptor that came with it, owned (so those the caller does not keep are closed).
/// There is room for [`SCM_MAX_FD`] descriptors, as many as a message can carry, so the kernel
/// never has to cut them short.
pub(crate) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    data: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    recv_with_room(socket, data, SCM_MAX_FD)
}

/// [`recv_with_fds`] with room for `room` descriptors. Should the kernel still cut the control
/// data short (`MSG_CTRUNC`), the descriptors that did arrive are closed and it is an error.
fn recv_with_room(
    socket: BorrowedFd<'_>,
    data: &mut [u8],
    room: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let (read, fds, truncated) = super::fd::recv_with_rights(socket, data, room)?;
    if truncated {
        let arrived = fds.len();
        drop(fds);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the peer sent more control data than fits (MSG_CTRUNC); closed the {arrived} \
                 descriptors that arrived"
            ),
        ));
    }
    Ok((read, fds))
}

/// The hello a client sends.
pub(crate) fn hello() -> [u8; HELLO_LEN] {
    let mut message = [0u8; HELLO_LEN];
    message[..8].copy_from_slice(HELLO_MAGIC);
    message
}

/// Checks a received hello and takes its descriptor.
pub(crate) fn parse_hello(data: &[u8], fds: Vec<OwnedFd>) -> io::Result<OwnedFd> {
    match <[OwnedFd; 1]>::try_from(fds) {
        Ok([fd]) if data.len() == HELLO_LEN && &data[..8] == HELLO_MAGIC => Ok(fd),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the client did not send an mq hello with its reply queue",
        )),
    }
}

/// The welcome the server answers with.
pub(crate) fn welcome(token: u64, msgsize: usize) -> [u8; WELCOME_LEN] {
    let mut message = [0u8; WELCOME_LEN];
    message[..8].copy_from_slice(WELCOME_MAGIC);
    message[8..16].copy_from_slice(&token.to_le_bytes());
    message[16..].copy_from_slice(&(msgsize as u64).to_le_bytes());
    message
}

/// Checks a received welcome: the token, the server queue's message size and its descriptor.
pub(crate) fn parse_welcome(data: &[u8], fds: Vec<OwnedFd>) -> io::Result<(u64, usize, OwnedFd)> {
    match <[OwnedFd; 1]>::try_from(fds) {
        Ok([fd]) if data.len() == WELCOME_LEN && &data[..8] == WELCOME_MAGIC => {
            let token = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
            let msgsize = u64::from_le_bytes(data[16..].try_into().expect("8 bytes"));
            Ok((token, msgsize as usize, fd))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server did not answer with an mq welcome and its queue",
        )),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixStream;

    use super::*;

    /// How many of this process's descriptors are open on `path`.
    pub(in crate::mq) fn open_on(path: &std::path::Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    /// A file of its own for `tag`, to count descriptors open on it.
    pub(in crate::mq) fn marker(tag: &str) -> (std::path::PathBuf, std::fs::File) {
        let path = std::env::temp_dir().join(format!("rpc-mq-{tag}-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        (path, file)
    }

    /// Sends `data` with `count` duplicates of `file`'s descriptor, closing ours.
    pub(in crate::mq) fn send_dups(
        socket: &impl AsFd,
        data: &[u8],
        file: &std::fs::File,
        count: usize,
    ) {
        let fds: Vec<OwnedFd> = (0..count)
            .map(|_| file.try_clone().unwrap().into())
            .collect();
        let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let control = [ControlMessage::ScmRights(&raw)];
        let sent = sendmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &[IoSlice::new(data)],
            &control,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .unwrap();
        assert_eq!(sent, data.len());
    }

    #[test]
    fn a_server_of_a_third_user_is_refused() {
        assert!(require_trusted_server(1000, 1000, "server").is_ok());
        assert!(require_trusted_server(0, 1000, "server").is_ok());
        let error = require_trusted_server(1001, 1000, "server").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
        assert!(error.to_string().contains("uid 1001"), "{error}");
    }

    #[test]
    fn every_received_descriptor_is_owned_and_truncation_closes_them() {
        let (path, file) = marker("fds-unit");
        let (a, b) = UnixStream::pair().unwrap();
        // Room for all: every one arrives, owned.
        send_dups(&a, &hello(), &file, 6);
        let mut data = [0u8; HELLO_LEN];
        let (read, fds) = recv_with_fds(b.as_fd(), &mut data).unwrap();
        assert_eq!((read, fds.len()), (HELLO_LEN, 6));
        assert_eq!(open_on(&path), 6 + 1);
        assert!(parse_hello(&data, fds).is_err());
        assert_eq!(open_on(&path), 1, "a refused hello closes its descriptors");
        // Too little room: the kernel truncates; what arrived is closed and it is an error.
        send_dups(&a, &hello(), &file, 6);
        let error = recv_with_room(b.as_fd(), &mut data, 2).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("MSG_CTRUNC"), "{error}");
        assert_eq!(open_on(&path), 1);
        drop(file);
        let _ = std::fs::remove_file(&path);
    }
}
