//! The client's side of connecting: the rendezvous socket, the reply queue, the hello and the
//! welcome (see the module docs of `mq`).

use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mqueue::MQ_OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::endpoint::{MqReceiver, MqSender};
use super::link::Link;
use super::queue::{self, Queue, SystemLimits};
use super::{open_failed, rendezvous};
use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;

/// A client's state between sending its hello and reading the welcome.
struct Hello {
    socket: UnixStream,
    peer: PeerInfo,
    reply: Queue,
}

pub(super) fn connect_error(address: &Address, source: io::Error) -> TransportError {
    TransportError::Connect {
        address: address.to_string(),
        source,
    }
}

/// Creates an anonymous reply queue: created under a unique name, which is removed at once.
/// Its message size is the first of [`queue::reply_msgsizes`] that `RLIMIT_MSGQUEUE` allows.
fn reply_queue(name: &str, limits: &SystemLimits) -> Result<Queue, TransportError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let what = "creating a reply queue";
    let sizes = queue::reply_msgsizes(limits);
    let mut sizes = sizes.iter().copied().peekable();
    let mut clashes = 0;
    while let Some(&msgsize) = sizes.peek() {
        let attempt = SystemLimits {
            msgsize_max: msgsize,
            ..*limits
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let cname = queue::queue_name(&format!("{name}.{}.{n}", std::process::id()))?;
        match queue::create(&cname, MQ_OFlag::O_RDWR, &attempt) {
            Ok(queue) => {
                queue::unlink(&cname).map_err(io::Error::from)?;
                return Ok(queue);
            }
            // Left by a killed process of our pid, between its create and unlink.
            Err(Errno::EEXIST) if clashes < 3 => {
                clashes += 1;
                let _ = queue::unlink(&cname);
            }
            // Over RLIMIT_MSGQUEUE (or out of descriptors): a smaller queue may still fit.
            Err(Errno::EMFILE) if sizes.len() > 1 => {
                sizes.next();
            }
            Err(errno) => return Err(open_failed(errno, what, &attempt, TransportError::Io)),
        }
    }
    unreachable!("reply_msgsizes is never empty")
}

/// How long an async `connect` keeps retrying the rendezvous socket of a server whose backlog
/// is full (the caller may give up sooner).
pub(super) const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// The longest pause between such retries.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(20);

/// One attempt to connect the rendezvous socket `@socket`: `Ok(true)` once connected,
/// `Ok(false)` while the server's backlog is full, and the error for nobody listening.
fn try_connect(
    address: &Address,
    socket: &str,
    connecting: &rendezvous::Connecting,
) -> Result<bool, TransportError> {
    connecting.attempt().map_err(|e| {
        let source = match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => io::Error::new(
                e.kind(),
                format!("no server is listening on {address} (nothing bound at @{socket})"),
            ),
            _ => e,
        };
        connect_error(address, source)
    })
}

fn backlog_full(address: &Address, socket: &str) -> TransportError {
    connect_error(
        address,
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the server of {address} did not take the connection in time (the backlog of \
                 @{socket} stayed full: the server is overloaded or hung)"
            ),
        ),
    )
}

/// Connects the rendezvous socket `@socket`, retrying with short sleeps while the backlog is
/// full, until `give_up`.
pub(super) async fn connect_socket(
    address: &Address,
    socket: &str,
    give_up: Instant,
) -> Result<UnixStream, TransportError> {
    let connecting = rendezvous::Connecting::new(socket).map_err(|e| connect_error(address, e))?;
    let mut pause = Duration::from_millis(1);
    while !try_connect(address, socket, &connecting)? {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(backlog_full(address, socket));
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(CONNECT_RETRY_MAX);
    }
    Ok(connecting.into_stream())
}

/// The blocking form of [`connect_socket`].
pub(super) fn connect_socket_blocking(
    address: &Address,
    socket: &str,
    give_up: Instant,
) -> Result<UnixStream, TransportError> {
    let connecting = rendezvous::Connecting::new(socket).map_err(|e| connect_error(address, e))?;
    let mut pause = Duration::from_millis(1);
    while !try_connect(address, socket, &connecting)? {
        let left = give_up.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(backlog_full(address, socket));
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(CONNECT_RETRY_MAX);
    }
    Ok(connecting.into_stream())
}

