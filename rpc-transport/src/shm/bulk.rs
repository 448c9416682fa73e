//! Large messages: regions mapped separately from the rings, handed over once and reused.
//!
//! A message bigger than a quarter of the ring goes into a bulk region of the sending side:
//! a sealed memfd with a 64-byte header (`busy: u32` at 0, `progress: u64` at 8, `waiter: u32`
//! at 24) and the payload after it. The first time a region is used its descriptor goes over
//! the rendezvous socket (tagged with the region's id and capacity); after that, only a
//! 16-byte ring record `[id u64][len u64]` names the message (the length's top bit is a flag,
//! below).
//!
//! **Announced first, then written.** The sender sets `busy`, zeroes `progress` and publishes
//! the ring record *before* it fills the region ([`BulkOut::begin`], then
//! [`BulkOut::fill`]), so the receiver can start at once. While the fill runs, `progress`
//! holds how many payload bytes are final (stored with `Release` by
//! [`copy_in_place`](super::progress::copy_in_place) and
//! [`mark_written`](super::progress::mark_written), see `progress.rs`); once the fill
//! returns it holds [`COMPLETE`]` | len`, whatever the fill reported. [`BulkIn::take`] copies
//! each part out as soon as `progress` (read with `Acquire`) covers it, so on two cores the
//! receiver's copy-out runs beside the sender's copy-in. The first
//! [`REWRITABLE_PREFIX`] bytes, which a fill may still patch, are copied last, after
//! `COMPLETE`.
//!
//! **A receiver never waits without bound** for a message it was announced: a fill that
//! panics stores [`ABANDONED`] (a drop guard) and ends the connection; a sender that makes no
//! progress for [`STALL_LIMIT`], or whose connection ends before the message is complete,
//! fails the receive. Each of these ends the connection with an error that says which it was.
//! While it waits for progress it spins briefly (not at all on an oversubscribed machine),
//! then sleeps on a futex word in the region's header (`waiter`, at 24) that the sender wakes
//! whenever it reports progress (a sender sharing its CPU could not move otherwise).
//!
//! **The one copy on the receiving side.** The peer keeps a writable mapping of its region
//! and may write it again at any time, so nothing above the transport ever sees the region:
//! [`BulkIn::take`] copies the payload, once, into a buffer this process owns and the peer
//! cannot map, clears `busy` once the whole message is copied (the sender reuses the region
//! for its next large message without waiting for this side's user), and hands that buffer up
//! as the frame. Whatever the peer writes afterwards, the frame, and every `rpc_core::Bytes`
//! sliced from it, keeps the bytes that were copied. The buffers come from a small
//! per-connection pool ([`Spares`]) and go back to it when the last slice of a frame is
//! dropped, so a connection moving large messages copies into memory that is already mapped
//! and touched instead of page-faulting a fresh allocation (or a fresh mapping from the
//! allocator) per message.
//!
//! **Learning how to write.** A large message is written with non-temporal or ordinary stores;
//! the top bit of the announcement's length word says which (set: ordinary). The client
//! chooses by timing the interval from one of its large messages to the next
//! (`store_choice.rs`); the server writes the way the client's last large message was written
//! ([`BulkOut::choose`]), and learns on its own only until it has received one.
//!
//! A region still busy after a short wait, or too small, is replaced by a new one.
//! Each side keeps at most one region per direction mapped, so a connection's bulk memory is
//! bounded by its largest message (plus at most [`MAX_SPARES`] receive buffers).

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::link::{Link, Side};
use super::progress::{FillScope, REWRITABLE_PREFIX, WAITER_AFTER_PROGRESS, wake_progress_waiter};
use super::region::Region;
use super::ring::RingError;
use super::segment::LARGE_NAME;
use super::store_choice::{StoreChoice, Stores};
use super::sync::{Ordering, spin_hint};
use crate::error::TransportError;
use crate::frame::Frame;

