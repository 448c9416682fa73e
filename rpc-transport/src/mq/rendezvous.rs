//! The Unix socket `@rpc-mq/NAME` in the abstract namespace: the server's lock on the name, the
//! place where a client hands the server its reply queue, and afterwards each connection's
//! liveness signal.
//!
//! Hello, client to server: `[HELLO_MAGIC 8][reserved 8]` with the reply queue's descriptor
//! (`SCM_RIGHTS`). Welcome, server to client: `[WELCOME_MAGIC 8][token u64 LE][msgsize u64 LE]`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, getsockopt, recvmsg, sendmsg, sockopt,
};

use crate::connection::PeerInfo;

/// Bytes of a hello.
pub(crate) const HELLO_LEN: usize = 16;
/// Bytes of a welcome.
pub(crate) const WELCOME_LEN: usize = 24;
const HELLO_MAGIC: &[u8; 8] = b"rpcmq\x01hi";
const WELCOME_MAGIC: &[u8; 8] = b"rpcmq\x01ok";

/// The abstract socket address of `mq://NAME`.
fn socket_address(name: &str) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("rpc-mq/{name}"))
}

/// Binds and listens on the rendezvous socket (nonblocking); `AddrInUse` if a server has it.
pub(crate) fn listen(name: &str) -> io::Result<UnixListener> {
    let listener = UnixListener::bind_addr(&socket_address(name)?)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Connects to the rendezvous socket (nonblocking afterwards).
pub(crate) fn connect(name: &str) -> io::Result<UnixStream> {
    let stream = UnixStream::connect_addr(&socket_address(name)?)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// The peer's credentials as a [`PeerInfo`].
pub(crate) fn peer_of(socket: &impl AsFd) -> io::Result<PeerInfo> {
    let cred = getsockopt(socket, sockopt::PeerCredentials)?;
    Ok(PeerInfo::Local {
        pid: Some(cred.pid()),
        uid: Some(cred.uid()),
    })
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

/// Sends `data` without descriptors, without waiting.
pub(crate) fn send_plain(socket: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    let sent = nix::sys::socket::send(
        socket.as_raw_fd(),
        data,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
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

/// Receives one message (without waiting) into `data`: the bytes read (0 at end of stream) and
/// the descriptors that came with it, owned.
pub(crate) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    data: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(data)];
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut fds = Vec::new();
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = control {
            fds.extend(received.into_iter().map(super::fd::owned_from_received));
        }
    }
    Ok((message.bytes, fds))
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

/// Checks a received welcome: the token and the server queue's message size.
pub(crate) fn parse_welcome(data: &[u8]) -> io::Result<(u64, usize)> {
    if data.len() != WELCOME_LEN || &data[..8] != WELCOME_MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server did not answer with an mq welcome",
        ));
    }
    let token = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
    let msgsize = u64::from_le_bytes(data[16..].try_into().expect("8 bytes"));
    Ok((token, msgsize as usize))
}
