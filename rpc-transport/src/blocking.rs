//! Blocking connections, for code without an async runtime: [`connect_blocking`] and the
//! halves [`BlockingSender`] and [`BlockingReceiver`].
//!
//! Sockets are used through `std` with per-operation timeouts; shared memory spins and then
//! sleeps on the futex word in the segment, so a call and its reply cross without a syscall when
//! both sides are busy. `mem://` runs its channel on a small private runtime (so it must not be
//! used from inside an async task). A server can also move the halves of an accepted
//! shared-memory connection onto a thread of its own with [`FrameSender::into_blocking`] and
//! [`FrameReceiver::into_blocking`].

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::address::Address;
use crate::connection::{
    Connection, FrameReceiver, FrameSender, PeerInfo, ReceiverFlavor, SenderFlavor,
};
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::mem::{MemReceiver, MemSender};
use crate::mq::{self, MqReceiver, MqSender};
use crate::pipe::{self, SyncPipe};
use crate::shm::{ShmInterrupter, ShmReceiver, ShmSender};
use crate::stream::{Buffered, length_prefixed, take_frame};
use crate::{TransportConfig, fifo, shm};

/// Bytes read from a socket per call when no large frame is pending.
const READ_CHUNK: usize = 64 * 1024;

/// A socket usable by the sync stream framing.
pub(crate) trait TimedStream: Read + Write + std::os::fd::AsFd {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()>;

    /// Reads what is there now, without blocking; `WouldBlock` if nothing is.
    fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        nix::sys::socket::recv(
            self.as_fd().as_raw_fd(),
            buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)
    }
}

impl TimedStream for TcpStream {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(read)?;
        self.set_write_timeout(write)
    }
}

impl TimedStream for SyncPipe {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        self.timeouts.set((read, write));
        Ok(())
    }

    fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        SyncPipe::read_now(self, buf)
    }
}

impl TimedStream for UnixStream {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(read)?;
        self.set_write_timeout(write)
    }
}

/// Time left until `deadline`: `Ok(None)` for no deadline, `Err(TimedOut)` once passed.
fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>, TransportError> {
    match deadline {
        None => Ok(None),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(TransportError::TimedOut)
            } else {
                Ok(Some(left))
            }
        }
    }
}

fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Length-prefixed framing (as in `stream.rs`) over a blocking socket.
struct SyncStreamSender<S> {
    io: S,
    limit: usize,
    /// Set when a write timed out part-way: the stream's framing is lost.
    broken: bool,
}

