//! Anonymous pipes: `spawn:PROGRAM ARGS` starts the server as a child with pipes on its
//! stdin and stdout; `stdio` is that child's side, one connection on its own stdin/stdout.
//!
//! Both directions are length-prefixed byte streams (`stream.rs`), as on a socket. The halves
//! here ([`PipeRead`], [`PipeWrite`], [`SyncPipe`]) also carry FIFOs (`fifo.rs`).
//!
//! A spawned child lives exactly as long as its connection: when both halves are gone the
//! child reads end-of-file on stdin, and a reaper thread waits for it (sending SIGTERM if it
//! lingers past [`REAP_GRACE`], SIGKILL after as long again), so no child is left running or
//! unreaped while this process lives. When the child dies first, its stdout closes and the
//! connection ends at once (unless a grandchild inherited that stdout and keeps it open).
//!
//! Writing to a pipe whose reader is gone raises SIGPIPE; Rust programs ignore it from the
//! start (and get `EPIPE`), which this module relies on. A host that restores the default
//! disposition would be killed by a peer's death instead.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::stream::{StreamReceiver, StreamSender, TryRead};

/// How long a spawned child may take to exit after its stdin closes before it is asked to stop
/// with SIGTERM, and again after that before SIGKILL.
pub const REAP_GRACE: Duration = Duration::from_secs(5);

/// Something owned jointly by both halves of a pipe connection, dropped with the last one.
pub(crate) type Shared = Arc<dyn std::any::Any + Send + Sync>;

/// Whatever must live as long as either half of a pipe connection: a spawned child's reaper,
/// a FIFO client's file names.
pub(crate) type Keepalive = Option<Shared>;

/// Waits for a spawned child once both halves of its connection are gone.
#[derive(Debug)]
pub(crate) struct ChildReaper {
    child: Mutex<Option<Child>>,
}

impl ChildReaper {
    fn shared(child: Child) -> Shared {
        Arc::new(ChildReaper {
            child: Mutex::new(Some(child)),
        })
    }
}

impl ChildReaper {
    /// Starts reaping now: once both halves are gone, or as soon as the child closed its
    /// stdout (it died, or ended the connection), so a dead child is not left a zombie while
    /// the client still holds the connection. Only the first call does anything.
    fn start(&self) {
        let Some(mut child) = self.child.lock().map(|mut c| c.take()).unwrap_or(None) else {
            return;
        };
        // The pipes are closed by now (the halves drop their descriptors before this), so the
        // child reads end-of-file; give it time to exit on its own, then ask it to stop
        // (SIGTERM: a server finishes its calls and removes its files), then kill it.
        let reap = move || {
            if exits_within(&mut child, REAP_GRACE) {
                return;
            }
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            tracing::warn!(%pid, "spawned server ignored end-of-file; sending SIGTERM");
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if exits_within(&mut child, REAP_GRACE) {
                return;
            }
            tracing::warn!(%pid, "spawned server ignored SIGTERM; killing it");
            let _ = child.kill();
            let _ = child.wait();
        };
        if std::thread::Builder::new()
            .name("rpc-reaper".into())
            .spawn(reap)
            .is_err()
        {
            tracing::warn!("cannot start a reaper thread; the child may stay a zombie");
        }
    }
}

impl Drop for ChildReaper {
    fn drop(&mut self) {
        self.start();
    }
}

/// Waits up to `limit` for `child` to exit, reaping it; whether it did (or cannot be waited for).
fn exits_within(child: &mut Child, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= until => return false,
            Ok(None) => std::thread::sleep(pause),
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// The reading end of a pipe or FIFO, for the async stream framing.
pub(crate) struct PipeRead {
    io: pipe::Receiver,
    keep: Keepalive,
}

/// The writing end of a pipe or FIFO, for the async stream framing. Shutting it down closes the
/// descriptor, which is how a pipe says end-of-file.
pub(crate) struct PipeWrite {
    io: Option<pipe::Sender>,
    _keep: Keepalive,
}

impl AsFd for PipeRead {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl std::fmt::Debug for PipeRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PipeRead({})", self.io.as_raw_fd())
    }
}

impl std::fmt::Debug for PipeWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.io {
            Some(io) => write!(f, "PipeWrite({})", io.as_raw_fd()),
            None => f.write_str("PipeWrite(closed)"),
        }
    }
}

impl PipeRead {
    /// Wraps a pipe's or FIFO's reading end (made non-blocking). Needs a runtime.
    pub(crate) fn new(fd: OwnedFd, keep: Keepalive) -> io::Result<PipeRead> {
        Ok(PipeRead {
            io: pipe::Receiver::from_owned_fd(fd)?,
            keep,
        })
    }
}

impl PipeWrite {
    /// Wraps a pipe's or FIFO's writing end (made non-blocking). Needs a runtime.
    pub(crate) fn new(fd: OwnedFd, keep: Keepalive) -> io::Result<PipeWrite> {
        Ok(PipeWrite {
            io: Some(pipe::Sender::from_owned_fd(fd)?),
            _keep: keep,
        })
    }
}

