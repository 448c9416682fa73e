//! `mq://NAME`: POSIX message queues.
//!
//! # Design
//!
//! - **Server.** [`MqAcceptor::bind`] first binds the Unix socket `@rpc-mq/NAME` in the abstract
//!   namespace. It is the server's lock on the name (a second server gets
//!   [`TransportError::AddressInUse`]) and each client's rendezvous and liveness link. Holding
//!   the lock, it removes a queue `/NAME` that a killed server left (one killed between the next
//!   two steps, or of an older version that kept the name), creates `/NAME` (mode 0600, as many
//!   and as large messages as `fs.mqueue.msg_max` and `fs.mqueue.msgsize_max` allow), opens it a
//!   second time write-only, and removes the name at once. So nothing is left under
//!   `/dev/mqueue`, nor counts against `RLIMIT_MSGQUEUE`, once the processes holding the queue's
//!   descriptors are gone, however they ended (`kill -9` included).
//! - **Client.** Connects to the socket (nobody listening: [`TransportError::Connect`]),
//!   creates its reply queue `/NAME.PID.N` and removes its name at once, likewise. It passes the
//!   reply queue's descriptor to the server with `SCM_RIGHTS` in a hello; the server answers
//!   with a welcome carrying the connection's token and, with `SCM_RIGHTS` too, the write-only
//!   descriptor of the server queue (a client cannot read other clients' messages from it).
//!   The client puts the token in every message it sends to the shared queue. The server side
//!   of the handshake runs while `accept` is being awaited (in a task of its own, so `accept`
//!   stays cancellation safe); a client's `connect` completes once the server accepts. The
//!   socket connects without blocking: while a hung server's backlog is full the client retries
//!   with short sleeps, until `connect_blocking`'s timeout or, for async `connect`, 10 s (then
//!   [`TransportError::Connect`] of kind `TimedOut`). The wait for the welcome after that is
//!   bounded by `connect_blocking`'s timeout, but not in async `connect` (a server may take its
//!   time to `accept`; the caller bounds it).
//! - **Who may connect.** Nothing is opened by name, so queue modes never decide who may use a
//!   connection: descriptors travel only over the rendezvous socket, whose peers are known by
//!   `SO_PEERCRED`. The server hands every client's credentials up in [`PeerInfo`] and lets the
//!   layer above judge them (rpc-core admits only its own uid unless widened with
//!   `Server::allow_uids` or `allow_gids`, and refuses others in its handshake with a reason
//!   they can read), so `socket_mode` has nothing to widen here. Abstract sockets have no
//!   permissions, so anyone may bind `@rpc-mq/NAME` while our server is down: the client
//!   requires the socket's peer to run as its own uid or as root, refusing anyone else with
//!   [`TransportError::Connect`] of kind `PermissionDenied` naming the uid, before it hands over
//!   its reply queue. Each connection's token is an unpredictable 64-bit value (a secret keyed
//!   permutation of a counter: unique, never 0), so a client cannot guess another connection's
//!   token and put frames into it. Descriptors a hello brings beyond its one reply queue are
//!   closed (there is room for as many as a message can carry, so the kernel never truncates
//!   them). A client, admitted or not, keeps its descriptor of the server queue as long as it
//!   lives: it can compete for the queue's few slots (messages of no connection are dropped as
//!   soon as read), though not read from it nor reach other connections.
//! - **Messages** (`wire.rs`): a 16-byte header and a chunk; frames longer than a message are
//!   fragmented and reassembled (16 MiB is about 2,000 messages of 8 KiB), and everything the
//!   peer sends is checked: a protocol error fails that connection only.
//! - **Routing** (`demux.rs`): one task per server reads the shared queue and hands frames to
//!   each connection by token, over a channel of [`demux::INBOX_FRAMES`] frames. It never waits
//!   for a connection: a client may have at most [`link::CREDIT_WINDOW`] frames that its server
//!   connection has not taken yet, and may start a frame only while less than
//!   [`link::BYTE_WINDOW`] bytes are (so a connection holds at most that plus one frame, however
//!   large its frame limit); the server grants more credit as its connection takes frames (on
//!   the rendezvous socket, a byte per [`link::CREDIT_FRAMES`] frames and another per
//!   [`link::CREDIT_BYTES`] bytes taken). So a connection that stops reading (its client
//!   stopped reading replies, say, and the server stopped reading its calls in turn) pauses
//!   its own client's sends, and the others go on; a client that ignores its credit fails its
//!   own connection with an error. The routing task reassembles frames under each
//!   connection's current limit, which its receiver's `set_max_frame_size` changes (rpc-core
//!   lowers it until the handshake is done): a frame over it is refused at its first message.
//! - **Liveness** (`link.rs`): besides credit, nobody writes to the socket after the handshake,
//!   so its end of stream tells that the peer is gone, however it ended. Every wait on a queue
//!   also waits on the socket: a sender facing a full queue of a dead peer fails with
//!   [`TransportError::Closed`] at once; a client receiver drains what the dead server had
//!   sent, then ends. A server connection reports its client's death to the routing task, which
//!   ends the connection once the client's last messages (all in the queue before its socket
//!   closed) are routed.
//! - **Closing**: a sender's `close` (and drop) sends `BYE`, so the peer's receiver returns
//!   `None`; should the peer's queue be full, a short-lived thread sends it, for at most two
//!   seconds. A peer that vanishes between frames also ends with `None`; in the middle of a
//!   frame, with [`TransportError::Malformed`]. So the thread is not started when the peer is
//!   gone already, stops as soon as it goes, and stops at once when the connection is dropped
//!   on our side too (closing the socket then says goodbye as well) unless a frame is half
//!   sent.
//! - **What holds a queue after the acceptor and connections are dropped** (each queue counts
//!   against `RLIMIT_MSGQUEUE` until its last descriptor closes): a closing thread finishing a
//!   half-sent frame to a live peer that does not read (at most two seconds; both queues); a
//!   handshake task whose client has not sent its hello yet (the server queue, through the
//!   routing task, at most 5 s); the routing task until it next runs after its last
//!   connection goes; connections still owned by tasks that are aborted but not yet dropped
//!   by the runtime, which only the runtime controls; and each client's descriptor of the
//!   server queue (so a server's queue, nameless, counts against its user's budget until its
//!   clients drop their connections, which fail as soon as the server is gone).
//! - **Waiting**: nonblocking queue operations are retried for `socket_spin` (yielding between
//!   tries in async code, spinning in blocking code), then the task sleeps on the queue's
//!   readiness (Linux queue descriptors work with epoll and poll).
//! - **Limits** (`queue.rs`): failures to create a queue name the limit hit:
//!   [`TransportError::LimitReached`] with `RLIMIT_MSGQUEUE`, `RLIMIT_NOFILE`,
//!   `fs.mqueue.queues_max`, `fs.mqueue.msg_max`, `fs.mqueue.msgsize_max` or `fs.file-max`.
//! - **Queue sizes** (a deviation from "every queue as large as the system allows"): a queue of
//!   `msg_max` x `msgsize_max` = 10 x 8 KiB costs about 82 KB of the user's
//!   `RLIMIT_MSGQUEUE`, whose default is 800 KiB, so only nine such queues fit, and raising the
//!   hard limit needs `CAP_SYS_RESOURCE`, which even root may lack (in containers). The budget
//!   is the user's, shared with every other process of that uid. The server queue is full size
//!   if it fits in what they left, else the largest message size (halving, down to 256 bytes)
//!   that does, with a warning; a reply queue takes the largest message size (halving from
//!   `msgsize_max`) at which 64 of them fit in the limit: 1 KiB under the default (11 KB a
//!   queue, so a server and 64 clients fit), 8 KiB once the limit is 5.3 MB or more. Should
//!   even that not fit, it tries halves down to 256 bytes before reporting the limit. Only
//!   replies longer than a message pay for it, in more messages.
//!
//! The socket lives in the network namespace and the queues in the IPC namespace: client and
//! server must share both. Queue descriptors are not inherited (`O_CLOEXEC`).
//!
//! `sysv/` is `sysv-mq://`, System V message queues, which shares this module's message format,
//! rendezvous socket and tokens (see its own docs for what it does differently, and why).
//!
//! Files: `queue.rs` (a queue, limits), `wire.rs` (message format), `rendezvous.rs` (socket,
//! descriptor passing, handshake), `client.rs` (the client's side of connecting), `link.rs`
//! (liveness, credit and waiting), `demux.rs` (server routing), `endpoint.rs` (the halves),
//! `routed.rs` (a server connection's receiver), `fd.rs` (the only `unsafe`).

