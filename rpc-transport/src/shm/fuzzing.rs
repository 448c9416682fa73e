//! [`HostileRing`]: the ring's real consumer (and producer) in a real mapped region whose
//! bytes a test overwrites at will, for the fuzz targets. Not a public API.

use std::io;
use std::sync::Arc;

use super::region::Region;
pub use super::ring::RingError;
use super::ring::{
    Consumer, Producer, RING_CONTROL as CONTROL, RegionRing, RingMemory, max_inline_payload,
};
use super::sync::Ordering;

/// Bytes of a ring's control block (head, tail and the two sleep words); data follows.
pub const RING_CONTROL: usize = CONTROL;
const HEAD: usize = 0;
const TAIL: usize = 128;

/// A record the consumer accepted: its kind and payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingRecord {
    /// The record's kind word.
    pub kind: u32,
    /// The payload length in bytes.
    pub len: usize,
}

/// One ring (control block, then `capacity` data bytes) alone in a memfd region, with a
/// consumer and a producer on it, and nothing to stop a test writing any byte of it.
pub struct HostileRing {
    region: Arc<Region>,
    ring: RegionRing,
    consumer: Consumer<RegionRing>,
    producer: Producer<RegionRing>,
}

impl HostileRing {
    /// A zeroed ring of `capacity` data bytes, rounded up to a power of two of at least 64.
    pub fn new(capacity: usize) -> io::Result<Self> {
        let capacity = capacity.max(64).next_power_of_two();
        let (region, _fd) = Region::create_memfd(c"rpc-fuzz-ring", RING_CONTROL + capacity, false)?;
        let region = Arc::new(region);
        let ring = RegionRing::new(region.clone(), 0, capacity);
        Ok(HostileRing {
            region,
            consumer: Consumer::new(ring.clone()),
            producer: Producer::new(ring.clone()),
            ring,
        })
    }

    /// Data capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Bytes of the whole region: control block and data.
    pub fn region_len(&self) -> usize {
        self.region.len()
    }

    /// The largest payload a record may carry.
    pub fn max_inline_payload(&self) -> usize {
        max_inline_payload(self.capacity())
    }

    /// Overwrites region bytes from `offset` (control block at 0, data at
    /// [`RING_CONTROL`]), cut at the region's end.
    pub fn scribble(&self, offset: usize, bytes: &[u8]) {
        let offset = offset.min(self.region.len());
        let len = bytes.len().min(self.region.len() - offset);
        self.region.write(offset, &bytes[..len]);
    }

    /// The consumer's own count of bytes consumed (never read back from shared memory).
    pub fn consumer_head(&self) -> u64 {
        self.consumer.position()
    }

    /// Overwrites the producer's published position.
    pub fn store_tail(&self, tail: u64) {
        self.ring.word64(TAIL).store(tail, Ordering::Release);
    }

    /// Overwrites the consumer's published position (what the producer reads).
    pub fn store_head(&self, head: u64) {
        self.ring.word64(HEAD).store(head, Ordering::Release);
    }

    /// The next record, validated, without consuming it.
    pub fn peek(&mut self) -> Result<Option<RingRecord>, RingError> {
        Ok(self.consumer.peek()?.map(|record| RingRecord {
            kind: record.kind,
            len: record.len,
        }))
    }

    /// Takes the next record as the shared-memory receiver does: validate, copy the payload
    /// out, consume.
    pub fn take(&mut self) -> Result<Option<(RingRecord, Vec<u8>)>, RingError> {
        let Some(record) = self.consumer.peek()? else {
            return Ok(None);
        };
        let mut payload = bytes::BytesMut::new();
        self.consumer.append(&record, &mut payload);
        let mut copy = vec![0; record.len];
        self.consumer.read(&record, &mut copy);
        let info = RingRecord {
            kind: record.kind,
            len: record.len,
        };
        self.consumer.consume(record);
        // Only our own thread writes the region, so both copies saw the same bytes.
        debug_assert_eq!(payload[..], copy[..]);
        Ok(Some((info, payload.to_vec())))
    }

    /// Whether the consumer sees published bytes.
    pub fn has_data(&self) -> Result<bool, RingError> {
        self.consumer.has_data()
    }

    /// The consumer announces a sleep of kind `how` and withdraws it; returns whether it
    /// would have slept.
    pub fn announce_sleep(&self, how: u32) -> Result<bool, RingError> {
        let sleeping = self.consumer.announce_sleep(how)?;
        self.consumer.end_sleep();
        Ok(sleeping)
    }

    /// The producer publishes a record of `kind` holding `payload` (cut to
    /// [`max_inline_payload`](Self::max_inline_payload)); `Ok(false)` when the ring is full.
    pub fn push(&mut self, kind: u32, payload: &[u8]) -> Result<bool, RingError> {
        let payload = &payload[..payload.len().min(self.max_inline_payload())];
        Ok(self.producer.try_push(kind, &[payload])?.is_some())
    }

    /// The producer announces it waits for room for `len` payload bytes; returns whether it
    /// would have slept (the announcement stays, as it would while asleep).
    pub fn announce_wait_for_space(&self, len: usize) -> Result<bool, RingError> {
        self.producer.announce_wait_for_space(len)
    }
}