/// Bytes before the payload in a bulk region.
const BULK_HEADER: usize = 64;
/// Offset of the progress word (`u64`) in a region's header; `busy` (`u32`) is at 0.
const PROGRESS: usize = 8;
/// Offset of the word (`u32`) a receiver waiting for progress sleeps on (`progress.rs`).
const WAITER: usize = PROGRESS + WAITER_AFTER_PROGRESS;
/// How long a receiver sleeps there at most before it looks at the connection and the clock.
const WAITER_NAP: Duration = Duration::from_millis(1);
/// `progress` once the fill has returned: this bit, or'ed with the message's length.
pub(crate) const COMPLETE: u64 = 1 << 63;
/// `progress` of a message whose fill panicked: it will never be complete.
pub(crate) const ABANDONED: u64 = 1 << 62;
/// Set in an announcement's length word when the message is written with ordinary stores
/// (`store_choice.rs`); the length is the rest of the word.
const CACHED: u64 = 1 << 63;
/// How long a receiver waits for the sender's progress on a large message to move before it
/// gives up on the connection (a healthy sender publishes progress every few microseconds).
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(2);
/// Spin turns between two looks at the clock and the connection while waiting for progress.
const TURNS_PER_CHECK: u32 = 256;
/// How long a receiver waiting for progress spins before it sleeps until the sender reports
/// more (on the region's waiter word, [`WAITER`]): a sender on another CPU reports a chunk
/// every few microseconds, while one that shares this CPU (both pinned to it, or an
/// oversubscribed machine) cannot move until this thread lets go. Sleeping, rather than
/// yielding, also lets the scheduler run this thread as soon as it is woken: a thread that
/// yields to a busy one on a crowded CPU waits out the other's whole time slice.
const SPIN_BEFORE_SLEEP: Duration = Duration::from_micros(20);
/// The smallest bulk region created.
const MIN_CAPACITY: usize = 1024 * 1024;
/// How long the sender waits for the receiver to release a region before making another.
const RELEASE_WAIT: Duration = Duration::from_micros(200);
/// Older regions a sender keeps while the receiver still holds their messages; past this it
/// waits instead of making more (the receiver accepts a few more descriptors than this).
const MAX_RETIRED: usize = 4;

/// The announcement a ring record carries: region id and payload length.
pub(crate) type Announcement = [u8; 16];

struct Mapped {
    id: u64,
    /// Shared with the thread-local that lets a fill report progress (`progress.rs`).
    region: Arc<Region>,
    capacity: usize,
}

impl Mapped {
    fn busy(&self) -> &std::sync::atomic::AtomicU32 {
        self.region.atomic_u32(0)
    }

    fn progress(&self) -> &std::sync::atomic::AtomicU64 {
        self.region.atomic_u64(PROGRESS)
    }
}

/// The sending side's bulk regions: the current one, and older ones the receiver still holds
/// a message of.
#[derive(Default)]
pub(crate) struct BulkOut {
    current: Option<Mapped>,
    retired: Vec<Mapped>,
    next_id: u64,
    /// How messages are written, learned from the intervals between them.
    stores: StoreChoice,
    /// The last message this side chose the stores of: how it was written, its length, and
    /// when it was announced.
    last: Option<(Stores, usize, Instant)>,
    /// How the message announced last is written.
    writing: Stores,
}