mod client;
mod demux;
mod endpoint;
mod fd;
mod link;
mod queue;
mod rendezvous;
mod routed;
mod sysv;
#[cfg(test)]
mod tests;
mod transport;
mod wire;

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::mqueue::MQ_OFlag;
use tokio::sync::mpsc;

use endpoint::{MqReceiver, MqSender};
pub(crate) use sysv::SysvMq;
pub(crate) use transport::Mq;

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, FrameReceiver, FrameSender};
use crate::error::TransportError;
use demux::Control;
use link::Link;
use queue::{Queue, SystemLimits};

/// How long a client may take to send its hello after connecting.
const HELLO_WAIT: Duration = Duration::from_secs(5);
/// Accepted connections waiting for `accept`.
const ACCEPTED_QUEUE: usize = 64;

/// A bound `mq://NAME` listener.
#[derive(Debug)]
pub(crate) struct MqAcceptor {
    listener: tokio::net::UnixListener,
    /// A write-only descriptor of the server queue, handed to each client with its welcome
    /// (the queue has no name to open it by).
    writer: Arc<Queue>,
    control: mpsc::UnboundedSender<Control>,
    accepted_tx: mpsc::Sender<Connection>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
    tokens: Tokens,
    address: Address,
    config: TransportConfig,
}

