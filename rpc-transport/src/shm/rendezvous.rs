//! Meeting over a Unix socket: the server hands each new client its segment and eventfds with
//! `SCM_RIGHTS`, then both keep the socket open as the connection's liveness signal.
//!
//! The handshake message, server to client: `[tag u32 = 1][reserved u32][offset u64][len u64]`
//! with three descriptors: the segment (memfd, or the mmap file), the eventfd of the
//! client-to-server ring and that of the server-to-client ring.
//!
//! For `sysv-shm://` the segment is a System V id, not a descriptor:
//! `[tag u32 = 2][reserved u32][shmid u64][len u64]` with the two eventfds; or, to a client of
//! another user, the refusal `[tag u32 = 3][reserved u32][server uid u64][client uid u64]`,
//! or, when a system limit stopped the server, `[tag u32 = 4][reserved u32][limit u64][0 u64]`
//! (the limit by number, see `sysv::LIMITS`), both without descriptors.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::MsgFlags;
use tokio::net::UnixStream;

use super::endpoint::{ShmReceiver, ShmSender};
use super::file_slots::SlotFile;
use super::link::{Link, LinkOwner, Side};
use super::region::{recv_fds, send_fds};
use super::ring::{Consumer, Producer};
use super::segment::Segment;
use super::sysv;
use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;
use crate::unix::{SocketName, UnixAcceptor};

const HANDSHAKE_TAG: u32 = 1;
const SYSV_TAG: u32 = 2;
const REFUSED_TAG: u32 = 3;
const LIMIT_TAG: u32 = 4;
const HANDSHAKE_LEN: usize = 24;

/// The directory of `shm://NAME` sockets: `$XDG_RUNTIME_DIR/rpc-shm`, or `/tmp/rpc-shm-UID`;
/// created with mode 0700, and refused if another user owns it or others can enter it.
pub fn runtime_dir() -> io::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base) if Path::new(&base).is_dir() => Path::new(&base).join("rpc-shm"),
        _ => std::env::temp_dir().join(format!("rpc-shm-{uid}")),
    };
    private_dir(dir)
}

/// `dir`, created with mode 0700 if missing, and refused if another user owns it or others can
/// enter it.
fn private_dir(dir: PathBuf) -> io::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} must be a directory of user {uid} with mode 0700",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// The rendezvous socket path of a shared-memory address.
/// `shm://NAME` (`NAME.sock` in [`runtime_dir`]), `sysv-shm://NAME` (`sysv/NAME.sock` there: a
/// directory of its own, since any suffix on NAME could be part of a `shm://` name, a '/' not),
/// `shm:///abs/rendezvous.sock` or `sysv-shm:///abs/rendezvous.sock`, or `mmap:///abs/file`
/// (the file's path with `.sock` added).
pub fn socket_path(address: &Address) -> Result<PathBuf, TransportError> {
    if address.scheme() == "mmap" {
        let mut path = address.absolute_path()?.into_os_string();
        path.push(".sock");
        return Ok(path.into());
    }
    match address.target() {
        Some(path) if path.starts_with('/') => address.absolute_path(),
        _ if address.scheme() == sysv::SCHEME => {
            let dir = private_dir(runtime_dir()?.join("sysv"))?;
            Ok(dir.join(format!("{}.sock", address.name()?)))
        }
        _ => Ok(runtime_dir()?.join(format!("{}.sock", address.name()?))),
    }
}

fn new_eventfd() -> io::Result<OwnedFd> {
    Ok(EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?.into())
}

fn halves(link: Arc<Link>, config: &TransportConfig) -> (ShmSender, ShmReceiver) {
    let (to_server, to_client) = (link.segment.to_server(), link.segment.to_client());
    let (outgoing, incoming) = match link.side {
        Side::Client => (to_server, to_client),
        Side::Server => (to_client, to_server),
    };
    let owner = Arc::new(LinkOwner(link));
    (
        ShmSender::new(
            Producer::new(outgoing),
            owner.clone(),
            config.max_frame_size,
            config.shm_spin,
        ),
        ShmReceiver::new(
            Consumer::new(incoming),
            owner,
            config.max_frame_size,
            config.shm_spin,
        ),
    )
}

fn peer_of(stream: &UnixStream) -> io::Result<PeerInfo> {
    let cred = stream.peer_cred()?;
    Ok(PeerInfo::Unix {
        pid: cred.pid(),
        uid: cred.uid(),
        gid: cred.gid(),
    })
}

/// Where a listener takes segments from.
enum SegmentSource {
    /// A fresh sealed memfd per connection.
    Memfd,
    /// A slot of a regular file per connection.
    File(SlotFile),
    /// A System V segment per connection, for clients of our own user.
    Sysv,
}

/// A shared-memory listener: a Unix rendezvous socket (mode 0600) and a segment source.
pub(crate) struct ShmAcceptor {
    socket: UnixAcceptor,
    source: SegmentSource,
    pub(crate) address: Address,
    config: TransportConfig,
}

impl std::fmt::Debug for ShmAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmAcceptor").finish_non_exhaustive()
    }
}