impl BulkOut {
    /// Makes a free region of at least `len` bytes current: the current one once the receiver
    /// has released it (waiting briefly for that), else a new one handed to the peer. `false`
    /// when `MAX_RETIRED` older regions still hold unreleased messages: the caller waits (this
    /// is the backpressure on large messages) and asks again.
    pub(crate) fn try_acquire(&mut self, link: &Link, len: usize) -> Result<bool, TransportError> {
        self.retired
            .retain(|m| m.busy().load(Ordering::Acquire) != 0);
        if let Some(current) = &self.current
            && current.capacity >= len
        {
            let waited = Instant::now() + RELEASE_WAIT;
            loop {
                if current.busy().load(Ordering::Acquire) == 0 {
                    return Ok(true);
                }
                if Instant::now() >= waited {
                    break;
                }
                spin_hint();
            }
        }
        if self.current.is_some() && self.retired.len() >= MAX_RETIRED {
            return Ok(false);
        }
        if let Some(old) = self.current.take()
            && old.busy().load(Ordering::Acquire) != 0
        {
            self.retired.push(old);
        }
        let capacity = len.next_power_of_two().max(MIN_CAPACITY);
        let (region, fd) = Region::create_memfd(LARGE_NAME, BULK_HEADER + capacity, true)?;
        let id = self.next_id;
        link.send_large(id, capacity as u64, &fd)?;
        self.next_id += 1;
        self.current = Some(Mapped {
            id,
            region: Arc::new(region),
            capacity,
        });
        Ok(true)
    }

    fn current(&self) -> &Mapped {
        self.current
            .as_ref()
            .expect("try_acquire made a region current")
    }

    /// Claims the region [`try_acquire`](Self::try_acquire) made current for a `len`-byte
    /// message and returns its announcement, for the caller to publish in the ring *before*
    /// it calls [`fill`](Self::fill): the receiver then copies the message out while it is
    /// being written. Chooses how the message is written (see [`Self::choose`]) and says so
    /// in the announcement.
    pub(crate) fn begin(&mut self, link: &Link, len: usize) -> Announcement {
        let stores = self.choose(link, len);
        let current = self.current();
        debug_assert!(len <= current.capacity);
        // Both stores are published by the ring record's `Release`; a receiver that has read
        // the record sees this zero (or later progress), never the previous message's value.
        current.progress().store(0, Ordering::Relaxed);
        current.busy().store(1, Ordering::Release);
        let mut announcement = [0u8; 16];
        announcement[..8].copy_from_slice(&current.id.to_le_bytes());
        let flag = if stores == Stores::Cached { CACHED } else { 0 };
        announcement[8..].copy_from_slice(&(len as u64 | flag).to_le_bytes());
        announcement
    }

    /// How the next message, of `len` bytes, is written. The client learns it from the
    /// intervals between its large messages (`store_choice.rs`). The server writes the way the
    /// client last did, once it has received a large message: the two choices interact (how
    /// one side's stores leave the lines changes what the other side's copies cost), and a
    /// style is best judged with both sides using it; until then it learns on its own.
    fn choose(&mut self, link: &Link, len: usize) -> Stores {
        let now = Instant::now();
        if let Some((used, bytes, at)) = self.last.take() {
            self.stores.record(used, bytes, now - at);
        }
        let stores = match (link.side, link.peer_stores.load(Ordering::Relaxed)) {
            (Side::Server, 1) => Stores::Streaming,
            (Side::Server, 2) => Stores::Cached,
            _ => {
                let stores = self.stores.next();
                self.last = Some((stores, len, now));
                stores
            }
        };
        self.writing = stores;
        stores
    }

    /// Lets `fill` write the `len`-byte message [`begin`](Self::begin) announced, reporting
    /// progress on the way if it calls `copy_in_place` or `mark_written`, then marks the
    /// message complete. Should `fill` panic, the message is marked abandoned and the
    /// connection ended, so the receiver fails at once instead of waiting for the rest.
    pub(crate) fn fill(&mut self, link: &Link, len: usize, fill: impl FnOnce(&mut [u8])) {
        let stores = self.writing;
        let current = self.current();
        let abandon = AbandonGuard {
            progress: current.progress(),
            region: &current.region,
            link,
        };
        let region = current.region.clone();
        current.region.with_slice_mut(BULK_HEADER, len, |out| {
            let _scope = FillScope::enter(out.as_ptr() as usize, len, region, PROGRESS, stores);
            fill(out)
        });
        std::mem::forget(abandon);
        current
            .progress()
            .store(COMPLETE | len as u64, Ordering::Release);
        wake_progress_waiter(&current.region, WAITER);
    }
}

