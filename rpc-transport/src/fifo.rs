//! `fifo:///abs/dir`: named pipes between unrelated processes.
//!
//! The classic design: the server owns a directory (mode 0700, or 01733 when it admits other
//! users: `access.rs`) holding a well-known request FIFO, `requests`, and a `lock` file it
//! keeps `flock`ed while it lives. A client
//!
//! 1. makes its own pair of FIFOs in the directory, `NAME.up` (client to server) and
//!    `NAME.down` (server to client), and opens `NAME.down` for reading and `NAME.up` for
//!    reading and writing (so the server never reads end-of-file before the client is ready);
//! 2. announces `NAME\n` with a single write to `requests`, shorter than `PIPE_BUF`, so
//!    announcements of many clients at once never interleave;
//! 3. waits for the server's one-byte acknowledgement on `NAME.down` (the server has opened
//!    both FIFOs by then), opens `NAME.up` for writing only, drops its read-write descriptor
//!    and removes both names.
//!
//! From then on the pair is an ordinary duplex byte stream (framed as in `stream.rs`), and the
//! kernel reports either side's death as end-of-file or a broken pipe. The FIFO files are
//! removed as soon as both sides hold them open; whoever sees the connection end removes them
//! too, in case a client died half-way. A server removes its files and the directory when it
//! goes; one that was killed leaves a directory with an unlocked `lock`, which the next server
//! recognises as stale and takes over.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::stat::Mode;
use std::hash::{BuildHasher, RandomState};
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use crate::TransportConfig;
use crate::address::Address;
use crate::blocking::{BlockingConnection, blocking_stream_connection};
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;
use crate::pipe::{Keepalive, PipeRead, PipeWrite, Shared, SyncPipe};
use crate::stream::{StreamReceiver, StreamSender};
use crate::transport::{Acceptor, BoxFuture, Transport};

mod access;
use access::{Access, ClientDir};

/// The well-known FIFO clients announce themselves on.
const REQUESTS: &str = "requests";
/// The file a live server keeps locked.
const LOCK: &str = "lock";
/// The server's answer once it holds both of a client's FIFOs.
const ACK: u8 = b'+';
/// The longest client name accepted (an announcement stays far below `PIPE_BUF`).
const MAX_NAME: usize = 64;
/// How long a connect waits for the server's acknowledgement.
const ACK_WAIT: Duration = Duration::from_secs(10);

fn dir_of(address: &Address) -> Result<PathBuf, TransportError> {
    address.absolute_path()
}

/// The `fifo` transport.
pub(crate) struct Fifo;

impl Transport for Fifo {
    fn scheme(&self) -> &str {
        "fifo"
    }

    fn forms(&self) -> Vec<String> {
        vec!["fifo:///abs/dir".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        dir_of(address).map(drop)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(connect(address, config))
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(async move {
            let acceptor = FifoAcceptor::bind(address, config)?;
            Ok(Box::new(acceptor) as Box<dyn Acceptor>)
        })
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        let (write, read, peer) = connect_blocking(address, timeout)?;
        Ok(blocking_stream_connection(
            write, read, config, peer, "pipe",
        ))
    }
}

fn owner_only() -> Mode {
    Mode::S_IRUSR | Mode::S_IWUSR
}

/// A client's two FIFO names, removed when the last holder goes.
#[derive(Debug)]
struct FifoNames {
    up: PathBuf,
    down: PathBuf,
}

impl FifoNames {
    fn new(dir: &Path, name: &str) -> FifoNames {
        FifoNames {
            up: dir.join(format!("{name}.up")),
            down: dir.join(format!("{name}.down")),
        }
    }

