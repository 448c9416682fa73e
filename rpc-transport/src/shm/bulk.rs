//! Large messages: regions mapped separately from the rings, handed over once and reused.
//!
//! A message bigger than a quarter of the ring goes into a bulk region of the sending side:
//! a sealed memfd with a 64-byte header (`busy: u32` at 0) and the payload after it. The first
//! time a region is used its descriptor goes over the rendezvous socket (tagged with the
//! region's id and capacity); after that, only a 16-byte ring record `[id u64][len u64]` names
//! the message. The sender sets `busy` before publishing the record.
//!
//! **The one copy on the receiving side.** The peer keeps a writable mapping of its region
//! and may write it again at any time, so nothing above the transport ever sees the region:
//! [`BulkIn::take`] copies the payload, once, into a buffer this process owns and the peer
//! cannot map, clears `busy` at once (the sender reuses the region for its next large message
//! without waiting for this side's user), and hands that buffer up as the frame. Whatever
//! the peer writes afterwards, the frame, and every `rpc_core::Bytes` sliced from it, keeps
//! the bytes that were copied. The buffers come from a small per-connection pool
//! ([`Spares`]) and go back to it when the last slice of a frame is dropped, so a connection
//! moving large messages copies into memory that is already mapped and touched instead of
//! page-faulting a fresh allocation (or a fresh mapping from the allocator) per message.
//!
//! A region still busy after a short wait, or too small, is replaced by a new one.
//! Each side keeps at most one region per direction mapped, so a connection's bulk memory is
//! bounded by its largest message (plus at most [`MAX_SPARES`] receive buffers).

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::link::Link;
use super::region::Region;
use super::ring::RingError;
use super::segment::LARGE_NAME;
use super::sync::{Ordering, spin_hint};
use crate::error::TransportError;
use crate::frame::Frame;

/// Bytes before the payload in a bulk region.
const BULK_HEADER: usize = 64;
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
    region: Region,
    capacity: usize,
}

impl Mapped {
    fn busy(&self) -> &std::sync::atomic::AtomicU32 {
        self.region.atomic_u32(0)
    }
}

/// The sending side's bulk regions: the current one, and older ones the receiver still holds
/// a message of.
#[derive(Default)]
pub(crate) struct BulkOut {
    current: Option<Mapped>,
    retired: Vec<Mapped>,
    next_id: u64,
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
            region,
            capacity,
        });
        Ok(true)
    }

    /// Lets `fill` write a `len`-byte message into the region [`try_acquire`](Self::try_acquire)
    /// made current, and returns the announcement for the ring.
    pub(crate) fn place(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Announcement {
        let current = self
            .current
            .as_ref()
            .expect("try_acquire made a region current");
        current.region.with_slice_mut(BULK_HEADER, len, fill);
        current.busy().store(1, Ordering::Release);
        let mut announcement = [0u8; 16];
        announcement[..8].copy_from_slice(&current.id.to_le_bytes());
        announcement[8..].copy_from_slice(&(len as u64).to_le_bytes());
        announcement
    }
}

/// The receiving side's view of the peer's bulk region, and its own receive buffers.
#[derive(Default)]
pub(crate) struct BulkIn {
    current: Option<Mapped>,
    next_id: u64,
    spares: Spares,
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
        let len = u64::from_le_bytes(announcement[8..].try_into().expect("8 bytes"));
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
                region,
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
        current.region.read(BULK_HEADER, &mut buffer[..len]);
        current.busy().store(0, Ordering::Release);
        Ok(Frame::from_shared(Bytes::from_owner(Copied {
            buffer: Some(buffer),
            len,
            spares: self.spares.clone(),
        })))
    }
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