/// Marks an announced message abandoned if its fill unwinds (forgotten once the fill returns).
struct AbandonGuard<'a> {
    progress: &'a std::sync::atomic::AtomicU64,
    region: &'a Region,
    link: &'a Link,
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        // The reason first: the receiver, woken below, ends its side at once, and this side's
        // errors must still say why rather than that the peer closed.
        let why = "a large message was abandoned half-written (its encoder panicked); \
                   the connection cannot continue";
        self.link.note_reason(why);
        self.progress.store(ABANDONED, Ordering::Release);
        wake_progress_waiter(self.region, WAITER);
        self.link.mark_dead(why);
    }
}

/// The receiving side's view of the peer's bulk region, and its own receive buffers.
pub(crate) struct BulkIn {
    current: Option<Mapped>,
    next_id: u64,
    spares: Spares,
    /// How long a message may make no progress before the receive fails ([`STALL_LIMIT`]).
    stall_limit: Duration,
}

impl Default for BulkIn {
    fn default() -> Self {
        BulkIn {
            current: None,
            next_id: 0,
            spares: Spares::default(),
            stall_limit: STALL_LIMIT,
        }
    }
}

/// Receive buffers a connection keeps once they are free again, at most this many.
pub(crate) const MAX_SPARES: usize = 2;
/// Receive buffers are sized in steps of this, so one serves messages of similar sizes.
const SPARE_STEP: usize = 1024 * 1024;

/// Free receive buffers of one connection, reused across large messages: a buffer already
/// touched costs no page faults when the next message is copied into it. Bounded twice: a
/// connection keeps at most [`MAX_SPARES`], and the whole process at most
/// [`MAX_SPARE_BYTES_PER_PROCESS`] in spares (past it, a freed buffer is freed for real).
#[derive(Clone, Default)]
pub(crate) struct Spares(Arc<Mutex<SpareList>>);

/// A connection's spare buffers; their bytes leave the process-wide count when it ends.
#[derive(Default)]
struct SpareList(Vec<Box<[u8]>>);

impl Drop for SpareList {
    fn drop(&mut self) {
        let bytes: usize = self.0.iter().map(|b| b.len()).sum();
        SPARE_BYTES.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The bytes all connections of this process may keep as spare receive buffers.
pub(crate) const MAX_SPARE_BYTES_PER_PROCESS: usize = 256 * 1024 * 1024;

/// Bytes held as spares now, by every connection of the process.
static SPARE_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Spares {
    /// A buffer of at least `len` bytes: the smallest spare that fits and is at most twice the
    /// size needed (so a small message never pins a big buffer), else a new one.
    fn take(&self, len: usize) -> Box<[u8]> {
        let size = len.div_ceil(SPARE_STEP).max(1) * SPARE_STEP;
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let spares = &mut guard.0;
        let fit = spares
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len && b.len() <= 2 * size)
            .min_by_key(|(_, b)| b.len())
            .map(|(at, _)| at);
        if let Some(at) = fit {
            let buffer = spares.swap_remove(at);
            SPARE_BYTES.fetch_sub(buffer.len(), std::sync::atomic::Ordering::Relaxed);
            return buffer;
        }
        drop(guard);
        vec![0u8; size].into_boxed_slice()
    }

    fn give_back(&self, buffer: Box<[u8]>) {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let spares = &mut guard.0;
        if spares.len() >= MAX_SPARES {
            // Keep the newest: drop the smallest, which the next large message is least
            // likely to fit.
            let smallest = (0..spares.len()).min_by_key(|&at| spares[at].len());
            if let Some(at) = smallest {
                let old = spares.swap_remove(at);
                SPARE_BYTES.fetch_sub(old.len(), std::sync::atomic::Ordering::Relaxed);
            }
        }
        let held = SPARE_BYTES.fetch_add(buffer.len(), std::sync::atomic::Ordering::Relaxed);
        if held + buffer.len() > MAX_SPARE_BYTES_PER_PROCESS {
            SPARE_BYTES.fetch_sub(buffer.len(), std::sync::atomic::Ordering::Relaxed);
            return;
        }
        spares.push(buffer);
    }
}

/// A received message copied out of the peer's region into a buffer of this process; the
/// buffer goes back to the connection's [`Spares`] when the last slice of it is dropped.
struct Copied {
    buffer: Option<Box<[u8]>>,
    len: usize,
    spares: Spares,
}

impl AsRef<[u8]> for Copied {
    fn as_ref(&self) -> &[u8] {
        &self.buffer.as_deref().expect("held until dropped")[..self.len]
    }
}

impl Drop for Copied {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.spares.give_back(buffer);
        }
    }
}

