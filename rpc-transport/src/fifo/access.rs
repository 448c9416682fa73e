//! Who may use a FIFO server's directory, and the checks that keep users apart in it.
//!
//! - **Private** (the default: `TransportConfig::socket_mode` grants group and others
//!   nothing): the directory is 0700, every file in it 0600, and only the server's own user
//!   can connect.
//! - **Shared** (`socket_mode` grants group or others something, as `Server::allow_uids` and
//!   `allow_gids` set it): the directory is 01733 (01730 for the group only). Others may
//!   create their FIFO pair in it and open `requests` (0622) by name to announce it, but may
//!   not list the directory, and the sticky bit stops them removing or renaming a file that is
//!   not theirs. A client of another user makes its `NAME.up` readable and `NAME.down`
//!   writable by others, under a name with a random part nobody can list.
//!
//! The server opens a client's FIFOs without following symbolic links and checks, on the
//! descriptors, that both are FIFOs of one owner with a single link (no hard link to someone
//! else's FIFO); that owner is the peer's uid, which rpc-core's access check then judges.
//!
//! A directory is set up private and widened only once the server's files are in place, so
//! nobody else can slip a file of theirs in while the server makes them.

use std::fs::{File, Permissions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat};

use super::{LOCK, REQUESTS};

/// Group and others' bits of a shared directory: write and search, never read (list).
const SHARED_DIR_BITS: u32 = 0o033;

/// How a server's directory is open to other users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Access {
    /// The directory's group and other bits: 0 when private, else a non-empty part of 0o033.
    shared: u32,
}

impl Access {
    /// The access a server with this `socket_mode` gives: its group and other bits decide
    /// whether group members and others may connect.
    pub(super) fn from_socket_mode(socket_mode: u32) -> Access {
        let group = if socket_mode & 0o070 != 0 { 0o030 } else { 0 };
        let others = if socket_mode & 0o007 != 0 { 0o003 } else { 0 };
        Access {
            shared: group | others,
        }
    }

    fn dir_mode(self) -> u32 {
        if self.shared == 0 {
            0o700
        } else {
            0o1700 | self.shared
        }
    }

    /// `requests`: the server reads it; whoever may connect writes it.
    fn requests_mode(self) -> u32 {
        0o600 | (self.shared & 0o022)
    }

    /// Gives `requests` (just made by us, open as `fd`) its mode, whatever the umask.
    pub(super) fn set_requests_mode(self, fd: &OwnedFd) -> io::Result<()> {
        fchmod(fd.as_fd(), mode(self.requests_mode())).map_err(io::Error::from)
    }

    /// Opens the directory to whoever may connect, once the server's files are in place.
    pub(super) fn open_dir(self, dir: &Path) -> io::Result<()> {
        std::fs::set_permissions(dir, Permissions::from_mode(self.dir_mode()))
    }
}

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits as nix::libc::mode_t)
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether `mode` (with its file type bits) is one a server gives its directory.
fn server_dir_mode(mode: u32) -> bool {
    let mode = mode & 0o7777;
    mode == 0o700 || (mode & !SHARED_DIR_BITS == 0o1700 && mode & SHARED_DIR_BITS != 0)
}

/// Creates `dir` with mode 0700, or checks that an existing one is ours: a directory of this
/// user with a server's mode, holding nothing of ours but a FIFO server's files (so pointing
/// `fifo://` at a directory of documents cannot delete any of them). Files of other users in
/// a directory a server once shared are left alone.
pub(super) fn prepare_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != euid() || !server_dir_mode(meta.mode()) {
        return Err(not_a_server_dir(dir, &meta));
    }
    let shared = meta.mode() & 0o1000 != 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let meta = entry.metadata()?;
        let kind = meta.file_type();
        let ours = match name.as_ref() {
            LOCK => kind.is_file(),
            REQUESTS => kind.is_fifo(),
            other => (other.ends_with(".up") || other.ends_with(".down")) && kind.is_fifo(),
        };
        // Another user's file can only be there if a server shared the directory.
        let left_by_others = shared && meta.uid() != euid();
        if !(ours || left_by_others) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} holds {name}, which is not a FIFO server's; choose an empty or new directory",
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Makes `dir` private while the server sets it up (it holds the lock: no live server uses
/// it).
pub(super) fn close_dir(dir: &Path) -> io::Result<()> {
    std::fs::set_permissions(dir, Permissions::from_mode(0o700))
}

fn not_a_server_dir(dir: &Path, meta: &std::fs::Metadata) -> io::Error {
    if !meta.is_dir() {
        return io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        );
    }
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} must be a directory of this user with mode 0700 or 01733 (it has uid {}, mode {:o})",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ),
    )
}

/// Opens (creating it if need be) the server's lock file. A `lock` that is not a regular file
/// of this user was left by someone else in a shared directory (a live server's lock is
/// always its own user's): it is removed and made afresh.
pub(super) fn open_lock(dir: &Path) -> io::Result<File> {
    let path = dir.join(LOCK);
    if let Ok(meta) = std::fs::symlink_metadata(&path)
        && (!meta.is_file() || meta.uid() != euid())
    {
        std::fs::remove_file(&path)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} was replaced by another user's file", path.display()),
        ));
    }
    Ok(file)
}

/// How a client may use the directory of the server it connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientDir {
    /// The server runs as this user: our FIFOs stay 0600.
    SameUser,
    /// The server runs as another user and shares its directory: our FIFOs are opened to
    /// others (`NAME.up` readable, `NAME.down` writable) so that user can open them.
    OtherUser,
}

impl ClientDir {
    /// Checks the directory a client is about to put its FIFOs in: a server's, private to this
    /// user or shared. A directory private to another user is a server that admits nobody
    /// else, which the error says.
    pub(super) fn check(dir: &Path) -> io::Result<ClientDir> {
        let meta = std::fs::symlink_metadata(dir)?;
        if !meta.is_dir() || !server_dir_mode(meta.mode()) {
            return Err(not_a_server_dir(dir, &meta));
        }
        let shared = meta.mode() & 0o1000 != 0;
        match (meta.uid() == euid(), shared) {
            (true, _) => Ok(ClientDir::SameUser),
            (false, true) => Ok(ClientDir::OtherUser),
            (false, false) => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the FIFO server at {} runs as uid {} and admits no other user (uid {} here); \
                     it must allow them with Server::allow_uids or allow_gids",
                    dir.display(),
                    meta.uid(),
                    euid()
                ),
            )),
        }
    }

    /// Gives our just-made FIFOs (open as `up` and `down`) the modes the server needs.
    pub(super) fn set_modes(self, up: &OwnedFd, down: &OwnedFd) -> io::Result<()> {
        let (up_mode, down_mode) = match self {
            ClientDir::SameUser => (0o600, 0o600),
            ClientDir::OtherUser => (0o644, 0o622),
        };
        fchmod(up.as_fd(), mode(up_mode))?;
        fchmod(down.as_fd(), mode(down_mode))?;
        Ok(())
    }
}

/// Opens a client's FIFO in the server's directory with `flags` (plus non-blocking,
/// close-on-exec and no symbolic links), checking on the descriptor that it is a FIFO with a
/// single link; returns it and its owner.
pub(super) fn open_client_fifo(path: &Path, flags: OFlag) -> io::Result<(OwnedFd, u32)> {
    let fd = open(
        path,
        flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )?;
    let stat = fstat(&fd)?;
    let is_fifo = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFIFO;
    if !is_fifo || stat.st_nlink != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a client's FIFO", path.display()),
        ));
    }
    Ok((fd, stat.st_uid))
}