/// Connection tokens: a secret keyed permutation of a counter, so every token of an acceptor
/// is different (a permutation has no collisions) and none can be guessed from others (a
/// client of the same user could otherwise put frames into other clients' connections).
///
/// The permutation is a four-round Feistel network on the counter's 32-bit halves whose round
/// function is SipHash (`RandomState`, keyed from the operating system's randomness once per
/// acceptor): a pseudorandom permutation as long as the key is secret. Token 0 is never used.
#[derive(Debug)]
struct Tokens {
    key: std::collections::hash_map::RandomState,
    next: AtomicU64,
}

impl Tokens {
    fn new() -> Tokens {
        Tokens {
            key: std::collections::hash_map::RandomState::new(),
            next: AtomicU64::new(0),
        }
    }

    fn permute(&self, n: u64) -> u64 {
        use std::hash::BuildHasher;
        let (mut left, mut right) = ((n >> 32) as u32, n as u32);
        for round in 0u8..4 {
            let f = self.key.hash_one((round, right)) as u32;
            (left, right) = (right, left ^ f);
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    fn next(&self) -> u64 {
        loop {
            let token = self.permute(self.next.fetch_add(1, Ordering::Relaxed));
            if token != 0 {
                return token;
            }
        }
    }
}

fn bind_error(address: &Address, source: io::Error) -> TransportError {
    TransportError::Bind {
        address: address.to_string(),
        source,
    }
}

/// Maps a failed `mq_open`: a system limit is named, anything else is `other`.
fn open_failed(
    errno: Errno,
    what: &str,
    limits: &SystemLimits,
    other: impl FnOnce(io::Error) -> TransportError,
) -> TransportError {
    match errno {
        Errno::EMFILE | Errno::ENFILE | Errno::ENOSPC | Errno::EINVAL => {
            queue::open_error(errno, what, limits)
        }
        errno => other(io::Error::new(
            io::Error::from(errno).kind(),
            format!("{what}: {}", errno.desc()),
        )),
    }
}

impl MqAcceptor {
    pub(crate) fn bind(
        address: &Address,
        name: &str,
        config: &TransportConfig,
    ) -> Result<MqAcceptor, TransportError> {
        let listener = rendezvous::listen(&rendezvous::socket_name(name)).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                TransportError::AddressInUse {
                    address: address.to_string(),
                }
            } else {
                bind_error(address, e)
            }
        })?;
        let cname = queue::queue_name(name).map_err(|e| bind_error(address, e))?;
        // We hold the lock, so a queue of this name is a dead server's (killed between making
        // its queue and removing the name, or of a version that kept the name).
        if queue::unlink(&cname).map_err(|e| bind_error(address, e.into()))? {
            tracing::info!(queue = ?cname, "removed a queue left by a server that died");
        }
        let limits = SystemLimits::read();
        let what = format!("creating the server queue /{name}");
        let made = queue::create_shrinking(&cname, MQ_OFlag::O_RDONLY, &limits)
            .map_err(|(e, tried)| open_failed(e, &what, &tried, |e| bind_error(address, e)))
            .and_then(|reader| {
                let writer = queue::open_for_sending(&cname)
                    .map_err(|e| open_failed(e, &what, &limits, |e| bind_error(address, e)))?;
                Ok((reader, writer))
            });
        // The name goes at once, made or not: nothing is left to count against
        // RLIMIT_MSGQUEUE once our descriptors close, however we end.
        let _ = queue::unlink(&cname);
        let (reader, writer) = made?;
        let (control, control_rx) = mpsc::unbounded_channel();
        demux::spawn(Arc::new(reader), control_rx, config.socket_spin)?;
        let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPTED_QUEUE);
        Ok(MqAcceptor {
            listener: tokio::net::UnixListener::from_std(listener)?,
            writer: Arc::new(writer),
            control,
            accepted_tx,
            accepted: tokio::sync::Mutex::new(accepted_rx),
            tokens: Tokens::new(),
            address: address.clone(),
            config: config.clone(),
        })
    }

    /// Waits for the next connection. Cancellation safe: handshakes run in tasks of their own
    /// and a finished one waits for the next call.
    pub(crate) async fn accept(&self) -> Result<Connection, TransportError> {
        let config = &self.config;
        let mut accepted = self.accepted.lock().await;
        loop {
            tokio::select! {
                biased;
                connection = accepted.recv() => return connection.ok_or(TransportError::Closed),
                stream = self.listener.accept() => {
                    let (stream, _) = stream?;
                    let token = self.tokens.next();
                    let control = self.control.clone();
                    let done = self.accepted_tx.clone();
                    let config = config.clone();
                    let writer = self.writer.clone();
                    tokio::spawn(async move {
                        let handshake = hand_over(stream, token, writer, control, &config);
                        match tokio::time::timeout(HELLO_WAIT, handshake).await {
                            Ok(Ok(connection)) => {
                                let _ = done.send(connection).await;
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "dropping an mq client that failed its handshake");
                            }
                            Err(_) => tracing::debug!("dropping an mq client that sent no hello"),
                        }
                    });
                }
            }
        }
    }
}