impl BulkIn {
    /// Whether the message `announcement` names can be taken without waiting (its region is
    /// mapped, or its descriptor has arrived).
    pub(crate) fn is_ready(&self, link: &Link, announcement: &Announcement) -> bool {
        let id = u64::from_le_bytes(announcement[..8].try_into().expect("8 bytes"));
        // An id that is neither mapped nor next is corrupt: `take` says so at once.
        self.current.as_ref().is_some_and(|c| c.id == id)
            || id != self.next_id
            || link.has_large(id)
    }

    /// The message `announcement` names (mapping a new region if it names one), copied into a
    /// buffer of this process; the region goes back to the sender at once.
    pub(crate) fn take(
        &mut self,
        link: &Link,
        announcement: &Announcement,
        limit: usize,
        fd_wait: Duration,
    ) -> Result<Frame, TransportError> {
        let id = u64::from_le_bytes(announcement[..8].try_into().expect("8 bytes"));
        let word = u64::from_le_bytes(announcement[8..].try_into().expect("8 bytes"));
        let (len, cached) = (word & !CACHED, word & CACHED != 0);
        // Only advice for how this side writes (see `BulkOut::choose`), whatever the peer says.
        link.peer_stores
            .store(1 + usize::from(cached), Ordering::Relaxed);
        if len > limit as u64 {
            return Err(TransportError::FrameTooLarge {
                size: len as usize,
                limit,
            });
        }
        if self.current.as_ref().is_none_or(|c| c.id != id) {
            if id != self.next_id {
                return Err(corrupt(
                    link,
                    format!("bulk region {id} announced, {} expected", self.next_id),
                ));
            }
            let large = link.take_large(id, fd_wait)?;
            let capacity = large.len as usize;
            let region = Region::map_sealed(
                large.fd.as_fd(),
                0,
                BULK_HEADER.saturating_add(capacity),
                true,
            )
            .map_err(|e| {
                link.mark_dead(&format!("mapping a bulk region failed: {e}"));
                TransportError::Io(e)
            })?;
            self.current = Some(Mapped {
                id,
                region: Arc::new(region),
                capacity,
            });
            self.next_id += 1;
        }
        let current = self.current.as_ref().expect("the named region is mapped");
        if len as usize > current.capacity {
            return Err(corrupt(
                link,
                format!(
                    "{len} bytes announced in bulk region {id} of {}",
                    current.capacity
                ),
            ));
        }
        let len = len as usize;
        let mut buffer = self.spares.take(len);
        // The one copy: from here on the peer's writes to its region change nothing we hand up.
        copy_out(link, current, &mut buffer[..len], self.stall_limit)?;
        current.busy().store(0, Ordering::Release);
        Ok(Frame::from_shared(Bytes::from_owner(Copied {
            buffer: Some(buffer),
            len,
            spares: self.spares.clone(),
        })))
    }
}

