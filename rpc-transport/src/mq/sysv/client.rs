//! The client's side of connecting to `sysv-mq://NAME`: the rendezvous socket (shared with
//! `mq://`), the hello, the server's answer, and the checks on the queues it names.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::super::client::{CONNECT_WAIT, connect_error, connect_socket, connect_socket_blocking};
use super::handshake::{self, Answer};
use super::link::Link;
use super::queue::{Limits, MIN_MSGSIZE, Queue, own_uid};
use super::reader::SysvReceiver;
use super::writer::SysvSender;
use super::{rendezvous, socket_name};
use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;

/// Requires the process bound at the socket to run as our own uid: anyone may bind an
/// abstract name while our server is down, and queues it makes are out of our reach unless it
/// is us. Its credentials, as the connection's peer.
fn check_server(
    address: &Address,
    socket: &UnixStream,
    name: &str,
) -> Result<PeerInfo, TransportError> {
    let cred = rendezvous::credentials(socket).map_err(|e| connect_error(address, e))?;
    let own = own_uid();
    if cred.uid() != own {
        return Err(connect_error(
            address,
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the process bound at @{} runs as uid {}, not as our uid {own}: sysv-mq \
                     connects only to a server of its own user; refusing it",
                    socket_name(name),
                    cred.uid()
                ),
            ),
        ));
    }
    Ok(rendezvous::peer_info(&cred))
}

/// The halves, once the server welcomed us: both queues checked before use.
fn welcomed(
    address: &Address,
    socket: UnixStream,
    answer: Answer,
    config: &TransportConfig,
) -> Result<(SysvSender, SysvReceiver), TransportError> {
    let welcome = answer.map_err(|reason| match handshake::limit_of(&reason) {
        Some((limit, detail)) => TransportError::LimitReached {
            limit,
            detail: format!("the server: {detail}"),
        },
        None => connect_error(
            address,
            io::Error::new(io::ErrorKind::PermissionDenied, reason),
        ),
    })?;
    if welcome.to_server == welcome.to_client {
        return Err(connect_error(
            address,
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the server named queue {} for both directions: this client would read \
                     its own messages; refusing it",
                    welcome.to_server
                ),
            ),
        ));
    }
    let tx = Queue::adopt(welcome.to_server).map_err(|e| connect_error(address, e))?;
    let rx = Queue::adopt(welcome.to_client).map_err(|e| connect_error(address, e))?;
    let fits = |queue: &Queue| queue.qbytes().is_ok_and(|q| q >= welcome.msgsize as u64);
    if welcome.msgsize < MIN_MSGSIZE
        || welcome.msgsize as u64 > Limits::read().msgmax
        || !fits(&tx)
        || !fits(&rx)
    {
        return Err(TransportError::Malformed(format!(
            "{address} announced messages of {} bytes, which its queues or kernel.msgmax do \
             not allow",
            welcome.msgsize
        )));
    }
    let link = Link::new(socket, rx, tx, None)?;
    let limit = config.max_frame_size;
    let receiver = SysvReceiver::start(
        link.clone(),
        welcome.msgsize,
        welcome.token,
        limit,
        config.socket_spin,
    )?;
    let sender = SysvSender::new(link, welcome.msgsize, welcome.token, limit);
    Ok((sender, receiver))
}

fn answer_error(address: &Address, error: io::Error) -> TransportError {
    // A server that dies with our hello unread resets the socket rather than closing it.
    let error = if matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    ) {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server closed the rendezvous socket before welcoming us",
        )
    } else {
        error
    };
    connect_error(address, error)
}

pub(crate) async fn connect(
    address: &Address,
    name: &str,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let socket = connect_socket(address, &socket_name(name), Instant::now() + CONNECT_WAIT).await?;
    let peer = check_server(address, &socket, name)?;
    let mut stream = tokio::net::UnixStream::from_std(socket)?;
    // A server refusing us may have answered and closed before our hello: its answer is
    // read even when the hello cannot be written.
    let wrote = stream.write_all(&handshake::hello()).await;
    let answer = match (handshake::read_answer(&mut stream).await, wrote) {
        (Ok(answer), _) => answer,
        (Err(_), Err(error)) | (Err(error), Ok(())) => return Err(answer_error(address, error)),
    };
    let (sender, receiver) = welcomed(address, stream.into_std()?, answer, config)?;
    Ok(Connection::new(
        FrameSender::new(sender),
        FrameReceiver::new(receiver),
        peer,
    ))
}

pub(crate) fn connect_blocking(
    address: &Address,
    name: &str,
    config: &TransportConfig,
    timeout: Duration,
) -> Result<(SysvSender, SysvReceiver, PeerInfo), TransportError> {
    let give_up = Instant::now() + timeout;
    let mut socket = connect_socket_blocking(address, &socket_name(name), give_up)?;
    let peer = check_server(address, &socket, name)?;
    let left = || {
        let left = give_up.saturating_duration_since(Instant::now());
        (!left.is_zero())
            .then_some(left)
            .ok_or(TransportError::TimedOut)
    };
    socket.set_nonblocking(false)?;
    socket.set_write_timeout(Some(left()?))?;
    // As in `connect`: the answer is read even when the hello cannot be written.
    let wrote = socket.write_all(&handshake::hello());
    socket.set_read_timeout(Some(left()?))?;
    let answer = match (handshake::read_answer_blocking(&mut socket), wrote) {
        (Ok(answer), _) => answer,
        (Err(_), Err(e)) | (Err(e), Ok(())) => {
            return Err(
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    TransportError::TimedOut
                } else {
                    answer_error(address, e)
                },
            );
        }
    };
    socket.set_read_timeout(None)?;
    socket.set_write_timeout(None)?;
    let (sender, receiver) = welcomed(address, socket, answer, config)?;
    Ok((sender, receiver, peer))
}
