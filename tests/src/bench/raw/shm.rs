//! Shared memory: one memfd page mapped by both processes, one slot per direction.
//!
//! The parent creates the memfd without close-on-exec, so the child inherits it; the child is
//! told its number on the command line. A slot is a sequence word (the futex word), a
//! "sleeping" flag and the message. The writer copies the message in, bumps the sequence and
//! futex-wakes only if the reader registered as sleeping; the reader spins on the sequence for
//! up to [`SPIN`], then registers and sleeps on the futex.
//!
//! The page's layout and the ping-pong over it ([`Shared`], [`link`], [`echo`]) serve
//! `sysv_shm.rs` too, where the page is a System V segment instead.

use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::unistd::ftruncate;

use super::{MSG, Mech, PingPong, Session, child_args, futex, say_ready};
use crate::bench::env::Env;
use crate::bench::plan::Plan;
use crate::bench::proc::ChildGuard;

/// How long a reader spins before it sleeps on the futex.
pub const SPIN: Duration = Duration::from_micros(50);

/// The longest single futex sleep; the reader then re-checks its deadline.
const NAP: Duration = Duration::from_millis(100);

/// One direction. Every field another process writes is an atomic or in an `UnsafeCell`.
#[repr(C, align(64))]
struct Slot {
    /// Bumped by the writer after each message; the futex word.
    seq: AtomicU32,
    _pad: [u8; 60],
    /// 1 while the reader sleeps (or is about to) on `seq`.
    sleeping: AtomicU32,
    _pad2: [u8; 60],
    /// The message.
    data: UnsafeCell<[u8; MSG]>,
}

/// The shared page: requests and replies.
#[repr(C)]
pub(super) struct Region {
    request: Slot,
    reply: Slot,
}

/// Bytes of the shared page.
pub(super) const LEN: usize = 4096;
const _: () = assert!(std::mem::size_of::<Region>() <= LEN);

/// A mapping of the region, unmapped on drop.
struct Mapping {
    ptr: NonNull<Region>,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>) -> anyhow::Result<Mapping> {
        let len = NonZeroUsize::new(LEN).expect("non-zero");
        // SAFETY: a fresh shared mapping of a memfd we own, at an address of the kernel's
        // choosing: it aliases no Rust object. Its contents are only accessed through `Slot`,
        // whose shared fields are atomics or `UnsafeCell`s, all valid when zeroed.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .context("mmap the memfd")?;
        Ok(Mapping { ptr: ptr.cast() })
    }
}

/// A mapping of the shared page, however it was made.
pub(super) trait Shared: 'static {
    /// The page.
    fn region(&self) -> &Region;
}

impl Shared for Mapping {
    fn region(&self) -> &Region {
        // SAFETY: the mapping is LEN bytes, page aligned, lives as long as `self`, and every
        // bit pattern of it is a valid `Region` (atomics and byte arrays).
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the region was mapped with LEN bytes by `Mapping::new`, and no reference
        // into it outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), LEN) };
    }
}

impl Slot {
    /// Writes `message` and wakes the reader if it sleeps.
    fn post(&self, message: &[u8; MSG]) {
        // SAFETY: only this process writes this slot's data, and the reader does not read it
        // until it sees the sequence bump below (release/acquire orders the copy before it).
        unsafe { self.data.get().write(*message) };
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) != 0 {
            futex::wake_one(&self.seq);
        }
    }

    /// Waits until the sequence differs from `seen`, spinning first; returns the new value.
    fn wait(&self, seen: u32, deadline: Option<Instant>) -> io::Result<u32> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let now = self.seq.load(Ordering::Acquire);
            if now != seen {
                return Ok(now);
            }
            spins += 1;
            if spins.is_multiple_of(64) && start.elapsed() >= SPIN {
                break;
            }
            spin_loop();
        }
        loop {
            self.sleeping.store(1, Ordering::SeqCst);
            let now = self.seq.load(Ordering::SeqCst);
            if now == seen {
                futex::wait(&self.seq, seen, NAP);
            }
            self.sleeping.store(0, Ordering::SeqCst);
            let now = self.seq.load(Ordering::Acquire);
            if now != seen {
                return Ok(now);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no reply from the shm peer",
                ));
            }
        }
    }

    /// Copies the message out (after [`Slot::wait`] saw it).
    fn read(&self) -> [u8; MSG] {
        // SAFETY: the writer wrote this data before the sequence bump we acquired, and does not
        // write again before we answer (strict ping-pong).
        unsafe { self.data.get().read() }
    }
}

struct Link<M> {
    map: M,
    seen_reply: u32,
    limit: Duration,
}

/// The parent's end over the page `map`: each round trip waits at most `limit`.
pub(super) fn link(map: impl Shared, limit: Duration) -> Box<dyn PingPong> {
    Box::new(Link {
        map,
        seen_reply: 0,
        limit,
    })
}

/// The child's loop over the page `map`: echoes requests until killed.
pub(super) fn echo(map: &impl Shared) -> anyhow::Result<()> {
    let region = map.region();
    let mut seen = 0;
    loop {
        seen = region.request.wait(seen, None)?;
        region.reply.post(&region.request.read());
    }
}

impl<M: Shared> PingPong for Link<M> {
    fn round_trip(&mut self, request: &[u8; MSG], reply: &mut [u8; MSG]) -> io::Result<()> {
        let region = self.map.region();
        region.request.post(request);
        self.seen_reply = region
            .reply
            .wait(self.seen_reply, Some(Instant::now() + self.limit))?;
        *reply = region.reply.read();
        Ok(())
    }
}

/// Creates and maps the memfd, spawns the child with it inherited.
pub fn connect(env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    // No MFD_CLOEXEC: the child inherits the descriptor. It is closed below, right after the
    // spawn, so later children do not inherit it.
    let fd = memfd_create(c"rpc-bench-shm", MFdFlags::empty()).context("memfd_create")?;
    ftruncate(&fd, LEN as i64).context("size the memfd")?;
    let map = Mapping::new(fd.as_fd())?;
    let mut child = ChildGuard::spawn(
        &env.exe,
        &child_args(Mech::Shm, Some(fd.as_raw_fd().to_string()), env),
        false,
        "raw shm server",
    )?;
    drop(fd);
    let mut stdout = child.take_stdout()?;
    child.read_line_within(&mut stdout, plan.phase_limit)?;
    Ok(Session {
        link: link(map, plan.phase_limit),
        child,
    })
}

/// Maps the inherited descriptor `fd` and echoes requests until killed.
pub fn serve(fd: &str) -> anyhow::Result<()> {
    let raw: i32 = fd.parse().context("descriptor number")?;
    // SAFETY: the parent passed the number of the memfd it left open across exec for us;
    // nothing else in this process owns that descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let map = Mapping::new(fd.as_fd())?;
    drop(fd);
    say_ready(&mut std::io::stdout(), "shm")?;
    echo(&map)
}