/// The slowest fill a receiver waits out: a sender that trickles progress (a byte now and
/// then, each within the stall limit) would otherwise hold the receiving thread for as long
/// as it likes. A healthy sender writes at gigabytes per second; an encoder that writes byte
/// by byte in a debug build, on a busy machine, at some tens of megabytes per second.
const SLOWEST_FILL: f64 = 4.0 * 1024.0 * 1024.0;

/// How long a message of `len` bytes may take to be written before the receiver gives up:
/// the stall limit plus `len` at [`SLOWEST_FILL`] bytes per second.
fn fill_limit(stall_limit: Duration, len: usize) -> Duration {
    stall_limit + Duration::from_secs_f64(len as f64 / SLOWEST_FILL)
}

/// Copies the message being written into `region` out into `out` (its length), each part as
/// soon as the sender's progress covers it; the rewritable prefix last, once the message is
/// complete. Fails, ending the connection, when the sender abandons the message, stops making
/// progress for `stall_limit`, takes longer than [`fill_limit`] in all, or the connection
/// ends first.
fn copy_out(
    link: &Link,
    region: &Mapped,
    out: &mut [u8],
    stall_limit: Duration,
) -> Result<(), TransportError> {
    let len = out.len();
    let prefix = REWRITABLE_PREFIX.min(len);
    let mut copied = prefix;
    // The most the sender has reported final, for the error messages.
    let mut seen = 0;
    let mut turns = 0u32;
    let mut still_since: Option<Instant> = None;
    // How this receiver waits: it spins, then sleeps until the sender reports progress. It
    // does not spin at all when its CPU is shared with other busy threads (the sender may
    // be one of them, as when both are pinned to one CPU).
    let mut still = Duration::ZERO;
    let mut spins: Option<bool> = None;
    let started = Instant::now();
    let limit = fill_limit(stall_limit, len);
    loop {
        let (upto, complete) = match read_progress(region.progress(), len) {
            Ok(progress) => progress,
            Err(why) => return Err(broken(link, why, seen, len)),
        };
        seen = seen.max(upto);
        if upto > copied {
            region
                .region
                .read(BULK_HEADER + copied, &mut out[copied..upto]);
            copied = upto;
            still_since = None;
            turns = 0;
            still = Duration::ZERO;
        }
        if complete {
            region.region.read(BULK_HEADER, &mut out[..prefix]);
            return Ok(());
        }
        if still >= SPIN_BEFORE_SLEEP
            || !*spins.get_or_insert_with(|| !crate::spin::oversubscribed())
        {
            sleep_for_progress(region, upto, len);
        } else {
            spin_hint();
            turns += 1;
            if !turns.is_multiple_of(TURNS_PER_CHECK) {
                continue;
            }
        }
        if link.is_dead() {
            // A sender completes (or abandons) a message before its connection ends: look once
            // more, and say which it was.
            return match read_progress(region.progress(), len) {
                Ok((_, true)) => continue,
                Ok(_) => Err(broken(link, Stop::Ended, seen, len)),
                Err(stop) => Err(broken(link, stop, seen, len)),
            };
        }
        let now = Instant::now();
        still = now.duration_since(*still_since.get_or_insert(now));
        if still >= stall_limit {
            return Err(broken(link, Stop::Stalled(stall_limit), seen, len));
        }
        if now.duration_since(started) >= limit {
            return Err(broken(link, Stop::TooSlow(limit), seen, len));
        }
    }
}

/// Why a large message will never be complete.
#[derive(Debug)]
enum Stop {
    /// The sender's fill panicked.
    Abandoned,
    /// No progress for this long.
    Stalled(Duration),
    /// Not complete after this long, progress or not.
    TooSlow(Duration),
    /// The connection ended first.
    Ended,
    /// The progress word holds a value no sender writes.
    Corrupt(u64),
}

