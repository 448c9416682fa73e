//! `sysv-mq://NAME`: System V message queues (`msgget`, `msgsnd`, `msgrcv`).
//!
//! # Design
//!
//! What it shares with `mq://` (the parent module): the message format and the fragmenting of
//! frames into messages (`wire.rs`), the rendezvous socket in the abstract namespace
//! (`rendezvous.rs`, here `@rpc-sysv-mq/NAME`: the server's lock on the name, the handshake,
//! then the liveness signal), the client's bounded connect to it (`client.rs`) and the
//! connection tokens. What it does not share, and why:
//!
//! - **A pair of queues per connection, no routing task, no credit.** `mq://` shares one
//!   server queue among all clients because every POSIX queue counts against its user's small
//!   `RLIMIT_MSGQUEUE`; the routing task (`demux.rs`) and the credit windows (`link.rs`) exist
//!   so that one stalled connection cannot fill that shared queue for all. System V queues
//!   count against no per-user budget, only the system's count of queues (`kernel.msgmni`,
//!   32,000 by default), so each connection gets two (client to server, server to client).
//!   Each holds `kernel.msgmnb` bytes (16 KiB by default) and a stalled connection fills only
//!   its own, pausing only its own peer. Routing by `mtype` on one shared queue would still
//!   let a stalled connection's messages fill the shared 16 KiB and stop everyone.
//! - **Threads instead of readiness.** System V queues are not descriptors: nothing can wait
//!   on one beside a socket. Receives and sends are tried without waiting (`IPC_NOWAIT`) in
//!   the caller's task or thread, a receive spinning for `socket_spin` first as `mq://` does;
//!   only then does a receive sleep, woken by its connection's thread blocked in a `msgrcv` of
//!   zero bytes, which returns as soon as a message is there without taking it (`reader.rs`).
//!   A send that finds the queue full hands the rest of its frame to a writer thread, started
//!   the first time it is needed, blocked in `msgsnd` (`writer.rs`). One thread per process
//!   watches every rendezvous socket for its peer's end (`watch.rs`). None of them polls: an
//!   idle connection costs no CPU.
//! - **Removal by rule, not by the kernel** (`link.rs`). A System V queue outlives its users,
//!   so: a queue's reader removes it when done with it; when the peer goes, however it ended,
//!   the survivor removes the peer's queue at once and its own once drained; a side dropped
//!   while its peer may still read keeps its socket until the peer is done (`Linger`); and a
//!   ledger of each server's queues, in the user's runtime directory, lets the next server
//!   reclaim those of a server killed with its clients (`ledger.rs`). Every removal checks the
//!   queue's creation time and owner first, so a reused id is never removed by mistake.
//!
//! # Protocol
//!
//! - **Server.** [`SysvAcceptor::bind`] binds `@rpc-sysv-mq/NAME` (taken:
//!   [`TransportError::AddressInUse`]), checks the limits (a message size of at least 64
//!   bytes must fit `kernel.msgmax` and half a queue) and reclaims the ledger records of dead
//!   servers (a ledger directory it cannot use, one another user made in `/tmp` say, is
//!   logged and the server runs without). For each client it checks the client's uid
//!   (`SO_PEERCRED`), reads a hello, creates the connection's two queues (`IPC_PRIVATE`, mode
//!   0600), records them in the ledger, and sends a welcome with their ids, the message size
//!   and the connection's token (`handshake.rs`). A client of another uid gets a refusal with
//!   the reason at once, before its hello: a queue of mode 0600 is out of its reach, so
//!   `Server::allow_uids` cannot admit it over `sysv-mq://` (use `mq://` or `unix://` for
//!   that).
//! - **Client.** Connects the socket (bounded like `mq://`), requires the server to run as its
//!   own uid (anyone may bind an abstract name while our server is down), sends the hello and
//!   reads the answer. It checks both queues with `IPC_STAT` (private, mode 0600, made and
//!   owned by its uid) before using them.
//! - **Messages**: `mtype` 1 carries a 16-byte header and a chunk of a frame (`wire.rs`),
//!   `mtype` 2 only wakes a side's own receiver. A message is at most `kernel.msgmax` bytes and
//!   half a queue (8 KiB by default), and frames longer than that are fragmented: a 16 MiB
//!   frame is about 2,000 messages, two in a queue at a time, the writer thread waking as the
//!   receiver makes room. Nothing is read ahead: a connection holds its queue's bytes and at
//!   most one frame being reassembled.
//! - **Peer death.** The watcher sees the peer's end of the socket at once (`kill -9`
//!   included): the receiver drains what the peer sent and ends (`None` between frames,
//!   [`TransportError::Malformed`] in the middle of one), a waiting send fails with
//!   [`TransportError::Closed`], and the queues go.
//! - **Closing**: a sender's `close` (and drop) sends `BYE` after its last frame; should the
//!   peer's queue be full, the writer thread does it, giving up after two seconds by removing
//!   that queue.
//! - **Limits** (`queue.rs`): failures name the limit hit: [`TransportError::LimitReached`]
//!   with `kernel.msgmni` (no queue left in the system), `kernel.msgmax` or `kernel.msgmnb`
//!   (a message over them, should they be lowered while a connection runs), with the values.
//!
//! Access is the uid's: a process of the same user can open any of the user's queues by id
//! (System V has no descriptors to pass), so the trust boundary is the user, as for the
//! user's files. The socket lives in the network namespace, the queues in the IPC namespace
//! and the ledger in the runtime directory: client and server must share them, and the
//! ledger's liveness check by pid assumes one pid namespace per runtime directory.
//!
//! Files: `sys.rs` (the system calls, the only `unsafe`), `queue.rs` (a queue, limits),
//! `handshake.rs`, `ledger.rs`, `watch.rs`, `link.rs`, `reader.rs`, `writer.rs`, `client.rs`,
//! `transport.rs`.

