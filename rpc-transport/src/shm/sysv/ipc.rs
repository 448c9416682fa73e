//! The System V shared-memory calls (`shmget`, `shmat`, `shmdt`, `shmctl`), and all the
//! `unsafe` of `sysv-shm://`: an attachment is a [`SysvAttachment`], detached when dropped;
//! [`Region`](crate::shm::region::Region) maps it like any other shared region.

use std::io;
use std::ptr::NonNull;

/// `SHM_DEST` of `<linux/shm.h>`: set in a segment's mode once `IPC_RMID` marked it; the
/// segment is destroyed when its last attachment goes.
pub(crate) const SHM_DEST: u32 = 0o1000;

/// What `IPC_STAT` says of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentStat {
    /// The key it was created with (0 once marked for removal: Linux resets it).
    pub(crate) key: i32,
    /// Owner's uid.
    pub(crate) uid: u32,
    /// Creator's uid.
    pub(crate) cuid: u32,
    /// Permission bits and the `SHM_DEST` flag.
    pub(crate) mode: u32,
    /// Size in bytes, as requested at creation.
    pub(crate) size: usize,
    /// Attachments now.
    pub(crate) attached: u64,
    /// The creating process, as this process's pid namespace names it (0 if it cannot).
    pub(crate) creator: i32,
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// `shmget(key, size, flags)`: the segment's id.
pub(crate) fn get(key: i32, size: usize, flags: i32) -> io::Result<i32> {
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(key, size, flags) };
    if id < 0 { Err(last_error()) } else { Ok(id) }
}

/// `shmctl(id, IPC_STAT)`.
pub(crate) fn stat(id: i32) -> io::Result<SegmentStat> {
    // SAFETY: `shmid_ds` is a plain C struct of integers, valid when zeroed.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one `shmid_ds` into the buffer, which is ours, live and of that
    // type for the call.
    if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } < 0 {
        return Err(last_error());
    }
    // `shmatt_t` is `u64` here but narrower on some targets.
    #[allow(clippy::useless_conversion)]
    Ok(SegmentStat {
        key: ds.shm_perm.__key,
        uid: ds.shm_perm.uid,
        cuid: ds.shm_perm.cuid,
        mode: u32::from(ds.shm_perm.mode),
        size: ds.shm_segsz,
        attached: u64::from(ds.shm_nattch),
        creator: ds.shm_cpid,
    })
}

/// `shmctl(id, IPC_RMID)`: the segment is destroyed once nothing is attached to it (at once if
/// nothing is); until then Linux still lets processes allowed to attach it by id do so.
pub(crate) fn mark_removed(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no buffer (a null one is allowed) and touches no memory of ours.
    if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
        return Err(last_error());
    }
    Ok(())
}

/// A segment attached read-write to this process; detached (`shmdt`) when dropped. It cannot
/// shrink under us: a System V segment keeps its size for life.
pub(crate) struct SysvAttachment {
    at: NonNull<u8>,
    len: usize,
    stat: SegmentStat,
}

impl SysvAttachment {
    /// Attaches segment `id` wherever the kernel chooses; the attachment's length is the
    /// segment's size, read (`IPC_STAT`) once attached, so it is the size of the very segment
    /// mapped: an id cannot be reused while we hold it attached.
    pub(crate) fn attach(id: i32) -> io::Result<SysvAttachment> {
        // SAFETY: with a null address the kernel picks a free range, so the new mapping
        // overlaps no memory of ours; nothing is read or written through it here.
        let at = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if at as isize == -1 {
            return Err(last_error());
        }
        let at = NonNull::new(at.cast::<u8>()).expect("shmat never maps page 0");
        // Detaches on every early return below.
        let mut attachment = SysvAttachment {
            at,
            len: 0,
            stat: SegmentStat {
                key: 0,
                uid: 0,
                cuid: 0,
                mode: 0,
                size: 0,
                attached: 0,
                creator: 0,
            },
        };
        attachment.stat = stat(id)?;
        attachment.len = attachment.stat.size;
        if attachment.len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the System V segment has no bytes",
            ));
        }
        Ok(attachment)
    }

    /// The segment's `IPC_STAT`, as read right after attaching.
    pub(crate) fn stat(&self) -> &SegmentStat {
        &self.stat
    }

    /// The first byte of the attachment.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.at.as_ptr()
    }

    /// The attachment's length in bytes (the segment's size).
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for SysvAttachment {
    fn drop(&mut self) {
        // SAFETY: `at` is the address `shmat` returned for this attachment, detached only here;
        // the `Region` owning us hands out no reference that outlives it.
        unsafe { libc::shmdt(self.at.as_ptr().cast()) };
    }
}