impl<S: TimedStream> SyncStreamSender<S> {
    fn send(&mut self, frame: Frame, deadline: Option<Instant>) -> Result<(), TransportError> {
        let buf = length_prefixed(frame, self.limit)?;
        if self.broken {
            return Err(TransportError::Closed);
        }
        self.io.set_timeouts(None, remaining(deadline)?)?;
        let mut written = 0;
        while written < buf.len() {
            match self.io.write(&buf[written..]) {
                Ok(0) => return Err(TransportError::Closed),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => {
                    if written > 0 {
                        self.broken = true;
                    }
                    return Err(TransportError::TimedOut);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

pub(crate) struct SyncStreamReceiver<S> {
    io: S,
    limit: usize,
    buf: BytesMut,
    scratch: Box<[u8]>,
    /// How long to poll the socket before blocking on it.
    spin: Duration,
}

impl<S: TimedStream> SyncStreamReceiver<S> {
    pub(crate) fn new(io: S, limit: usize, spin: Duration) -> Self {
        SyncStreamReceiver {
            io,
            limit,
            buf: BytesMut::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            spin,
        }
    }

    /// Polls the socket for up to the spin budget (a reply within it costs no wake-up).
    fn busy_poll(&mut self) -> io::Result<Option<usize>> {
        if self.spin.is_zero() {
            return Ok(None);
        }
        let until = Instant::now() + self.spin;
        loop {
            match self.io.read_now(&mut self.scratch) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            std::hint::spin_loop();
        }
    }

    pub(crate) fn recv(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Frame>, TransportError> {
        loop {
            match take_frame(&mut self.buf, self.limit)? {
                Buffered::Frame(frame) => return Ok(Some(frame)),
                Buffered::Partial { whole } if whole - self.buf.len() > READ_CHUNK => {
                    // A large frame: read the rest straight into place, growing the buffer by
                    // at most what has arrived (doubling), so the announced size is never
                    // allocated before its bytes come.
                    self.io.set_timeouts(remaining(deadline)?, None)?;
                    let mut filled = self.buf.len();
                    while filled < whole {
                        let target = whole.min(filled + filled.max(READ_CHUNK));
                        if self.buf.len() < target {
                            self.buf.resize(target, 0);
                        }
                        match self.io.read(&mut self.buf[filled..target]) {
                            Ok(0) => {
                                self.buf.truncate(filled);
                                return Err(TransportError::Malformed(
                                    "stream ended inside a frame".into(),
                                ));
                            }
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if timed_out(&e) => {
                                self.buf.truncate(filled);
                                return Err(TransportError::TimedOut);
                            }
                            Err(e) => {
                                self.buf.truncate(filled);
                                return Err(e.into());
                            }
                        }
                    }
                    continue;
                }
                Buffered::Partial { .. } | Buffered::NoPrefix => {}
            }
            let polled = match self.busy_poll() {
                Ok(Some(n)) => Ok(n),
                Ok(None) => {
                    self.io.set_timeouts(remaining(deadline)?, None)?;
                    self.io.read(&mut self.scratch)
                }
                Err(e) => Err(e),
            };
            match polled {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    return Err(TransportError::Malformed(
                        "stream ended inside a frame".into(),
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&self.scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => return Err(TransportError::TimedOut),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A `mem://` half driven by a private single-threaded runtime.
struct MemBlocking<H> {
    runtime: Arc<tokio::runtime::Runtime>,
    half: H,
}

fn run_with_deadline<T>(
    runtime: &tokio::runtime::Runtime,
    deadline: Option<Instant>,
    future: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    let left = remaining(deadline)?;
    runtime.block_on(async move {
        match left {
            None => future.await,
            Some(left) => tokio::time::timeout(left, future)
                .await
                .unwrap_or(Err(TransportError::TimedOut)),
        }
    })
}

enum BlockingSenderFlavor {
    Tcp(SyncStreamSender<TcpStream>),
    Unix(SyncStreamSender<UnixStream>),
    Shm(ShmSender),
    Mem(MemBlocking<MemSender>),
    Pipe(SyncStreamSender<SyncPipe>),
    Mq(MqSender),
}

enum BlockingReceiverFlavor {
    Tcp(SyncStreamReceiver<TcpStream>),
    Unix(SyncStreamReceiver<UnixStream>),
    Shm(ShmReceiver),
    Mem(MemBlocking<MemReceiver>),
    Pipe(SyncStreamReceiver<SyncPipe>),
    Mq(MqReceiver),
}

/// The sending half of a blocking connection.
pub struct BlockingSender(BlockingSenderFlavor);

/// The receiving half of a blocking connection.
pub struct BlockingReceiver(BlockingReceiverFlavor);

impl std::fmt::Debug for BlockingSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockingSender")
    }
}

impl std::fmt::Debug for BlockingReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockingReceiver")
    }
}

impl BlockingSender {
    /// Sends one frame, waiting at most until `deadline` ([`TransportError::TimedOut`]). A frame
    /// over the maximum size is refused with nothing sent.
    pub fn send(
        &mut self,
        frame: Frame,
        deadline: impl Into<Deadline>,
    ) -> Result<(), TransportError> {
        let deadline = deadline.into();
        match &mut self.0 {
            BlockingSenderFlavor::Tcp(s) => s.send(frame, deadline.resolve()),
            BlockingSenderFlavor::Unix(s) => s.send(frame, deadline.resolve()),
            BlockingSenderFlavor::Shm(s) => s.send_blocking(frame, deadline),
            BlockingSenderFlavor::Mem(m) => {
                run_with_deadline(&m.runtime, deadline.resolve(), m.half.send(frame))
            }
            BlockingSenderFlavor::Pipe(s) => s.send(frame, deadline.resolve()),
            BlockingSenderFlavor::Mq(s) => s.send_blocking(frame, deadline),
        }
    }

    /// Sends a message of `len` bytes that `fill` writes; see [`FrameSender::send_with`].
    pub fn send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        deadline: impl Into<Deadline>,
    ) -> Result<(), TransportError> {
        let deadline = deadline.into();
        match &mut self.0 {
            BlockingSenderFlavor::Shm(s) => s.send_with_blocking(len, fill, deadline),
            _ => {
                if len > self.max_frame_size() {
                    return Err(TransportError::FrameTooLarge {
                        size: len,
                        limit: self.max_frame_size(),
                    });
                }
                self.send(Frame::filled(len, fill), deadline)
            }
        }
    }

    /// Sends like [`send_with`](Self::send_with) only if that needs no wait: `Ok(false)` when
    /// shared memory's ring is full, with nothing sent (so async code can wait for room
    /// without holding a thread). Other mechanisms send as `send_with` does, waiting as long
    /// as it takes.
    pub fn try_send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<bool, TransportError> {
        match &mut self.0 {
            BlockingSenderFlavor::Shm(s) => s.try_send_with(len, fill),
            _ => self.send_with(len, fill, Deadline::Never).map(|()| true),
        }
    }

    /// The mechanism carrying this connection, as [`FrameSender::mechanism`] names it. A
    /// `"mem"` half drives a private runtime of its own, so it cannot be used inside one.
    pub fn mechanism(&self) -> &'static str {
        match &self.0 {
            BlockingSenderFlavor::Tcp(_) => "tcp",
            BlockingSenderFlavor::Unix(_) => "unix",
            BlockingSenderFlavor::Shm(_) => "shm",
            BlockingSenderFlavor::Mem(_) => "mem",
            BlockingSenderFlavor::Pipe(_) => "pipe",
            BlockingSenderFlavor::Mq(_) => "mq",
        }
    }

    /// The largest payload this half will send.
    pub fn max_frame_size(&self) -> usize {
        match &self.0 {
            BlockingSenderFlavor::Tcp(s) => s.limit,
            BlockingSenderFlavor::Unix(s) => s.limit,
            BlockingSenderFlavor::Shm(s) => s.max_frame_size(),
            BlockingSenderFlavor::Mem(m) => m.half.max_frame_size(),
            BlockingSenderFlavor::Pipe(s) => s.limit,
            BlockingSenderFlavor::Mq(s) => s.max_frame_size(),
        }
    }

    /// Closes the sending direction; the peer's receiver then ends.
    pub fn close(&mut self) {
        match &mut self.0 {
            BlockingSenderFlavor::Tcp(s) => {
                let _ = s.io.shutdown(std::net::Shutdown::Write);
            }
            BlockingSenderFlavor::Unix(s) => {
                let _ = s.io.shutdown(std::net::Shutdown::Write);
            }
            BlockingSenderFlavor::Shm(s) => s.close(),
            BlockingSenderFlavor::Mem(m) => m.half = MemSender::closed(),
            BlockingSenderFlavor::Pipe(s) => s.io.close(),
            BlockingSenderFlavor::Mq(s) => s.close(),
        }
    }
}

impl BlockingReceiver {
    /// Receives the next frame, waiting at most until `deadline` ([`TransportError::TimedOut`],
    /// after which the next call resumes where this one stopped). `None` once the peer closed.
    pub fn recv(&mut self, deadline: impl Into<Deadline>) -> Result<Option<Frame>, TransportError> {
        let deadline = deadline.into();
        match &mut self.0 {
            BlockingReceiverFlavor::Tcp(r) => r.recv(deadline.resolve()),
            BlockingReceiverFlavor::Unix(r) => r.recv(deadline.resolve()),
            BlockingReceiverFlavor::Shm(r) => r.recv_blocking(deadline),
            BlockingReceiverFlavor::Mem(m) => {
                run_with_deadline(&m.runtime, deadline.resolve(), m.half.recv())
            }
            BlockingReceiverFlavor::Pipe(r) => r.recv(deadline.resolve()),
            BlockingReceiverFlavor::Mq(r) => r.recv_blocking(deadline),
        }
    }
}

/// Makes a [`BlockingReceiver`] blocked in `recv` on another thread return
/// [`TransportError::TimedOut`] at once, so that thread can look at other signals (a server
/// shutting down) without waking up periodically.
pub struct RecvInterrupter(Option<ShmInterrupter>);

impl RecvInterrupter {
    /// Interrupts the receiver's current (or next) blocking wait once. Receivers that cannot be
    /// interrupted wait out their deadline instead.
    pub fn interrupt(&self) {
        if let Some(shm) = &self.0 {
            shm.interrupt();
        }
    }
}

impl BlockingReceiver {
    /// Whether the peer has left, asked without reading or waiting; see
    /// [`FrameReceiver::peer_gone`].
    pub fn peer_gone(&self) -> bool {
        match &self.0 {
            BlockingReceiverFlavor::Tcp(r) => crate::hangup::hung_up(&r.io),
            BlockingReceiverFlavor::Unix(r) => crate::hangup::hung_up(&r.io),
            BlockingReceiverFlavor::Shm(r) => r.peer_gone(),
            BlockingReceiverFlavor::Mem(m) => m.half.peer_gone(),
            BlockingReceiverFlavor::Pipe(r) => crate::hangup::hung_up(&r.io),
            BlockingReceiverFlavor::Mq(r) => r.peer_gone(),
        }
    }

    /// A handle to interrupt this receiver's waits from another thread.
    pub fn interrupter(&self) -> RecvInterrupter {
        match &self.0 {
            BlockingReceiverFlavor::Shm(r) => RecvInterrupter(Some(r.interrupter())),
            _ => RecvInterrupter(None),
        }
    }
}

/// A connection for code without an async runtime.
#[derive(Debug)]
pub struct BlockingConnection {
    sender: BlockingSender,
    receiver: BlockingReceiver,
    peer: PeerInfo,
}

impl BlockingConnection {
    /// Who is on the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// Sends one frame; see [`BlockingSender::send`].
    pub fn send(
        &mut self,
        frame: Frame,
        deadline: impl Into<Deadline>,
    ) -> Result<(), TransportError> {
        self.sender.send(frame, deadline)
    }

    /// Receives one frame; see [`BlockingReceiver::recv`].
    pub fn recv(&mut self, deadline: impl Into<Deadline>) -> Result<Option<Frame>, TransportError> {
        self.receiver.recv(deadline)
    }

    /// The two halves and the peer's description.
    pub fn split(self) -> (BlockingSender, BlockingReceiver, PeerInfo) {
        (self.sender, self.receiver, self.peer)
    }
}

fn unix_peer(stream: &UnixStream) -> PeerInfo {
    match nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) => PeerInfo::Unix {
            pid: Some(cred.pid()),
            uid: cred.uid(),
            gid: cred.gid(),
        },
        Err(_) => PeerInfo::Unix {
            pid: None,
            uid: u32::MAX,
            gid: u32::MAX,
        },
    }
}

fn stream_connection<S: TimedStream + 'static>(
    stream: S,
    reader: S,
    config: &TransportConfig,
    peer: PeerInfo,
    wrap: fn(SyncStreamSender<S>, SyncStreamReceiver<S>) -> (BlockingSender, BlockingReceiver),
) -> BlockingConnection {
    let sender = SyncStreamSender {
        io: stream,
        limit: config.max_frame_size,
        broken: false,
    };
    let (sender, receiver) = wrap(
        sender,
        SyncStreamReceiver::new(reader, config.max_frame_size, config.socket_spin),
    );
    BlockingConnection {
        sender,
        receiver,
        peer,
    }
}

/// Opens a blocking connection to `address`, waiting at most `timeout` to connect.
pub fn connect_blocking(
    address: &Address,
    config: &TransportConfig,
    timeout: Duration,
) -> Result<BlockingConnection, TransportError> {
    let connect_error = |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    match address {
        Address::Tcp { host, port } => {
            let mut last = None;
            for candidate in (host.as_str(), *port)
                .to_socket_addrs()
                .map_err(connect_error)?
            {
                match TcpStream::connect_timeout(&candidate, timeout) {
                    Ok(stream) => {
                        stream.set_nodelay(true)?;
                        let peer = PeerInfo::Tcp(stream.peer_addr()?);
                        let reader = stream.try_clone()?;
                        return Ok(stream_connection(stream, reader, config, peer, |s, r| {
                            (
                                BlockingSender(BlockingSenderFlavor::Tcp(s)),
                                BlockingReceiver(BlockingReceiverFlavor::Tcp(r)),
                            )
                        }));
                    }
                    Err(error) => last = Some(error),
                }
            }
            Err(connect_error(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "host resolved to no address")
            })))
        }
        Address::Unix(path) => {
            let stream = UnixStream::connect(path).map_err(connect_error)?;
            unix_connection(stream, config)
        }
        Address::UnixAbstract(name) => {
            let addr = UnixAddr::from_abstract_name(name).map_err(connect_error)?;
            let stream = UnixStream::connect_addr(&addr).map_err(connect_error)?;
            unix_connection(stream, config)
        }
        Address::ShmNamed(_) | Address::ShmPath(_) | Address::Mmap(_) => {
            let (sender, receiver, peer) = shm::connect_blocking(address, config, timeout)?;
            Ok(BlockingConnection {
                sender: BlockingSender(BlockingSenderFlavor::Shm(sender)),
                receiver: BlockingReceiver(BlockingReceiverFlavor::Shm(receiver)),
                peer,
            })
        }
        Address::Mem(_) => {
            if tokio::runtime::Handle::try_current().is_ok() {
                return Err(TransportError::Unavailable {
                    scheme: "mem",
                    address: format!(
                        "{address} (a blocking mem:// connection cannot be used inside an async runtime)"
                    ),
                });
            }
            let runtime = Arc::new(
                tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()?,
            );
            let connection: Connection = runtime
                .block_on(async {
                    tokio::time::timeout(timeout, crate::listener::connect(address, config)).await
                })
                .map_err(|_| connect_error(io::ErrorKind::TimedOut.into()))??;
            let (sender, receiver, peer) = connection.split();
            let (SenderFlavor::Mem(sender), ReceiverFlavor::Mem(receiver)) = (sender.0, receiver.0)
            else {
                unreachable!("mem:// connects with mem halves");
            };
            Ok(BlockingConnection {
                sender: BlockingSender(BlockingSenderFlavor::Mem(MemBlocking {
                    runtime: runtime.clone(),
                    half: sender,
                })),
                receiver: BlockingReceiver(BlockingReceiverFlavor::Mem(MemBlocking {
                    runtime,
                    half: receiver,
                })),
                peer,
            })
        }
        Address::Spawn { .. } => spawn_blocking(pipe::command_of(address), config),
        Address::Fifo(_) => {
            let (write, read, peer) = fifo::connect_blocking(address, timeout)?;
            Ok(pipe_connection(write, read, config, peer))
        }
        Address::Mq(name) => {
            let (sender, receiver, peer) = mq::connect_blocking(address, name, config, timeout)?;
            Ok(BlockingConnection {
                sender: BlockingSender(BlockingSenderFlavor::Mq(sender)),
                receiver: BlockingReceiver(BlockingReceiverFlavor::Mq(receiver)),
                peer,
            })
        }
        Address::Stdio => Err(crate::listener::wrong_side(address)),
        _ => Err(TransportError::Unavailable {
            scheme: address.scheme(),
            address: address.to_string(),
        }),
    }
}

