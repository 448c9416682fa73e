//! `sysv-shm://NAME` (and `sysv-shm:///abs/rendezvous.sock`): the shared-memory rings of
//! `shm://` in a System V segment per connection instead of a memfd.
//!
//! Everything but the segment's source is `shm://`'s: the rendezvous socket (`sysv/NAME.sock`
//! in [`runtime_dir`](super::runtime_dir)) stays open as the liveness signal, the eventfds
//! travel over it with `SCM_RIGHTS`, and the rings, wake-ups and large messages work unchanged.
//!
//! # Lifecycle: nothing left in `ipcs -m`
//!
//! For each client the server
//! 1. creates the segment: `shmget(KEY, size, IPC_CREAT | IPC_EXCL | 0600)`, with `KEY` a
//!    fresh key of ours (`0x5253_xxxx`, see below) rather than `IPC_PRIVATE`;
//! 2. attaches it (`shmat`);
//! 3. marks it `IPC_RMID` at once. Linux keeps a marked segment while anything is attached
//!    (the server is), resets its key to 0 (`ipcs -m`: key `0x00000000`, status `dest`) and
//!    still lets a process allowed to attach it do so by id;
//! 4. writes the segment header and sends the id (not a descriptor) to the client, which
//!    attaches it.
//!
//! Both sides detach (`shmdt`) when their half of the connection is dropped, or when the
//! process ends whatever way; the kernel destroys the segment with its last detach. So after
//! step 3 a `kill -9` of either side, at any moment, leaves nothing.
//!
//! Before step 3 (between `shmget` and `IPC_RMID`: two system calls, a few microseconds per
//! connection) a `kill -9` of the server leaves an unattached segment that nobody will remove:
//! the one window no process can close, since only the creator knows the segment then (the
//! kernel would do it only with `kernel.shm_rmid_forced = 1`). That is why the segment gets a
//! key of ours: every `sysv-shm` listener, when it binds, removes segments of its own uid whose
//! key is ours, that nothing is attached to and whose creator process is gone ([`sweep`]). So
//! such a leftover lives until the next `sysv-shm` server of the same user starts. A key can
//! fall in our range by chance (`ftok` keys do), so the sweep also asks for our mode (0600)
//! and the exact size of a segment of ours before it removes anything.
//!
//! # Access: the same user
//!
//! The segment is mode 0600, owned by the server's uid: the kernel lets only that user (and
//! root, with `CAP_IPC_OWNER`) attach it. The transport says so before anyone tries:
//! - the server serves clients whose uid (`SO_PEERCRED`) is its own, or root; anyone else gets
//!   a refusal naming both uids ([`TransportError::Connect`] of kind `PermissionDenied`);
//! - the client accepts a server of its own uid or root, and before it uses a segment checks,
//!   with `IPC_STAT` on the segment it attached, that its owner and creator are the server's
//!   uid, its mode 0600, that it is marked for removal, and that its size is the one announced.
//!   Then the segment header is validated as for `shm://`.
//!
//! # Large messages
//!
//! Messages too big for the ring travel in bulk regions, which stay sealed memfds handed over
//! the rendezvous socket as for `shm://` (`bulk.rs`): they are made on demand, freed with the
//! last descriptor and mapping, never visible to `ipcs`, and cost no System V id. Only the
//! per-connection rings use a System V segment.
//!
//! # System limits
//!
//! Each connection holds one segment: `kernel.shmmni` (segments in the system, 4096 by
//! default) bounds the connections of all `sysv-shm` servers together, and `kernel.shmall`
//! (pages) their memory. Reaching either, or a ring too big for `kernel.shmmax`, is
//! [`TransportError::LimitReached`] naming the sysctl and its value.

mod ipc;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) use ipc::SysvAttachment;

use super::region::Region;
use super::segment::{Segment, segment_len};
use crate::error::TransportError;

/// The scheme.
pub(crate) const SCHEME: &str = "sysv-shm";

/// The high 16 bits of every key this transport creates segments with ("RS").
const KEY_TAG: u32 = 0x5253;