/// The server's side of a handshake: takes the client's reply queue, registers the connection
/// with the routing task and welcomes the client, handing it the server queue.
async fn hand_over(
    stream: tokio::net::UnixStream,
    token: u64,
    writer: Arc<Queue>,
    control: mpsc::UnboundedSender<Control>,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    // Whoever may connect is judged above us, from these credentials (rpc-core's access
    // check refuses another user's client in its handshake, with a reason it can read).
    let cred = rendezvous::credentials(&stream)?;
    let peer = rendezvous::peer_info(&cred);
    let mut hello = [0u8; rendezvous::HELLO_LEN];
    let (read, fds) = loop {
        stream.readable().await?;
        match stream.try_io(tokio::io::Interest::READABLE, || {
            rendezvous::recv_with_fds(stream.as_fd(), &mut hello)
        }) {
            Ok(received) => break received,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let reply = Queue::from_received(rendezvous::parse_hello(&hello[..read], fds)?)?;
    if reply.msgsize() <= wire::HEADER_LEN {
        return Err(TransportError::Malformed(format!(
            "the client's reply queue takes messages of only {} bytes",
            reply.msgsize()
        )));
    }
    let (inbox_tx, inbox) = mpsc::channel(demux::INBOX_FRAMES);
    let shared = demux::Shared::new(config.max_frame_size);
    control
        .send(Control::Register {
            token,
            inbox: inbox_tx,
            shared: shared.clone(),
        })
        .map_err(|_| TransportError::Closed)?;
    let link = Link::new(stream.into_std()?, true)?;
    // From here on, dropping the receiver unregisters the token.
    let receiver = MqReceiver::routed(routed::RoutedInbox::new(
        inbox,
        link.clone(),
        control,
        token,
        shared,
    ));
    rendezvous::send_with_fd(
        link.socket().as_fd(),
        &rendezvous::welcome(token, writer.msgsize()),
        writer.as_fd(),
    )?;
    let sender = MqSender::new(Arc::new(reply), link, token, config, true, false)?;
    Ok(Connection::new(
        FrameSender::new(sender),
        FrameReceiver::new(receiver),
        peer,
    ))
}