/// End-of-file from the peer's side of a pipe: a spawned child is reaped from now on.
fn peer_closed(keep: &Keepalive) {
    if let Some(reaper) = keep.as_ref().and_then(|k| k.downcast_ref::<ChildReaper>()) {
        reaper.start();
    }
}

impl AsyncRead for PipeRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if wanted && matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            peer_closed(&self.keep);
        }
        polled
    }
}

impl TryRead for PipeRead {
    fn try_read_now(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let read = self.io.try_read_buf(buf);
        if matches!(read, Ok(0)) {
            peer_closed(&self.keep);
        }
        read
    }
}

fn closed_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the pipe was closed")
}

impl AsyncWrite for PipeWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Some(io) => Pin::new(io).poll_write(cx, buf),
            None => Poll::Ready(Err(closed_pipe())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io = None;
        Poll::Ready(Ok(()))
    }
}

/// A non-blocking pipe or FIFO end used by the blocking stream framing: each read or write
/// first waits for readiness with `poll(2)`, bounded by the timeout set for it.
pub(crate) struct SyncPipe {
    fd: Option<OwnedFd>,
    /// The (read, write) waits' bounds; `None` waits without one.
    pub(crate) timeouts: Cell<(Option<Duration>, Option<Duration>)>,
    keep: Keepalive,
}

impl SyncPipe {
    /// Wraps a pipe's or FIFO's end, making it non-blocking.
    pub(crate) fn new(fd: OwnedFd, keep: Keepalive) -> io::Result<SyncPipe> {
        set_nonblocking(&fd)?;
        Ok(SyncPipe {
            fd: Some(fd),
            timeouts: Cell::new((None, None)),
            keep,
        })
    }

    /// Closes the descriptor: the reader at the other end sees end-of-file.
    pub(crate) fn close(&mut self) {
        self.fd = None;
    }

    fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd).ok_or_else(closed_pipe)
    }

    /// Waits until the descriptor is ready for `flags`, at most `timeout`.
    fn wait(&self, flags: PollFlags, timeout: Option<Duration>) -> io::Result<()> {
        let fd = self.fd()?;
        let timeout = match timeout {
            None => PollTimeout::NONE,
            // Round up so a short wait does not become a busy zero-timeout poll.
            Some(t) => PollTimeout::try_from(t.as_millis().max(1).min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX),
        };
        let mut fds = [PollFd::new(fd, flags)];
        match poll(&mut fds, timeout) {
            Ok(0) => Err(io::ErrorKind::TimedOut.into()),
            Ok(_) => Ok(()),
            Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads what is there now; `WouldBlock` if nothing is.
    pub(crate) fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        let read = nix::unistd::read(self.fd()?, buf).map_err(io::Error::from);
        if matches!(read, Ok(0)) && !buf.is_empty() {
            peer_closed(&self.keep);
        }
        read
    }
}

impl Read for SyncPipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.read_now(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // POLLHUP (the writer is gone) also ends the wait; the read then says 0.
                    self.wait(PollFlags::POLLIN, self.timeouts.get().0)?
                }
                other => return other,
            }
        }
    }
}

impl Write for SyncPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::write(self.fd()?, buf) {
                Err(nix::errno::Errno::EAGAIN) => {
                    self.wait(PollFlags::POLLOUT, self.timeouts.get().1)?
                }
                other => return other.map_err(io::Error::from),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for SyncPipe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd
            .as_ref()
            .expect("a closed SyncPipe is not polled")
            .as_fd()
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The command an `spawn:PROGRAM ARGS` address names.
pub(crate) fn command_of(address: &Address) -> Command {
    match address {
        Address::Spawn { program, args } => {
            let mut command = Command::new(program);
            command.args(args);
            command
        }
        other => unreachable!("{other} names no command"),
    }
}

/// A spawned child's pipes: (write to its stdin, read its stdout), its pid, and its reaper.
fn spawn_child(mut command: Command) -> io::Result<(OwnedFd, OwnedFd, u32, Shared)> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn()?;
    let pid = child.id();
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        unreachable!("both streams were asked to be piped");
    };
    Ok((stdin.into(), stdout.into(), pid, ChildReaper::shared(child)))
}

/// Spawns `command` with pipes on its stdin and stdout and returns the connection to it. The
/// child's stderr is inherited. Dropping the connection closes the child's stdin and reaps it.
pub async fn spawn(
    command: Command,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let (to_child, from_child, pid, reaper) = spawn_child_checked(command)?;
    Ok(Connection::new(
        StreamSender::new(
            PipeWrite::new(to_child, Some(reaper.clone()))?,
            config.max_frame_size,
        )
        .into(),
        StreamReceiver::new(
            PipeRead::new(from_child, Some(reaper))?,
            config.max_frame_size,
            config.socket_spin,
        )
        .into(),
        PeerInfo::Local {
            pid: Some(pid as i32),
            uid: Some(nix::unistd::getuid().as_raw()),
        },
    ))
}