/// Attempts at a free key before giving up.
const KEY_ATTEMPTS: usize = 64;

/// Our effective uid.
fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether a peer of uid `uid` may share our segments: our own user, or root (who may attach
/// any segment anyway).
pub(crate) fn same_user(uid: u32) -> bool {
    uid == own_uid() || uid == 0
}

/// The refusal a client reads when the server would not serve its uid.
pub(crate) fn refusal(server_uid: u64, client_uid: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the server (uid {server_uid}) shares System V segments only with its own user; \
             this client runs as uid {client_uid}"
        ),
    )
}

/// Checks, before reading its handshake, that the server runs as our uid or as root.
pub(crate) fn require_trusted_server(server_uid: u32) -> io::Result<()> {
    if same_user(server_uid) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the server runs as uid {server_uid}, neither our uid {} nor root; refusing it",
            own_uid()
        ),
    ))
}

/// A key of ours not tried yet by this process: the tag, and 16 bits that differ from call to
/// call and from process to process (`IPC_EXCL` catches the rare clash).
fn next_key() -> i32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = (std::process::id() ^ nanos.rotate_left(7))
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(count.wrapping_mul(0x85EB_CA6B));
    ((KEY_TAG << 16) | (mixed >> 16)) as i32
}

/// Whether `key` is one of ours.
fn is_our_key(key: i32) -> bool {
    (key as u32) >> 16 == KEY_TAG
}

/// Creates, attaches and marks for removal a segment with rings of `capacity` bytes, writes
/// its header, and returns it with its id for the client.
pub(crate) fn create_segment(capacity: usize) -> Result<(Segment, i32), TransportError> {
    let len = segment_len(capacity);
    let mut attempts = 0;
    let id = loop {
        match ipc::get(next_key(), len, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) {
            Ok(id) => break id,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && attempts < KEY_ATTEMPTS => {
                attempts += 1;
            }
            Err(e) => return Err(limit_error(e, len)),
        }
    };
    // A kill -9 from here to `mark_removed` leaves the segment for the next `sweep`.
    let attached = match SysvAttachment::attach(id) {
        Ok(attached) => attached,
        Err(e) => {
            let _ = ipc::mark_removed(id);
            return Err(e.into());
        }
    };
    // From here on the segment goes with its last attachment, whatever way its users end.
    ipc::mark_removed(id)?;
    let segment = Segment {
        region: std::sync::Arc::new(Region::from_sysv(attached)),
        capacity,
    };
    segment.initialise();
    Ok((segment, id))
}

/// Attaches the segment `id` a server of uid `server_uid` announced with `len` bytes, checks
/// it (see the module docs) and opens it.
pub(crate) fn open_segment(id: i32, len: usize, server_uid: u32) -> io::Result<Segment> {
    let attached = SysvAttachment::attach(id)?;
    let stat = *attached.stat();
    let problem = if stat.uid != server_uid || stat.cuid != server_uid {
        Some(format!(
            "is owned by uid {} (created by uid {}), not by the server's uid {server_uid}",
            stat.uid, stat.cuid
        ))
    } else if stat.mode & 0o777 != 0o600 {
        Some(format!("has mode {:o}, not 600", stat.mode & 0o777))
    } else if stat.mode & ipc::SHM_DEST == 0 {
        Some("is not marked for removal (IPC_RMID)".to_owned())
    } else if stat.size != len {
        Some(format!("has {} bytes, not the {len} announced", stat.size))
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("System V segment {id} {problem}; refusing it"),
        ));
    }
    Segment::open(Region::from_sysv(attached))
}

/// Reads `/proc/sys/kernel/NAME`.
fn sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The segments of our IPC namespace, as `/proc/sysvipc/shm` lists them: `(key, id, size,
/// creator pid, attachments, owner uid)` each.
fn listed_segments() -> Vec<(i32, i32, u64, i32, u64, u32)> {
    let Ok(text) = std::fs::read_to_string("/proc/sysvipc/shm") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
                f.get(4)?.parse().ok()?,
                f.get(6)?.parse().ok()?,
                f.get(7)?.parse().ok()?,
            ))
        })
        .collect()
}

