//! Large messages: regions mapped separately from the rings, handed over once and reused.
//!
//! A message bigger than a quarter of the ring goes into a bulk region of the sending side:
//! a sealed memfd with a 64-byte header (`busy: u32` at 0) and the payload after it. The first
//! time a region is used its descriptor goes over the rendezvous socket (tagged with the
//! region's id and capacity); after that, only a 16-byte ring record `[id u64][len u64]` names
//! the message. The sender sets `busy` before publishing the record. The receiver hands the
//! payload up in place, without a copy (the frame is a view of the region), and clears `busy`
//! when that frame is dropped; the sender then reuses the region for the next large message. A region still busy after a short wait, or too small, is replaced by a new one.
//! Each side keeps at most one region per direction mapped, so a connection's bulk memory is
//! bounded by its largest message.

use std::os::fd::AsFd;
use std::sync::Arc;
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

/// The receiving side's view of the peer's bulk region.
#[derive(Default)]
pub(crate) struct BulkIn {
    current: Option<Arc<Mapped>>,
    next_id: u64,
}

/// A received message, read in place; releases the region to the sender when dropped.
struct InPlace {
    mapped: Arc<Mapped>,
    len: usize,
}

impl AsRef<[u8]> for InPlace {
    fn as_ref(&self) -> &[u8] {
        self.mapped.region.slice(BULK_HEADER, self.len)
    }
}

impl Drop for InPlace {
    fn drop(&mut self) {
        self.mapped.busy().store(0, Ordering::Release);
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

    /// The message `announcement` names, in place (mapping a new region if it names one); the
    /// region goes back to the sender when the frame is dropped.
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
            self.current = Some(Arc::new(Mapped {
                id,
                region,
                capacity,
            }));
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
        Ok(Frame::from_shared(Bytes::from_owner(InPlace {
            mapped: current.clone(),
            len: len as usize,
        })))
    }
}

fn corrupt(link: &Link, why: String) -> TransportError {
    let reason = RingError::Corrupt(why).to_string();
    link.mark_dead(&reason);
    TransportError::Malformed(reason)
}