    fn remove(&self) {
        let _ = std::fs::remove_file(&self.up);
        let _ = std::fs::remove_file(&self.down);
    }
}

impl Drop for FifoNames {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Whether `name` is a client name we hand out: letters, digits and dashes.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// A bound `fifo://` listener.
#[derive(Debug)]
struct FifoAcceptor {
    /// Removes our files and the directory; dropped before the lock is released.
    owned: OwnedDir,
    /// The request FIFO's read end and the bytes of an announcement not yet whole.
    requests: Mutex<(PipeRead, BytesMut)>,
    /// A write end of our own, so the request FIFO never reports end-of-file between clients.
    _requests_writer: OwnedFd,
    _lock: Flock<std::fs::File>,
    /// When dead clients' FIFOs were last looked for.
    last_sweep: std::sync::Mutex<Instant>,
    address: Address,
    config: TransportConfig,
}

impl Acceptor for FifoAcceptor {
    fn local_address(&self) -> Address {
        self.address.clone()
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(self.accept_next())
    }
}

impl FifoAcceptor {
    /// Creates (or takes over from a dead server) the directory and its request FIFO.
    /// The directory is shared with other users if `config.socket_mode` grants them access.
    fn bind(address: &Address, config: &TransportConfig) -> Result<FifoAcceptor, TransportError> {
        let dir = &dir_of(address)?;
        let access = Access::from_socket_mode(config.socket_mode);
        let bind_error = |source: io::Error| TransportError::Bind {
            address: address.to_string(),
            source,
        };
        access::prepare_dir(dir).map_err(bind_error)?;
        let lock_file = access::open_lock(dir).map_err(bind_error)?;
        let lock = match Flock::lock(lock_file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(TransportError::AddressInUse {
                    address: address.to_string(),
                });
            }
            Err((_, errno)) => return Err(bind_error(errno.into())),
        };
        // We hold the lock: whatever FIFOs are here belong to a server that is gone. From here
        // on, a failed bind removes what it made.
        let owned = OwnedDir {
            dir: dir.to_owned(),
        };
        // Private while we set it up: nobody else's file can slip in.
        access::close_dir(dir).map_err(bind_error)?;
        let requests = dir.join(REQUESTS);
        match std::fs::remove_file(&requests) {
            Ok(()) => tracing::info!(dir = %dir.display(), "taking over a stale FIFO directory"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_error(e)),
        }
        remove_fifos(dir, |_| true);
        nix::unistd::mkfifo(&requests, owner_only()).map_err(|e| bind_error(e.into()))?;
        let reader = open(
            &requests,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| bind_error(e.into()))?;
        let writer = open(
            &requests,
            OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| bind_error(e.into()))?;
        access.set_requests_mode(&reader).map_err(bind_error)?;
        access.open_dir(dir).map_err(bind_error)?;
        Ok(FifoAcceptor {
            owned,
            requests: Mutex::new((
                PipeRead::new(reader, None).map_err(bind_error)?,
                BytesMut::with_capacity(4096),
            )),
            _requests_writer: writer,
            _lock: lock,
            last_sweep: std::sync::Mutex::new(Instant::now()),
            address: address.clone(),
            config: config.clone(),
        })
    }

    /// Waits for the next client's announcement and connects to its FIFOs. Cancellation safe:
    /// announcements read but not yet served stay buffered.
    async fn accept_next(&self) -> Result<Connection, TransportError> {
        let config = &self.config;
        let mut requests = self.requests.lock().await;
        let (reader, pending) = &mut *requests;
        loop {
            self.sweep_dead_clients();
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line = pending.split_to(end + 1);
                let name = &line[..end];
                if !valid_name(name) {
                    tracing::debug!(?name, "ignoring a malformed FIFO announcement");
                    continue;
                }
                let name = String::from_utf8_lossy(name).into_owned();
                match self.connect_client(&name, config) {
                    Ok(connection) => return Ok(connection),
                    Err(error) => tracing::debug!(%error, name, "dropping a FIFO client"),
                }
            }
            if pending.len() > 4 * MAX_NAME {
                tracing::debug!("discarding an announcement without a line end");
                pending.clear();
            }
            if reader.read_buf(pending).await? == 0 {
                // Cannot happen while we hold a writer; treat it as the listener being gone.
                return Err(TransportError::Closed);
            }
        }
    }

