//! The segment: a header and two rings (client to server, server to client) in one region.
//!
//! ```text
//!   0    magic "RPCSHM01"   u64
//!   8    layout version     u32
//!  12    ring capacity      u32 (bytes of data per ring, a power of two)
//!  16    segment length     u64
//! 128    ring 0 (client -> server): control block + data
//!  ...   ring 1 (server -> client): control block + data
//! ```

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use super::region::Region;
use super::ring::{RING_CONTROL, RegionRing};
use super::sync::Ordering;

const MAGIC: u64 = u64::from_le_bytes(*b"RPCSHM01");
const LAYOUT_VERSION: u32 = 1;
const HEADER: usize = 128;
/// Smallest and largest ring capacity accepted from a peer.
pub(crate) const MIN_RING: usize = 4 * 1024;
pub(crate) const MAX_RING: usize = 1 << 30;

/// Bytes a segment with rings of `capacity` occupies.
pub(crate) fn segment_len(capacity: usize) -> usize {
    HEADER + 2 * (RING_CONTROL + capacity)
}

/// A mapped segment and its two rings.
pub(crate) struct Segment {
    pub(crate) region: Arc<Region>,
    pub(crate) capacity: usize,
}

impl Segment {
    /// The ring carrying client-to-server messages.
    pub(crate) fn to_server(&self) -> RegionRing {
        RegionRing::new(self.region.clone(), HEADER, self.capacity)
    }

    /// The ring carrying server-to-client messages.
    pub(crate) fn to_client(&self) -> RegionRing {
        RegionRing::new(
            self.region.clone(),
            HEADER + RING_CONTROL + self.capacity,
            self.capacity,
        )
    }

    /// Creates a sealed memfd segment with rings of `capacity` bytes.
    pub(crate) fn create_memfd(capacity: usize) -> io::Result<(Segment, OwnedFd)> {
        let (region, fd) = Region::create_memfd(c"rpc-shm-segment", segment_len(capacity), false)?;
        let segment = Segment {
            region: Arc::new(region),
            capacity,
        };
        segment.initialise();
        Ok((segment, fd))
    }

    /// Writes a fresh header and zeroes both rings' control blocks (for a reused file slot).
    pub(crate) fn initialise(&self) {
        let region = &self.region;
        for ring_base in [HEADER, HEADER + RING_CONTROL + self.capacity] {
            region.write(ring_base, &[0u8; RING_CONTROL]);
        }
        region
            .atomic_u32(12)
            .store(self.capacity as u32, Ordering::Relaxed);
        region
            .atomic_u64(16)
            .store(region.len() as u64, Ordering::Relaxed);
        region
            .atomic_u32(8)
            .store(LAYOUT_VERSION, Ordering::Relaxed);
        region.atomic_u64(0).store(MAGIC, Ordering::Release);
    }

    /// Wraps a region already holding a segment created elsewhere, validating its header.
    pub(crate) fn open(region: Region) -> io::Result<Segment> {
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        if region.len() < HEADER {
            return Err(invalid(format!(
                "segment of {} bytes has no header",
                region.len()
            )));
        }
        if region.atomic_u64(0).load(Ordering::Acquire) != MAGIC {
            return Err(invalid(
                "not an rpc shared-memory segment (bad magic)".into(),
            ));
        }
        let version = region.atomic_u32(8).load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(invalid(format!(
                "segment layout version {version}, this build reads {LAYOUT_VERSION}"
            )));
        }
        let capacity = region.atomic_u32(12).load(Ordering::Relaxed) as usize;
        let len = region.atomic_u64(16).load(Ordering::Relaxed);
        if !capacity.is_power_of_two()
            || !(MIN_RING..=MAX_RING).contains(&capacity)
            || len != region.len() as u64
            || segment_len(capacity) != region.len()
        {
            return Err(invalid(format!(
                "segment header claims rings of {capacity} bytes in {len} bytes; mapped {}",
                region.len()
            )));
        }
        Ok(Segment {
            region: Arc::new(region),
            capacity,
        })
    }

    /// Maps and opens the segment a server handed over: a sealed memfd (`shm://`), or a slot
    /// of the server's file (`mmap://`, trusted as documented).
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        sealed: bool,
    ) -> io::Result<Segment> {
        let region = if sealed {
            Region::map_sealed(fd, offset, len, false)?
        } else {
            Region::map(fd, offset, len, false)?
        };
        Segment::open(region)
    }
}

/// The name memfds of large messages carry (visible in /proc/PID/fd).
pub(crate) const LARGE_NAME: &CStr = c"rpc-shm-large";
