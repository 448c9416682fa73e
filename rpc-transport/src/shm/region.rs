//! Shared regions: creating them (memfd, or a regular file), mapping them (or wrapping a System V
//! attachment), handing their descriptors to another process, and the few raw operations on
//! mapped memory (atomic words, bounds-checked copies, futex wait and wake).
//!
//! This file, `ring.rs` and `sysv/ipc.rs` (the System V calls) hold all of the transport's
//! `unsafe`. Everything here checks offsets
//! and lengths against the mapping before touching memory, so a peer that scribbles over the
//! shared bytes can make us read garbage but never read or write outside the mapping.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use super::sysv::SysvAttachment;

/// A read-write shared mapping of (part of) a memfd or a file, or a System V segment.
pub(crate) struct Region {
    map: Mapping,
}

/// What a [`Region`] maps; unmapped (or detached) when dropped.
enum Mapping {
    /// `mmap` of a memfd or a file.
    Mmap(MmapRaw),
    /// `shmat` of a System V segment.
    Sysv(SysvAttachment),
}

impl Mapping {
    fn as_ptr(&self) -> *const u8 {
        self.as_mut_ptr()
    }

    fn as_mut_ptr(&self) -> *mut u8 {
        match self {
            Mapping::Mmap(map) => map.as_mut_ptr(),
            Mapping::Sysv(attachment) => attachment.as_ptr(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Mapping::Mmap(map) => map.len(),
            Mapping::Sysv(attachment) => attachment.len(),
        }
    }
}

// SAFETY: the mapping is plain shared memory; all access goes through atomics or copies
// guarded by the ring protocol, so it may be used from any thread.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only exposes atomics and bounds-checked copies.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region").field("len", &self.len()).finish()
    }
}

impl Region {
    /// Creates an anonymous memfd of `len` bytes, sealed against shrinking and growing, and
    /// maps it. Nothing appears in any file system; the memory is freed with the last
    /// descriptor and mapping, whatever way the processes end.
    /// `populate` faults every page in at once (for regions that will be filled whole).
    pub(crate) fn create_memfd(
        name: &CStr,
        len: usize,
        populate: bool,
    ) -> io::Result<(Region, OwnedFd)> {
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        File::from(fd.try_clone()?).set_len(len as u64)?;
        fcntl(
            &fd,
            FcntlArg::F_ADD_SEALS(
                SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
            ),
        )?;
        let region = Region::map(fd.as_fd(), 0, len, populate)?;
        Ok((region, fd))
    }