/// The client's side up to the hello, on a connected rendezvous socket: check the server is
/// one we trust, make the reply queue and send the hello.
fn say_hello(address: &Address, name: &str, socket: UnixStream) -> Result<Hello, TransportError> {
    let cred = rendezvous::credentials(&socket).map_err(|e| connect_error(address, e))?;
    // Whoever holds @rpc-mq/NAME would get our reply queue and requests: a stranger could
    // bind it while our server is down.
    rendezvous::require_trusted_server(
        cred.uid(),
        rendezvous::own_uid(),
        &format!("process bound at @rpc-mq/{name}"),
    )
    .map_err(|e| connect_error(address, e))?;
    let peer = rendezvous::peer_info(&cred);
    let limits = SystemLimits::read();
    let reply = reply_queue(name, &limits)?;
    rendezvous::send_with_fd(socket.as_fd(), &rendezvous::hello(), reply.as_fd())
        .map_err(|e| connect_error(address, e))?;
    Ok(Hello {
        socket,
        peer,
        reply,
    })
}

/// The client's side after the welcome (its bytes and descriptors): builds the halves.
fn welcomed(
    address: &Address,
    hello: Hello,
    welcome: &[u8],
    fds: Vec<std::os::fd::OwnedFd>,
    config: &TransportConfig,
    asynchronous: bool,
) -> Result<(MqSender, MqReceiver, PeerInfo), TransportError> {
    let (token, msgsize, server) =
        rendezvous::parse_welcome(welcome, fds).map_err(|e| connect_error(address, e))?;
    let server = Queue::from_received(server).map_err(|e| connect_error(address, e))?;
    if msgsize != server.msgsize() {
        return Err(TransportError::Malformed(format!(
            "{address} announced messages of {msgsize} bytes but its queue takes {}",
            server.msgsize()
        )));
    }
    let link = Link::new(hello.socket, asynchronous)?;
    let sender = MqSender::new(
        Arc::new(server),
        link.clone(),
        token,
        config,
        asynchronous,
        true,
    )?;
    let receiver = MqReceiver::reading(Arc::new(hello.reply), link, config, asynchronous)?;
    Ok((sender, receiver, hello.peer))
}

fn hung_up(address: &Address) -> TransportError {
    connect_error(
        address,
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server closed the rendezvous socket before welcoming us",
        ),
    )
}

pub(crate) async fn connect(
    address: &Address,
    name: &str,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let socket = rendezvous::socket_name(name);
    let socket = connect_socket(address, &socket, Instant::now() + CONNECT_WAIT).await?;
    let mut hello = say_hello(address, name, socket)?;
    let stream = tokio::net::UnixStream::from_std(hello.socket)?;
    let mut welcome = [0u8; rendezvous::WELCOME_LEN];
    let (read, fds) = loop {
        stream.readable().await?;
        match stream.try_io(tokio::io::Interest::READABLE, || {
            rendezvous::recv_with_fds(stream.as_fd(), &mut welcome)
        }) {
            Ok((0, _)) => return Err(hung_up(address)),
            Ok(received) => break received,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(connect_error(address, e)),
        }
    };
    hello.socket = stream.into_std()?;
    let (sender, receiver, peer) = welcomed(address, hello, &welcome[..read], fds, config, true)?;
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
) -> Result<(MqSender, MqReceiver, PeerInfo), TransportError> {
    // A timeout too long to be an instant: a year is as long as it takes.
    let give_up = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
    let socket = connect_socket_blocking(address, &rendezvous::socket_name(name), give_up)?;
    let hello = say_hello(address, name, socket)?;
    let mut welcome = [0u8; rendezvous::WELCOME_LEN];
    let (read, fds) = loop {
        match rendezvous::recv_with_fds(hello.socket.as_fd(), &mut welcome) {
            Ok((0, _)) => return Err(hung_up(address)),
            Ok(received) => break received,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                let left = give_up.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(TransportError::TimedOut);
                }
                let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                let mut fds = [PollFd::new(hello.socket.as_fd(), PollFlags::POLLIN)];
                match poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                ) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(connect_error(address, e.into())),
                }
            }
            Err(e) => return Err(connect_error(address, e)),
        }
    };
    welcomed(address, hello, &welcome[..read], fds, config, false)
}