    /// Removes FIFO pairs left by clients that died before announcing them (their names carry
    /// their pid), at most once a second.
    fn sweep_dead_clients(&self) {
        let Ok(mut last) = self.last_sweep.lock() else {
            return;
        };
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = Instant::now();
        remove_fifos(&self.owned.dir, |name| {
            let pid = name
                .strip_prefix('c')
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<i32>().ok());
            pid.is_some_and(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(Errno::ESRCH)
            })
        });
    }

    /// Opens a client's FIFOs (without waiting: the client holds its ends open already) and
    /// acknowledges.
    fn connect_client(
        &self,
        name: &str,
        config: &TransportConfig,
    ) -> Result<Connection, TransportError> {
        let names = Arc::new(FifoNames::new(&self.owned.dir, name));
        // The owner of the client's FIFOs is the peer's uid (checked on the descriptors).
        let (up, owner) = access::open_client_fifo(&names.up, OFlag::O_RDONLY)?;
        // ENXIO here means the client is gone; `names` then removes its leftovers.
        let (down, down_owner) = access::open_client_fifo(&names.down, OFlag::O_WRONLY)?;
        if down_owner != owner {
            return Err(TransportError::Malformed(format!(
                "{name}: its FIFOs belong to uids {owner} and {down_owner}"
            )));
        }
        nix::unistd::write(&down, &[ACK]).map_err(io::Error::from)?;
        let keep: Keepalive = Some(names as Shared);
        Ok(Connection::new(
            FrameSender::new(StreamSender::new(
                PipeWrite::new(down, keep.clone())?,
                config.max_frame_size,
                "pipe",
            )),
            FrameReceiver::new(StreamReceiver::new(
                PipeRead::new(up, keep)?,
                config.max_frame_size,
                config.socket_spin,
            )),
            PeerInfo::Local {
                pid: None,
                uid: Some(owner),
            },
        ))
    }
}

/// The server's files in its directory, removed (with the directory, if that leaves it
/// empty) when the server goes.
#[derive(Debug)]
struct OwnedDir {
    dir: PathBuf,
}

impl Drop for OwnedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join(REQUESTS));
        remove_fifos(&self.dir, |_| true);
        let _ = std::fs::remove_file(self.dir.join(LOCK));
        // Only succeeds if nothing else is in it: a directory we did not fill is left alone.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Removes the client FIFOs (`*.up`, `*.down`) in `dir` whose name (without the suffix)
/// `remove` picks; nothing else.
fn remove_fifos(dir: &Path, remove: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let client = name
            .strip_suffix(".up")
            .or_else(|| name.strip_suffix(".down"));
        let is_fifo = entry.file_type().is_ok_and(|t| t.is_fifo());
        if let Some(client) = client
            && is_fifo
            && remove(client)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A client's side while it connects: its FIFOs made and opened, announced to the server.
struct Announced {
    names: FifoNames,
    /// `NAME.down`, read end.
    down: OwnedFd,
    /// `NAME.up`, opened read-write until the server has it open.
    up_keep: OwnedFd,
}

fn connect_error(address: &Address, source: io::Error) -> TransportError {
    TransportError::Connect {
        address: address.to_string(),
        source,
    }
}

/// Steps 1 and 2: make, open and announce this client's FIFOs. `Ok(None)` if the request FIFO
/// is full for now (try again shortly).
fn announce(address: &Address) -> Result<Option<Announced>, TransportError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = &dir_of(address)?;
    let client_dir = ClientDir::check(dir).map_err(|e| {
        // A missing directory is simply no server.
        let e = if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("no server listens at {address}"),
            )
        } else {
            e
        };
        connect_error(address, e)
    })?;
    let requests = open(
        &dir.join(REQUESTS),
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| {
        let reason = match errno {
            Errno::ENXIO | Errno::ENOENT => io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("no server listens at {address}"),
            ),
            other => other.into(),
        };
        connect_error(address, reason)
    })?;
    let names = loop {
        // The pid lets the server sweep a dead client's FIFOs; the random part keeps others
        // from guessing the names in a shared directory.
        let (pid, number) = (std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let random = RandomState::new().hash_one((pid, number, Instant::now()));
        let name = format!("c{pid}-{number}-{random:016x}");
        let names = FifoNames::new(dir, &name);
        match nix::unistd::mkfifo(&names.up, owner_only()) {
            Ok(()) => {}
            // Left by an earlier process with our pid: take the next number.
            Err(Errno::EEXIST) => {
                std::mem::forget(names);
                continue;
            }
            Err(e) => return Err(connect_error(address, e.into())),
        }
        if let Err(e) = nix::unistd::mkfifo(&names.down, owner_only()) {
            return Err(connect_error(address, e.into()));
        }
        break (names, name);
    };
    let (names, name) = names;
    let open_end = |path: &Path, flags: OFlag| {
        open(
            path,
            flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| connect_error(address, e.into()))
    };
    let down = open_end(&names.down, OFlag::O_RDONLY)?;
    let up_keep = open_end(&names.up, OFlag::O_RDWR)?;
    client_dir
        .set_modes(&up_keep, &down)
        .map_err(|e| connect_error(address, e))?;
    let line = format!("{name}\n");
    match nix::unistd::write(&requests, line.as_bytes()) {
        Ok(n) if n == line.len() => Ok(Some(Announced {
            names,
            down,
            up_keep,
        })),
        Ok(_) => Err(connect_error(
            address,
            io::Error::other("the announcement was cut short"),
        )),
        Err(Errno::EAGAIN) => Ok(None),
        Err(Errno::EPIPE) => Err(connect_error(
            address,
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("no server listens at {address}"),
            ),
        )),
        Err(e) => Err(connect_error(address, e.into())),
    }
}