/// Sleeps until the sender of the message in `region` reports progress past `upto` (or ends
/// it), for at most [`WAITER_NAP`]: announces itself on the waiter word, then looks at the
/// progress once more before it sleeps, so a report in between is never slept through.
fn sleep_for_progress(region: &Mapped, upto: usize, len: usize) {
    let waiter = region.region.atomic_u32(WAITER);
    waiter.store(1, Ordering::Relaxed);
    std::sync::atomic::fence(Ordering::SeqCst);
    match read_progress(region.progress(), len) {
        Ok((now, false)) if now <= upto => super::region::futex_wait(waiter, 1, Some(WAITER_NAP)),
        // More to copy, the end, or something wrong: the caller's loop deals with it.
        _ => waiter.store(0, Ordering::Relaxed),
    }
}

/// `(bytes final, whether the whole message is)` from a region's progress word.
fn read_progress(word: &std::sync::atomic::AtomicU64, len: usize) -> Result<(usize, bool), Stop> {
    let progress = word.load(Ordering::Acquire);
    match progress {
        ABANDONED => Err(Stop::Abandoned),
        p if p == COMPLETE | len as u64 => Ok((len, true)),
        p if p <= len as u64 => Ok((p as usize, false)),
        p => Err(Stop::Corrupt(p)),
    }
}

/// Ends the connection because a large message will never be complete, with an error that
/// says why.
fn broken(link: &Link, stop: Stop, written: usize, len: usize) -> TransportError {
    let reason = match stop {
        Stop::Abandoned => {
            format!("the peer abandoned a large message half-written ({written} of {len} bytes)")
        }
        Stop::Stalled(limit) => format!(
            "the peer stopped writing a large message: no progress for {limit:?} \
             ({written} of {len} bytes written)"
        ),
        Stop::TooSlow(limit) => format!(
            "the peer wrote a large message too slowly: not complete after {limit:?} \
             ({written} of {len} bytes written)"
        ),
        Stop::Ended => format!(
            "the connection ended in the middle of a large message ({written} of {len} bytes \
             written)"
        ),
        Stop::Corrupt(value) => {
            return corrupt(
                link,
                format!("progress word {value:#x} for a large message of {len} bytes"),
            );
        }
    };
    link.mark_dead(&reason);
    TransportError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        reason,
    ))
}

fn corrupt(link: &Link, why: String) -> TransportError {
    let reason = RingError::Corrupt(why).to_string();
    link.mark_dead(&reason);
    TransportError::Malformed(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_buffers_are_reused_once_their_frame_is_dropped() {
        let spares = Spares::default();
        let first = spares.take(3 * 1024 * 1024);
        assert_eq!(first.len(), 3 * SPARE_STEP);
        let at = first.as_ptr();
        let frame = Bytes::from_owner(Copied {
            buffer: Some(first),
            len: 10,
            spares: spares.clone(),
        });
        let slice = frame.slice(2..4);
        drop(frame);
        // A slice still holds the buffer: the next message gets another one.
        let second = spares.take(1024);
        assert_ne!(second.as_ptr(), at);
        spares.give_back(second);
        drop(slice);
        // Both are spare now; the big one serves a big message, without a new allocation.
        let reused = spares.take(2 * 1024 * 1024);
        assert_eq!(reused.as_ptr(), at);
        // At most `MAX_SPARES` are kept.
        for _ in 0..MAX_SPARES + 2 {
            spares.give_back(vec![0; 8].into_boxed_slice());
        }
        assert_eq!(spares.0.lock().unwrap().0.len(), MAX_SPARES);
    }

    #[test]
    fn a_small_message_does_not_take_a_big_spare() {
        let spares = Spares::default();
        spares.give_back(vec![0; 16 * SPARE_STEP].into_boxed_slice());
        let small = spares.take(300 * 1024);
        assert_eq!(
            small.len(),
            SPARE_STEP,
            "a fresh 1 MiB buffer, not the 16 MiB spare"
        );
        let big = spares.take(15 * SPARE_STEP);
        assert_eq!(
            big.len(),
            16 * SPARE_STEP,
            "the big spare serves a big message"
        );
    }
}