    /// Maps a memfd received from a peer, after checking that it is sealed against shrinking
    /// (otherwise the peer could truncate it under us and crash this process with SIGBUS).
    pub(crate) fn map_sealed(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        populate: bool,
    ) -> io::Result<Region> {
        let seals = SealFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GET_SEALS)?);
        if !seals.contains(SealFlag::F_SEAL_SHRINK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer's shared region is not sealed against shrinking",
            ));
        }
        Region::map(fd, offset, len, populate)
    }

    /// Maps `len` bytes at `offset` of `fd`, which must be at least that long. For a descriptor
    /// from a peer use [`map_sealed`](Self::map_sealed) (a regular file, as `mmap://` uses, can
    /// be truncated by whoever may write it).
    /// With `populate`, every page is mapped at once instead of on first touch.
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        populate: bool,
    ) -> io::Result<Region> {
        let size = File::from(fd.try_clone_to_owned()?).metadata()?.len();
        if len == 0 || offset.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shared region of {size} bytes cannot hold {len} bytes at offset {offset}"),
            ));
        }
        let mut options = MmapOptions::new();
        options.offset(offset).len(len);
        if populate {
            options.populate();
        }
        let map = options.map_raw(fd.as_raw_fd())?;
        Ok(Region {
            map: Mapping::Mmap(map),
        })
    }

    /// The region of a System V segment attached to this process; detached when dropped.
    pub(crate) fn from_sysv(attachment: SysvAttachment) -> Region {
        Region {
            map: Mapping::Sysv(attachment),
        }
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn check(&self, offset: usize, len: usize, align: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len())
                && offset.is_multiple_of(align),
            "region access out of bounds: {len} bytes at {offset} of {}",
            self.len()
        );
    }

    /// The atomic `u64` at `offset` (8-aligned, in bounds; panics otherwise).
    pub(crate) fn atomic_u64(&self, offset: usize) -> &AtomicU64 {
        self.check(offset, 8, 8);
        // SAFETY: in bounds and aligned (checked above; the mapping is page aligned); the
        // mapping lives as long as `&self`; `AtomicU64` has `u64`'s layout and every process
        // touches this word only atomically.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU64) }
    }

    /// The atomic `u32` at `offset` (4-aligned, in bounds; panics otherwise).
    pub(crate) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        self.check(offset, 4, 4);
        // SAFETY: as in `atomic_u64`, for a 4-byte word.
        unsafe { &*(self.map.as_mut_ptr().add(offset) as *const AtomicU32) }
    }

    /// Copies `bytes` into the region at `offset` (in bounds; panics otherwise).
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
        self.check(offset, bytes.len(), 1);
        // SAFETY: the destination range is inside the mapping (checked above) and cannot
        // overlap `bytes`, which is our own memory. The ring protocol gives this range to us
        // alone until we publish it.
        unsafe {
            crate::large_copy::copy_raw(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(offset),
                bytes.len(),
            )
        }
    }

    /// Copies `out.len()` bytes from the region at `offset` (in bounds; panics otherwise).
    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) {
        self.check(offset, out.len(), 1);
        // SAFETY: the source range is inside the mapping (checked above) and `out` is our own
        // memory. A misbehaving peer may change the bytes as we copy; we then copy garbage,
        // which later validation rejects, but never leave the mapping.
        unsafe {
            crate::large_copy::copy_raw(self.map.as_ptr().add(offset), out.as_mut_ptr(), out.len())
        }
    }

    /// Appends `len` bytes of the region at `offset` to `out`, without zero-filling first
    /// (in bounds; panics otherwise).
    pub(crate) fn append_to(&self, offset: usize, len: usize, out: &mut bytes::BytesMut) {
        self.check(offset, len, 1);
        out.reserve(len);
        let start = out.len();
        // SAFETY: the source is inside the mapping (checked above); `reserve` guarantees `len`
        // bytes of spare capacity after `start`, which the copy initialises before `set_len`.
        unsafe {
            crate::large_copy::copy_raw(
                self.map.as_ptr().add(offset),
                out.as_mut_ptr().add(start),
                len,
            );
            out.set_len(start + len);
        }
    }

    /// Lets `fill` write `len` bytes at `offset` in place (in bounds; panics otherwise). Only
    /// for a range the protocol reserves for this process's writes.
    pub(crate) fn with_slice_mut<R>(
        &self,
        offset: usize,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        self.check(offset, len, 1);
        // SAFETY: in bounds (checked above) of a mapping that outlives the call; the ring (or
        // bulk) protocol reserves this range for our writes until we publish it, so no other
        // reference to it exists in this process, and the slice does not outlive `fill`.
        let slice =
            unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(offset), len) };
        fill(slice)
    }
}

/// Sleeps while `word` holds `expected`, for at most `timeout`; returns early on a wake, a
/// signal or a spurious wake-up (callers re-check their condition).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let spec = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let spec_ptr = spec
        .as_ref()
        .map_or(std::ptr::null(), |s| s as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the aligned 4-byte word `word` points to (alive for the call)
    // and the optional timespec on our stack; it writes nothing. The word is in a shared
    // mapping, so the non-private futex op is used.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            spec_ptr,
        );
    }
}

/// Wakes every process sleeping in [`futex_wait`] on `word`.
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the word's address as a key; nothing is read or written.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// Sends `data` and the descriptors `fds` in one message on a Unix stream socket.
pub(crate) fn send_fds(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let control = [ControlMessage::ScmRights(&raw)];
    let sent = sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(data)],
        if raw.is_empty() { &[] } else { &control },
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    if sent != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short descriptor message",
        ));
    }
    Ok(())
}

/// Receives one message with up to 4 descriptors from a Unix stream socket into `data`;
/// returns the bytes read (0 at end of stream) and the descriptors, owned.
pub(crate) fn recv_fds(
    socket: BorrowedFd<'_>,
    data: &mut [u8],
    flags: MsgFlags,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(data)];
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        flags | MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = control {
            for fd in received {
                // SAFETY: the kernel just installed `fd` in our table for this message; nothing
                // else owns it, so taking ownership here closes it exactly once.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((message.bytes, fds))
}