mod client;
mod handshake;
mod ledger;
mod link;
mod queue;
mod reader;
mod sys;
#[cfg(test)]
mod tests;
mod transport;
mod watch;
mod writer;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

pub(crate) use transport::SysvMq;

use super::{Tokens, rendezvous};
use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, FrameReceiver, FrameSender};
use crate::error::TransportError;
use handshake::Welcome;
use ledger::Ledger;
use link::Link;
use queue::{Limits, Queue, own_uid};
use reader::SysvReceiver;
use writer::SysvSender;

/// How long a client may take to send its hello after connecting.
const HELLO_WAIT: Duration = Duration::from_secs(5);
/// Accepted connections waiting for `accept`.
const ACCEPTED_QUEUE: usize = 64;

/// The abstract socket name of `sysv-mq://NAME` (without its leading '@').
fn socket_name(name: &str) -> String {
    format!("rpc-sysv-mq/{name}")
}

/// A bound `sysv-mq://NAME` listener.
#[derive(Debug)]
pub(crate) struct SysvAcceptor {
    listener: tokio::net::UnixListener,
    accepted_tx: mpsc::Sender<Connection>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<Connection>>,
    shared: Arc<Shared>,
}

/// What every handshake of an acceptor needs.
#[derive(Debug)]
struct Shared {
    tokens: Tokens,
    /// `None` when the ledger's directory is unusable (another user made it, say): the server
    /// runs without one.
    ledger: Option<Ledger>,
    address: Address,
    config: TransportConfig,
}

fn bind_error(address: &Address, source: io::Error) -> TransportError {
    TransportError::Bind {
        address: address.to_string(),
        source,
    }
}

/// Whether a client of `peer_uid` may be served by a server of `own`: only its own user can
/// use queues of mode 0600. `Err` gives the client the reason.
fn admit(peer_uid: u32, own: u32, address: &Address) -> Result<(), String> {
    if peer_uid == own {
        Ok(())
    } else {
        Err(format!(
            "{address} serves only its own user, uid {own}: its System V queues (mode 0600) \
             are out of reach of uid {peer_uid}"
        ))
    }
}

impl SysvAcceptor {
    pub(crate) fn bind(
        address: &Address,
        name: &str,
        config: &TransportConfig,
    ) -> Result<SysvAcceptor, TransportError> {
        let listener = rendezvous::listen(&socket_name(name)).map_err(|e| {
            if e.kind() == io::ErrorKind::AddrInUse {
                TransportError::AddressInUse {
                    address: address.to_string(),
                }
            } else {
                bind_error(address, e)
            }
        })?;
        let limits = Limits::read();
        limits.msgsize(limits.msgmnb)?;
        // Without its ledger a server still serves; only the queues of a server killed with
        // its clients go unreclaimed. (Its directory may be in `/tmp`, where another user can
        // make it first.)
        let ledger = match Ledger::open() {
            Ok(ledger) => {
                ledger.reclaim();
                Some(ledger)
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    %address,
                    "the sysv-mq ledger directory is unusable: serving without a ledger (the \
                     queues of this server, should it be killed with its clients, will not be \
                     reclaimed)"
                );
                None
            }
        };
        let (accepted_tx, accepted_rx) = mpsc::channel(ACCEPTED_QUEUE);
        Ok(SysvAcceptor {
            listener: tokio::net::UnixListener::from_std(listener)?,
            accepted_tx,
            accepted: tokio::sync::Mutex::new(accepted_rx),
            shared: Arc::new(Shared {
                tokens: Tokens::new(),
                ledger,
                address: address.clone(),
                config: config.clone(),
            }),
        })
    }

    pub(crate) fn local_address(&self) -> Address {
        self.shared.address.clone()
    }

    /// Waits for the next connection. Cancellation safe: handshakes run in tasks of their own
    /// and a finished one waits for the next call.
    pub(crate) async fn accept(&self) -> Result<Connection, TransportError> {
        let mut accepted = self.accepted.lock().await;
        loop {
            tokio::select! {
                biased;
                connection = accepted.recv() => return connection.ok_or(TransportError::Closed),
                stream = self.listener.accept() => {
                    let (stream, _) = stream?;
                    let shared = self.shared.clone();
                    let done = self.accepted_tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(HELLO_WAIT, hand_over(stream, &shared)).await {
                            Ok(Ok(connection)) => {
                                let _ = done.send(connection).await;
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "dropping a sysv-mq client that failed its handshake");
                            }
                            Err(_) => tracing::debug!("dropping a sysv-mq client that sent no hello"),
                        }
                    });
                }
            }
        }
    }
}