/// Step 3, after the acknowledgement: the write end of `NAME.up`; the names are removed.
///
/// The FIFO is reopened through our own descriptor (`/proc/self/fd`), not its name: a server
/// that refuses us at once may have removed the name already, and we must still read why.
fn finish(
    address: &Address,
    names: &FifoNames,
    up_keep: OwnedFd,
) -> Result<OwnedFd, TransportError> {
    let flags = OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let own = format!("/proc/self/fd/{}", up_keep.as_raw_fd());
    open(own.as_str(), flags, Mode::empty())
        .or_else(|_| open(&names.up, flags, Mode::empty()))
        .map_err(|e| connect_error(address, e.into()))
}

fn refused_during_connect(address: &Address) -> TransportError {
    connect_error(
        address,
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the server closed the FIFOs before acknowledging",
        ),
    )
}

fn ack_timeout(address: &Address) -> TransportError {
    connect_error(
        address,
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the server did not acknowledge the FIFOs",
        ),
    )
}

/// Checks the byte the server acknowledged with.
fn check_ack(address: &Address, read: io::Result<usize>, byte: u8) -> Result<(), TransportError> {
    match read {
        Ok(1) if byte == ACK => Ok(()),
        Ok(0) => Err(refused_during_connect(address)),
        Ok(_) => Err(TransportError::Malformed(format!(
            "unexpected FIFO acknowledgement {byte:#04x}"
        ))),
        Err(e) => Err(connect_error(address, e)),
    }
}

async fn connect(
    address: &Address,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let until = Instant::now() + ACK_WAIT;
    let announced = loop {
        if let Some(announced) = announce(address)? {
            break announced;
        }
        if Instant::now() >= until {
            return Err(ack_timeout(address));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let Announced {
        names,
        down,
        up_keep,
    } = announced;
    let mut reader = PipeRead::new(down, None)?;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(ACK_WAIT, reader.read(&mut byte))
        .await
        .map_err(|_| ack_timeout(address))?;
    check_ack(address, read, byte[0])?;
    let up = finish(address, &names, up_keep)?;
    Ok(Connection::new(
        FrameSender::new(StreamSender::new(
            PipeWrite::new(up, None)?,
            config.max_frame_size,
            "pipe",
        )),
        FrameReceiver::new(StreamReceiver::new(
            reader,
            config.max_frame_size,
            config.socket_spin,
        )),
        PeerInfo::Local {
            pid: None,
            uid: Some(nix::unistd::geteuid().as_raw()),
        },
    ))
}

/// Connects without a runtime: (write end, read end, peer) for the blocking framing.
fn connect_blocking(
    address: &Address,
    timeout: Duration,
) -> Result<(SyncPipe, SyncPipe, PeerInfo), TransportError> {
    let until = Instant::now() + timeout.min(ACK_WAIT);
    let announced = loop {
        if let Some(announced) = announce(address)? {
            break announced;
        }
        if Instant::now() >= until {
            return Err(ack_timeout(address));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let mut byte = [0u8; 1];
    let read = loop {
        let left = until.saturating_duration_since(Instant::now());
        let millis = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut fds = [PollFd::new(announced.down.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Err(ack_timeout(address)),
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(connect_error(address, e.into())),
        }
        match nix::unistd::read(&announced.down, &mut byte) {
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            other => break other.map_err(io::Error::from),
        }
    };
    check_ack(address, read, byte[0])?;
    let Announced {
        names,
        down,
        up_keep,
    } = announced;
    let up = finish(address, &names, up_keep)?;
    Ok((
        SyncPipe::new(up, None)?,
        SyncPipe::new(down, None)?,
        PeerInfo::Local {
            pid: None,
            uid: Some(nix::unistd::geteuid().as_raw()),
        },
    ))
}