impl ShmAcceptor {
    pub(crate) fn bind(
        address: &Address,
        config: &TransportConfig,
    ) -> Result<Self, TransportError> {
        check_capacity(config)?;
        let path = socket_path(address)?;
        // The socket first: a second server on the same address fails here, before it could
        // touch a file a live server uses.
        let socket = UnixAcceptor::bind(address, &SocketName::Path(path), config.socket_mode)?;
        let source = if address.scheme() == "mmap" {
            let file = address.absolute_path()?;
            SegmentSource::File(SlotFile::open(&file, config.shm_ring_capacity)?)
        } else if address.scheme() == sysv::SCHEME {
            sysv::sweep();
            SegmentSource::Sysv
        } else {
            SegmentSource::Memfd
        };
        Ok(ShmAcceptor {
            socket,
            source,
            address: address.clone(),
            config: config.clone(),
        })
    }

    /// Accepts a client and hands it a segment.
    pub(crate) async fn accept(&self) -> Result<Connection, TransportError> {
        let config = &self.config;
        loop {
            let stream = self.socket.accept_stream().await?;
            // A client that fails its hand-over (gone already, say) costs only itself.
            match self.hand_over(stream, config) {
                Ok(connection) => return Ok(connection),
                Err(error @ TransportError::LimitReached { .. }) => {
                    tracing::warn!(%error, "dropping a shm client: no segment for it")
                }
                Err(error) => {
                    tracing::debug!(%error, "dropping a shm client that failed hand-over")
                }
            }
        }
    }

    /// Creates the client's segment and hands it over the rendezvous socket.
    fn hand_over(
        &self,
        stream: UnixStream,
        config: &TransportConfig,
    ) -> Result<Connection, TransportError> {
        let peer = peer_of(&stream)?;
        let socket = stream.into_std()?;
        socket.set_nonblocking(false)?;
        let (segment, fd, offset, lease) = match &self.source {
            SegmentSource::Memfd => {
                let (segment, fd) = Segment::create_memfd(config.shm_ring_capacity)?;
                (segment, Some(fd), 0, None)
            }
            SegmentSource::File(file) => {
                let (segment, fd, offset, lease) = file.lease()?;
                (segment, Some(fd), offset, Some(lease))
            }
            SegmentSource::Sysv => {
                let client_uid = peer_uid(&peer);
                if !sysv::same_user(client_uid) {
                    let server_uid = nix::unistd::geteuid().as_raw();
                    let refusal = handshake(REFUSED_TAG, server_uid.into(), client_uid.into());
                    let _ = send_fds(socket.as_fd(), &refusal, &[]);
                    return Err(sysv::refusal(server_uid.into(), client_uid.into()).into());
                }
                let (segment, id) =
                    sysv::create_segment(config.shm_ring_capacity).inspect_err(|error| {
                        if let Some(number) = sysv::limit_number(error) {
                            let _ = send_fds(socket.as_fd(), &handshake(LIMIT_TAG, number, 0), &[]);
                        }
                    })?;
                (segment, None, id as u64, None)
            }
        };
        let (to_server_event, to_client_event) = (new_eventfd()?, new_eventfd()?);
        let tag = if fd.is_some() {
            HANDSHAKE_TAG
        } else {
            SYSV_TAG
        };
        let message = handshake(tag, offset, segment.region.len() as u64);
        let mut fds: Vec<_> = fd.iter().map(|fd| fd.as_fd()).collect();
        fds.extend([to_server_event.as_fd(), to_client_event.as_fd()]);
        send_fds(socket.as_fd(), &message, &fds)?;
        drop(fds);
        drop(fd);
        let link = Link::start(
            socket,
            segment,
            Side::Server,
            to_server_event,
            to_client_event,
            lease,
        )?;
        let (sender, receiver) = halves(link, config);
        Ok(Connection::new(
            FrameSender::new(sender),
            FrameReceiver::new(receiver),
            peer,
        ))
    }
}

/// A handshake message: `tag` and two words.
fn handshake(tag: u32, first: u64, second: u64) -> [u8; HANDSHAKE_LEN] {
    let mut message = [0u8; HANDSHAKE_LEN];
    message[..4].copy_from_slice(&tag.to_le_bytes());
    message[8..16].copy_from_slice(&first.to_le_bytes());
    message[16..].copy_from_slice(&second.to_le_bytes());
    message
}

/// The uid in a rendezvous socket's peer credentials.
fn peer_uid(peer: &PeerInfo) -> u32 {
    match peer {
        PeerInfo::Unix { uid, .. } => *uid,
        _ => u32::MAX,
    }
}

fn check_capacity(config: &TransportConfig) -> Result<(), TransportError> {
    let capacity = config.shm_ring_capacity;
    if !capacity.is_power_of_two()
        || !(super::segment::MIN_RING..=super::segment::MAX_RING).contains(&capacity)
    {
        return Err(TransportError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("shm ring capacity {capacity} must be a power of two from 4 KiB to 1 GiB"),
        )));
    }
    Ok(())
}