fn spawn_child_checked(
    command: Command,
) -> Result<(OwnedFd, OwnedFd, u32, Shared), TransportError> {
    let shown = format!("spawn:{}", command.get_program().to_string_lossy());
    spawn_child(command).map_err(|source| TransportError::Connect {
        address: shown,
        source,
    })
}

/// [`spawn`] for code without a runtime: the halves for the blocking framing, and the peer.
pub(crate) fn spawn_sync(
    command: Command,
) -> Result<(SyncPipe, SyncPipe, PeerInfo), TransportError> {
    let (to_child, from_child, pid, reaper) = spawn_child_checked(command)?;
    Ok((
        SyncPipe::new(to_child, Some(reaper.clone()))?,
        SyncPipe::new(from_child, Some(reaper))?,
        PeerInfo::Local {
            pid: Some(pid as i32),
            uid: Some(nix::unistd::getuid().as_raw()),
        },
    ))
}

/// The server side of `stdio`: this process's stdin and stdout, handed out once.
#[derive(Debug)]
pub(crate) struct StdioAcceptor {
    connection: Mutex<Option<Connection>>,
}

/// Set once a listener has taken this process's stdin and stdout.
static STDIO_TAKEN: AtomicBool = AtomicBool::new(false);

impl StdioAcceptor {
    /// Takes this process's stdin and stdout for one connection. Descriptors 0 and 1 are then
    /// pointed at `/dev/null` and stderr, so a stray `println!` cannot corrupt the stream.
    pub(crate) fn bind(
        address: &Address,
        config: &TransportConfig,
    ) -> Result<StdioAcceptor, TransportError> {
        let bind_error = |source: io::Error| TransportError::Bind {
            address: address.to_string(),
            source,
        };
        if STDIO_TAKEN.swap(true, Ordering::SeqCst) {
            return Err(TransportError::AddressInUse {
                address: address.to_string(),
            });
        }
        let taken = take_stdio()
            .and_then(|(input, output)| {
                Ok((PipeRead::new(input, None)?, PipeWrite::new(output, None)?))
            })
            .map_err(|e| {
                STDIO_TAKEN.store(false, Ordering::SeqCst);
                bind_error(e)
            })?;
        let (receiver, sender) = taken;
        let connection = Connection::new(
            StreamSender::new(sender, config.max_frame_size).into(),
            StreamReceiver::new(receiver, config.max_frame_size, config.socket_spin).into(),
            PeerInfo::Local {
                pid: Some(nix::unistd::getppid().as_raw()),
                uid: Some(nix::unistd::getuid().as_raw()),
            },
        );
        Ok(StdioAcceptor {
            connection: Mutex::new(Some(connection)),
        })
    }

    /// The one connection; [`TransportError::Closed`] after it (the listener is done).
    pub(crate) async fn accept(&self) -> Result<Connection, TransportError> {
        let taken = self.connection.lock().map(|mut c| c.take()).unwrap_or(None);
        taken.ok_or(TransportError::Closed)
    }
}

/// Takes stdin and stdout for the connection and returns private descriptors of them; then
/// descriptor 0 becomes `/dev/null` and descriptor 1 a copy of stderr. Both must be pipes;
/// nothing is changed if they are not.
///
/// The pipes are reopened through `/proc/self/fd`, which gives this process open file
/// descriptions of its own: making them non-blocking then cannot affect another process
/// sharing the inherited ones (a shell pipeline's other members).
fn take_stdio() -> io::Result<(OwnedFd, OwnedFd)> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    for (fd, name) in [(stdin.as_fd(), "stdin"), (stdout.as_fd(), "stdout")] {
        let kind = nix::sys::stat::fstat(fd)?.st_mode & nix::libc::S_IFMT;
        if kind != nix::libc::S_IFIFO {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is not a pipe; `stdio` serves the pipes a `spawn:` client makes"),
            ));
        }
    }
    let reopen = |fd: BorrowedFd<'_>, flags: OFlag| -> io::Result<OwnedFd> {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        match nix::fcntl::open(
            path.as_str(),
            flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(private) => Ok(private),
            // No /proc: share the inherited description after all.
            Err(_) => fd.try_clone_to_owned(),
        }
    };
    let input = reopen(stdin.as_fd(), OFlag::O_RDONLY)?;
    let output = reopen(stdout.as_fd(), OFlag::O_WRONLY)?;
    // Hold the locks so no other thread writes to stdout while it is being redirected.
    let _in = stdin.lock();
    let mut out = stdout.lock();
    out.flush()?;
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd())?;
    nix::unistd::dup2_stdout(io::stderr().as_fd())?;
    Ok((input, output))
}
