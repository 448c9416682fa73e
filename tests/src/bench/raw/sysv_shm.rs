//! System V shared memory: the same page and spin-then-futex ping-pong as `shm.rs`, in a
//! segment made with `shmget` instead of a memfd.
//!
//! The parent creates the segment (`IPC_PRIVATE`, mode 0600), attaches it and marks it
//! `IPC_RMID` at once, before the child exists: Linux keeps a marked segment while anything is
//! attached and still lets the child attach it by id, which it is given on the command line.
//! The segment is gone once both have detached, whatever way they end.

use std::ptr::NonNull;

use anyhow::{Context as _, bail};

use super::shm::{LEN, Region, Shared, echo, link};
use super::{Mech, Session, child_args, say_ready};
use crate::bench::env::Env;
use crate::bench::plan::Plan;
use crate::bench::proc::ChildGuard;

/// The segment attached to this process; detached on drop.
struct Attachment {
    at: NonNull<Region>,
}

impl Attachment {
    /// Attaches segment `id`, which must be at least [`LEN`] bytes.
    fn new(id: i32) -> anyhow::Result<Attachment> {
        // SAFETY: `shmid_ds` is plain integers, valid zeroed; IPC_STAT writes one into it.
        let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
        // SAFETY: the buffer is ours, live and of the type IPC_STAT writes.
        if unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } < 0 {
            return Err(std::io::Error::last_os_error()).context("IPC_STAT the segment");
        }
        if ds.shm_segsz < LEN {
            bail!("segment {id} has {} bytes, not {LEN}", ds.shm_segsz);
        }
        // SAFETY: with a null address the kernel picks a free range: the new mapping aliases
        // no Rust object. Its contents are only accessed through `Region`, whose shared fields
        // are atomics or `UnsafeCell`s, valid at any bit pattern.
        let at = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if at as isize == -1 {
            return Err(std::io::Error::last_os_error()).context("shmat");
        }
        Ok(Attachment {
            at: NonNull::new(at.cast()).context("shmat gave a null address")?,
        })
    }
}

impl Shared for Attachment {
    fn region(&self) -> &Region {
        // SAFETY: the segment is at least LEN bytes (checked before attaching), page aligned,
        // attached as long as `self`, and every bit pattern of it is a valid `Region`.
        unsafe { self.at.as_ref() }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // SAFETY: `at` is the address shmat returned; no reference into it outlives `self`.
        unsafe { libc::shmdt(self.at.as_ptr().cast()) };
    }
}

/// Marks segment `id` for removal: gone with its last detach (at once if none).
fn mark_removed(id: i32) -> anyhow::Result<()> {
    // SAFETY: IPC_RMID reads no buffer and touches no memory of ours.
    if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
        return Err(std::io::Error::last_os_error()).context("IPC_RMID");
    }
    Ok(())
}

/// Creates, attaches and marks the segment, then spawns the child with its id.
pub fn connect(env: &Env, plan: &Plan) -> anyhow::Result<Session> {
    // SAFETY: shmget takes plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, LEN, libc::IPC_CREAT | 0o600) };
    if id < 0 {
        return Err(std::io::Error::last_os_error()).context("shmget");
    }
    let attached = Attachment::new(id);
    // Marked before anything else can fail: from here the segment goes with its last detach.
    mark_removed(id)?;
    let map = attached?;
    let mut child = ChildGuard::spawn(
        &env.exe,
        &child_args(Mech::SysvShm, Some(id.to_string()), env),
        false,
        "raw sysv-shm server",
    )?;
    let mut stdout = child.take_stdout()?;
    child.read_line_within(&mut stdout, plan.phase_limit)?;
    Ok(Session {
        link: link(map, plan.phase_limit),
        child,
    })
}

/// Attaches segment `id` and echoes requests until killed.
pub fn serve(id: &str) -> anyhow::Result<()> {
    let id: i32 = id.parse().context("segment id")?;
    let map = Attachment::new(id)?;
    say_ready(&mut std::io::stdout(), "sysv-shm")?;
    echo(&map)
}