/// The error for a failed `shmget` of `len` bytes: the system limit it hit, by name and value,
/// where it was one.
fn limit_error(error: io::Error, len: usize) -> TransportError {
    let shown = |value: Option<u64>| value.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
    match error.raw_os_error() {
        Some(libc::ENOSPC) => {
            let count = listed_segments().len() as u64;
            let shmmni = sysctl("shmmni");
            if shmmni.is_some_and(|max| count >= max) {
                TransportError::LimitReached {
                    limit: "kernel.shmmni",
                    detail: format!(
                        "creating a System V segment: {count} segments exist, kernel.shmmni is {}",
                        shown(shmmni)
                    ),
                }
            } else {
                TransportError::LimitReached {
                    limit: "kernel.shmall",
                    detail: format!(
                        "creating a System V segment of {len} bytes: the segments of the system \
                         would pass kernel.shmall, {} pages",
                        shown(sysctl("shmall"))
                    ),
                }
            }
        }
        Some(libc::EINVAL) => TransportError::LimitReached {
            limit: "kernel.shmmax",
            detail: format!(
                "creating a System V segment of {len} bytes: kernel.shmmax is {} bytes (lower \
                 the ring capacity or raise the limit)",
                shown(sysctl("shmmax"))
            ),
        },
        _ => TransportError::Io(error),
    }
}

/// The limits a server reports to its client by number (`limit_number`, `server_limit`).
const LIMITS: [&str; 3] = ["kernel.shmmni", "kernel.shmall", "kernel.shmmax"];

/// The number under which a server tells its client of the system limit `error` names.
pub(crate) fn limit_number(error: &TransportError) -> Option<u64> {
    match error {
        TransportError::LimitReached { limit, .. } => {
            LIMITS.iter().position(|l| l == limit).map(|i| i as u64)
        }
        _ => None,
    }
}

/// The client's error for the system limit numbered `number` that stopped the server.
pub(crate) fn server_limit(number: u64) -> Option<TransportError> {
    let limit = *LIMITS.get(usize::try_from(number).ok()?)?;
    Some(TransportError::LimitReached {
        limit,
        detail: format!("the server could not create a System V segment for us ({limit})"),
    })
}

/// Whether process `pid` exists (as far as we can tell: a pid we may not signal exists).
fn alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// Whether a segment of `size` bytes could be one of ours: rings of a capacity we accept.
fn is_our_size(size: usize) -> bool {
    let capacity = size
        .checked_sub(segment_len(0))
        .filter(|rings| rings % 2 == 0)
        .map(|rings| rings / 2);
    capacity.is_some_and(|c| {
        c.is_power_of_two()
            && (super::segment::MIN_RING..=super::segment::MAX_RING).contains(&c)
            && segment_len(c) == size
    })
}

/// Removes the segments a server of our uid left by dying between creating a segment and
/// marking it (see the module docs): key ours, owner and creator us, mode 0600, the size of a
/// segment of ours, nothing attached, creator gone. Another program's segment whose key falls
/// in our range (an `ftok` key can), left for a later process to attach, is spared unless it
/// matches all of that too. Returns how many it removed.
pub(crate) fn sweep() -> usize {
    let own = own_uid();
    let mut removed = 0;
    for (key, id, size, creator, attached, uid) in listed_segments() {
        if !is_our_key(key) || uid != own || attached != 0 || creator <= 0 || alive(creator) {
            continue;
        }
        // Look again by id, right before removing: it is still the same orphan.
        let still = ipc::stat(id).is_ok_and(|s| {
            s.key == key
                && s.uid == own
                && s.cuid == own
                && s.attached == 0
                && s.mode & (ipc::SHM_DEST | 0o777) == 0o600
                && is_our_size(s.size)
        });
        if still && ipc::mark_removed(id).is_ok() {
            tracing::warn!(
                shmid = id,
                size,
                creator,
                "removed a System V segment left by a sysv-shm server killed while creating it"
            );
            removed += 1;
        }
    }
    removed
}