/// The rendezvous socket to connect to for `address`, and how to report a failure to.
#[allow(clippy::type_complexity)]
fn rendezvous(
    address: &Address,
) -> Result<(PathBuf, impl Fn(io::Error) -> TransportError + '_), TransportError> {
    let connect_error = move |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    let path = socket_path(address).map_err(|e| match e {
        TransportError::Io(source) => connect_error(source),
        other => other,
    })?;
    Ok((path, connect_error))
}

/// Connects to a shared-memory server: receives the segment and maps it.
pub(crate) async fn connect(
    address: &Address,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let (path, _) = rendezvous(address)?;
    let stream = crate::unix::connect_stream(address, &SocketName::Path(path)).await?;
    let peer = peer_of(&stream)?;
    // Wait (bounded by the caller's connect timeout) for the server's handshake.
    stream.readable().await?;
    let socket = stream.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let config = config.clone();
    let address = address.clone();
    let server_uid = peer_uid(&peer);
    let (sender, receiver) =
        tokio::task::spawn_blocking(move || finish_connect(socket, &address, &config, server_uid))
            .await
            .map_err(|e| TransportError::Io(io::Error::other(e)))??;
    Ok(Connection::new(
        FrameSender::new(sender),
        FrameReceiver::new(receiver),
        peer,
    ))
}

/// Connects without a runtime, waiting at most `timeout` for the server's handshake.
pub(crate) fn connect_blocking(
    address: &Address,
    config: &TransportConfig,
    timeout: std::time::Duration,
) -> Result<(ShmSender, ShmReceiver, PeerInfo), TransportError> {
    let (path, _) = rendezvous(address)?;
    let give_up = std::time::Instant::now().checked_add(timeout);
    let socket = crate::unix::connect_blocking_stream(address, &SocketName::Path(path), give_up)?;
    let peer =
        match nix::sys::socket::getsockopt(&socket, nix::sys::socket::sockopt::PeerCredentials) {
            Ok(cred) => PeerInfo::Unix {
                pid: Some(cred.pid()),
                uid: cred.uid(),
                gid: cred.gid(),
            },
            Err(e) => return Err(TransportError::Io(e.into())),
        };
    // What is left of the timeout bounds the wait for the server's handshake.
    let left = give_up.map_or(timeout, |at| {
        at.saturating_duration_since(std::time::Instant::now())
    });
    socket.set_read_timeout(Some(left.max(std::time::Duration::from_millis(1))))?;
    let (sender, receiver) = finish_connect(socket, address, config, peer_uid(&peer))?;
    Ok((sender, receiver, peer))
}

fn finish_connect(
    socket: std::os::unix::net::UnixStream,
    address: &Address,
    config: &TransportConfig,
    server_uid: u32,
) -> Result<(ShmSender, ShmReceiver), TransportError> {
    let refused = |source| TransportError::Connect {
        address: address.to_string(),
        source,
    };
    let sysv = address.scheme() == sysv::SCHEME;
    if sysv {
        sysv::require_trusted_server(server_uid).map_err(refused)?;
    }
    let mut message = [0u8; HANDSHAKE_LEN];
    let (read, fds) = recv_fds(socket.as_fd(), &mut message, MsgFlags::empty()).map_err(|e| {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            TransportError::Malformed(format!(
                "{address} did not send the shared-memory handshake in time"
            ))
        } else {
            TransportError::Io(e)
        }
    })?;
    socket.set_read_timeout(None)?;
    let tag = u32::from_le_bytes(message[..4].try_into().expect("4 bytes"));
    let offset = u64::from_le_bytes(message[8..16].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(message[16..].try_into().expect("8 bytes"));
    let malformed = || {
        TransportError::Malformed(format!(
            "{address} did not answer with a shared-memory handshake"
        ))
    };
    if read != HANDSHAKE_LEN {
        return Err(malformed());
    }
    let (segment, [to_server_event, to_client_event]) = match (tag, fds.len()) {
        (REFUSED_TAG, 0) if sysv => return Err(refused(sysv::refusal(offset, len))),
        (LIMIT_TAG, 0) if sysv => return Err(sysv::server_limit(offset).ok_or_else(malformed)?),
        (SYSV_TAG, 2) if sysv => {
            let events: [OwnedFd; 2] = fds.try_into().map_err(|_| malformed())?;
            let id = i32::try_from(offset).map_err(|_| malformed())?;
            let segment = sysv::open_segment(id, len as usize, server_uid).map_err(refused)?;
            (segment, events)
        }
        (HANDSHAKE_TAG, 3) if !sysv => {
            let [segment_fd, to_server, to_client]: [OwnedFd; 3] =
                fds.try_into().map_err(|_| malformed())?;
            let sealed = address.scheme() != "mmap";
            let segment = Segment::map(segment_fd.as_fd(), offset, len as usize, sealed)?;
            (segment, [to_server, to_client])
        }
        _ => return Err(malformed()),
    };
    let link = Link::start(
        socket,
        segment,
        Side::Client,
        to_client_event,
        to_server_event,
        None,
    )?;
    Ok(halves(link, config))
}