/// Tells the client why the server cannot set its connection up (a system limit, by name),
/// and logs it: a server out of queues is its operator's concern. Returns `error`.
fn refuse(stream: &tokio::net::UnixStream, error: TransportError) -> TransportError {
    let reason = match &error {
        TransportError::LimitReached { limit, detail } => {
            tracing::warn!(%error, "a sysv-mq client refused: a system limit is reached");
            handshake::limit_refusal(limit, detail)
        }
        other => format!("the server could not set the connection up: {other}"),
    };
    let _ = stream.try_write(&handshake::refusal(&reason));
    error
}

/// The server's side of a handshake. Everything from creating the queues to building the
/// connection runs without an `.await`, so a handshake given up (its hello came too late)
/// never leaves queues behind.
async fn hand_over(
    mut stream: tokio::net::UnixStream,
    shared: &Shared,
) -> Result<Connection, TransportError> {
    let cred = rendezvous::credentials(&stream)?;
    let peer = rendezvous::peer_info(&cred);
    // Another user is refused before its hello: anyone may connect to the socket, and a
    // stranger who never says hello holds no task of ours for the hello's time.
    if let Err(reason) = admit(cred.uid(), own_uid(), &shared.address) {
        let _ = stream.try_write(&handshake::refusal(&reason));
        return Err(TransportError::Io(io::Error::new(
            io::ErrorKind::PermissionDenied,
            reason,
        )));
    }
    let mut hello = [0u8; handshake::HELLO_LEN];
    stream.read_exact(&mut hello).await?;
    handshake::check_hello(&hello)?;
    let what = format!("creating the queues of a connection to {}", shared.address);
    let rx = Queue::create(&what).map_err(|error| refuse(&stream, error))?;
    let tx = match Queue::create(&what) {
        Ok(tx) => tx,
        Err(error) => {
            rx.remove();
            return Err(refuse(&stream, error));
        }
    };
    let token = shared.tokens.next();
    let welcomed = (|| -> Result<(usize, Option<ledger::Record>), TransportError> {
        let qbytes = rx.qbytes()?.min(tx.qbytes()?);
        let msgsize = Limits::read().msgsize(qbytes)?;
        let record = match &shared.ledger {
            Some(ledger) => Some(ledger.record(token, &[&rx, &tx])?),
            None => None,
        };
        let welcome = handshake::welcome(Welcome {
            token,
            msgsize,
            to_server: rx.id(),
            to_client: tx.id(),
        });
        if stream.try_write(&welcome)? != welcome.len() {
            return Err(TransportError::Io(io::Error::new(
                io::ErrorKind::WriteZero,
                "the welcome did not fit the rendezvous socket",
            )));
        }
        Ok((msgsize, record))
    })();
    let (msgsize, record) = match welcomed {
        Ok(welcomed) => welcomed,
        Err(error) => {
            rx.remove();
            tx.remove();
            return Err(refuse(&stream, error));
        }
    };
    let socket = match stream.into_std() {
        Ok(socket) => socket,
        Err(error) => {
            rx.remove();
            tx.remove();
            return Err(error.into());
        }
    };
    let link = Link::new(socket, rx, tx, record)?;
    let limit = shared.config.max_frame_size;
    let receiver = SysvReceiver::start(
        link.clone(),
        msgsize,
        token,
        limit,
        shared.config.socket_spin,
    )?;
    let sender = SysvSender::new(link, msgsize, token, limit);
    Ok(Connection::new(
        FrameSender::new(sender),
        FrameReceiver::new(receiver),
        peer,
    ))
}