/// Spawns `command` with pipes on its stdin and stdout and returns a blocking connection to
/// it; see [`spawn`](crate::spawn).
pub fn spawn_blocking(
    command: std::process::Command,
    config: &TransportConfig,
) -> Result<BlockingConnection, TransportError> {
    let (write, read, peer) = pipe::spawn_sync(command)?;
    Ok(pipe_connection(write, read, config, peer))
}

fn pipe_connection(
    write: SyncPipe,
    read: SyncPipe,
    config: &TransportConfig,
    peer: PeerInfo,
) -> BlockingConnection {
    stream_connection(write, read, config, peer, |s, r| {
        (
            BlockingSender(BlockingSenderFlavor::Pipe(s)),
            BlockingReceiver(BlockingReceiverFlavor::Pipe(r)),
        )
    })
}

fn unix_connection(
    stream: UnixStream,
    config: &TransportConfig,
) -> Result<BlockingConnection, TransportError> {
    let peer = unix_peer(&stream);
    let reader = stream.try_clone()?;
    Ok(stream_connection(stream, reader, config, peer, |s, r| {
        (
            BlockingSender(BlockingSenderFlavor::Unix(s)),
            BlockingReceiver(BlockingReceiverFlavor::Unix(r)),
        )
    }))
}

impl FrameSender {
    /// This half as a [`BlockingSender`], for transports that serve best from a dedicated
    /// thread (shared memory); the half itself, unchanged, for the others.
    #[allow(clippy::result_large_err)] // hands the half back unchanged, by design
    pub fn into_blocking(self) -> Result<BlockingSender, FrameSender> {
        match self.0 {
            SenderFlavor::Shm(s) => Ok(BlockingSender(BlockingSenderFlavor::Shm(s))),
            other => Err(FrameSender(other)),
        }
    }
}

impl FrameReceiver {
    /// This half as a [`BlockingReceiver`], for transports that serve best from a dedicated
    /// thread (shared memory); the half itself, unchanged, for the others.
    #[allow(clippy::result_large_err)] // hands the half back unchanged, by design
    pub fn into_blocking(self) -> Result<BlockingReceiver, FrameReceiver> {
        match self.0 {
            ReceiverFlavor::Shm(r) => Ok(BlockingReceiver(BlockingReceiverFlavor::Shm(r))),
            other => Err(FrameReceiver(other)),
        }
    }
}
