//! A single-producer/single-consumer ring of variable-length records in shared memory.
//!
//! ```text
//! control block (RING_CONTROL bytes, each word on its own 128-byte line):
//!   +0    head          u64  bytes consumed, written by the consumer only
//!   +128  tail          u64  bytes published, written by the producer only
//!   +256  reader_sleep  u32  non-zero while the consumer sleeps: 1 futex, 2 eventfd
//!   +384  writer_sleep  u32  non-zero while the producer sleeps for space (futex)
//! data: `capacity` bytes (a power of two); records are 8-aligned and never wrap:
//!   [len u32][kind u32][payload, padded to 8]   kind WRAP (len 0) skips to the end
//! ```
//!
//! `head` and `tail` only grow; a position is the counter modulo the capacity. Each side keeps
//! its own counter locally and never trusts the copy in shared memory: every value read from the
//! peer (its counter, a record header) is validated before use, and a violation is
//! [`RingError::Corrupt`] — the connection fails, nothing is read out of bounds.
//!
//! Wake-ups (no lost wake-up, no needless syscall): a consumer about to sleep stores its
//! mechanism in `reader_sleep`, issues a SeqCst fence and looks at `tail` once more. A producer
//! publishes `tail`, issues a SeqCst fence and looks at `reader_sleep`; only if it is set does it
//! swap it to 0 and wake. One of the two always sees the other's write. The futex sleeper waits
//! on `reader_sleep` with its mechanism as the expected value, so a wake that lands before the
//! consumer reaches the kernel makes the wait return at once. `writer_sleep` is the same
//! protocol in the other direction, for a producer waiting for space.

use super::sync::{AtomicU32, AtomicU64, Ordering, fence};

/// Bytes of a ring's control block.
pub(crate) const RING_CONTROL: usize = 512;
const HEAD: usize = 0;
const TAIL: usize = 128;
/// Offset of the consumer's sleep word in a control block.
pub(crate) const READER_SLEEP: usize = 256;
/// Offset of the producer's sleep word in a control block.
pub(crate) const WRITER_SLEEP: usize = 384;
const RECORD_HEADER: usize = 8;

/// Record kinds.
pub(crate) const KIND_DATA: u32 = 1;
const KIND_WRAP: u32 = 2;
/// A record announcing a message carried by a separately mapped region.
pub(crate) const KIND_LARGE: u32 = 3;

/// `reader_sleep` / `writer_sleep` values: how the sleeper wants to be woken.
pub(crate) const SLEEP_FUTEX: u32 = 1;
/// The sleeper waits on an eventfd passed with the segment.
pub(crate) const SLEEP_EVENTFD: u32 = 2;

/// What a ring access found wrong with the shared memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingError {
    /// The peer wrote something the protocol forbids.
    Corrupt(String),
}

impl std::fmt::Display for RingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingError::Corrupt(why) => write!(f, "shared ring corrupted: {why}"),
        }
    }
}

/// The memory a ring lives in: its control words and its data bytes.
pub(crate) trait RingMemory {
    /// A control word.
    fn word64(&self, offset: usize) -> &AtomicU64;
    /// A control word.
    fn word32(&self, offset: usize) -> &AtomicU32;
    /// Data capacity in bytes: a power of two, at least 64.
    fn capacity(&self) -> usize;
    /// Copies `bytes` into the data area at `pos` (`pos + len <= capacity`).
    fn write(&self, pos: usize, bytes: &[u8]);
    /// Copies from the data area at `pos` into `out` (`pos + out.len() <= capacity`).
    fn read(&self, pos: usize, out: &mut [u8]);
    /// Lets `fill` write `len` bytes of the data area at `pos` in place.
    fn fill<F: FnOnce(&mut [u8])>(&self, pos: usize, len: usize, fill: F) {
        let mut scratch = vec![0u8; len];
        fill(&mut scratch);
        self.write(pos, &scratch);
    }

    /// Appends `len` bytes of the data area at `pos` to `out`.
    #[cfg(not(loom))]
    fn append(&self, pos: usize, len: usize, out: &mut bytes::BytesMut) {
        let start = out.len();
        out.resize(start + len, 0);
        self.read(pos, &mut out[start..]);
    }
}

fn padded(len: usize) -> usize {
    RECORD_HEADER + len.div_ceil(8) * 8
}

/// The largest payload a ring of `capacity` carries in one record; bigger messages go through
/// a separate region.
pub(crate) fn max_inline_payload(capacity: usize) -> usize {
    // A quarter of the ring keeps room for other records; tiny test rings allow a little more.
    (capacity / 4).max(32) - RECORD_HEADER
}

/// Who must be woken after a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Nobody sleeps.
    Nobody,
    /// A sleeper on the futex word.
    Futex,
    /// A sleeper on the eventfd.
    EventFd,
}

/// Swaps a sleep word to 0 if a sleeper announced itself, returning how to wake it.
fn take_sleeper(word: &AtomicU32) -> Wake {
    fence(Ordering::SeqCst);
    if word.load(Ordering::Relaxed) == 0 {
        return Wake::Nobody;
    }
    match word.swap(0, Ordering::AcqRel) {
        0 => Wake::Nobody,
        SLEEP_EVENTFD => Wake::EventFd,
        // Any other value a peer wrote is treated as a futex sleeper: a spare wake is harmless.
        _ => Wake::Futex,
    }
}

/// The writing end.
pub(crate) struct Producer<M: RingMemory> {
    mem: M,
    tail: u64,
}

impl<M: RingMemory> Producer<M> {
    /// The producer of a freshly initialised ring (counters zero).
    pub(crate) fn new(mem: M) -> Self {
        Producer { mem, tail: 0 }
    }

    fn free_space(&self) -> Result<usize, RingError> {
        let head = self.mem.word64(HEAD).load(Ordering::Acquire);
        let used = self.tail.wrapping_sub(head);
        let capacity = self.mem.capacity() as u64;
        if head > self.tail || used > capacity {
            return Err(RingError::Corrupt(format!(
                "consumer position {head} is outside [{}, {}]",
                self.tail.saturating_sub(capacity),
                self.tail
            )));
        }
        Ok((capacity - used) as usize)
    }

    /// Bytes a record of `len` payload bytes takes at the current position, wrap padding
    /// included.
    fn needed(&self, len: usize) -> usize {
        let capacity = self.mem.capacity();
        let record = padded(len);
        let to_end = capacity - (self.tail % capacity as u64) as usize;
        if record <= to_end {
            record
        } else {
            to_end + record
        }
    }

    /// Whether a record of `len` payload bytes fits now.
    pub(crate) fn has_room(&self, len: usize) -> Result<bool, RingError> {
        Ok(self.needed(len) <= self.free_space()?)
    }

    /// Publishes one record made of `parts` if there is room; `Ok(None)` when the ring is full.
    /// The payload must be at most [`max_inline_payload`].
    pub(crate) fn try_push(
        &mut self,
        kind: u32,
        parts: &[&[u8]],
    ) -> Result<Option<Wake>, RingError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.try_push_with(kind, len, |out| {
            let mut at = 0;
            for part in parts {
                out[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
        })
    }

    /// Publishes one record of `len` payload bytes that `fill` writes in place, if there is
    /// room (`fill` is not called otherwise); `Ok(None)` when the ring is full.
    pub(crate) fn try_push_with(
        &mut self,
        kind: u32,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Option<Wake>, RingError> {
        let capacity = self.mem.capacity();
        assert!(
            len <= max_inline_payload(capacity),
            "record of {len} bytes too big for the ring"
        );
        let record = padded(len);
        if self.needed(len) > self.free_space()? {
            return Ok(None);
        }
        let pos = (self.tail % capacity as u64) as usize;
        let mut at = pos;
        if record > capacity - pos {
            self.write_header(pos, 0, KIND_WRAP);
            self.tail += (capacity - pos) as u64;
            at = 0;
        }
        self.write_header(at, len as u32, kind);
        self.mem.fill(at + RECORD_HEADER, len, fill);
        self.tail += record as u64;
        self.mem.word64(TAIL).store(self.tail, Ordering::Release);
        Ok(Some(take_sleeper(self.mem.word32(READER_SLEEP))))
    }

    fn write_header(&self, pos: usize, len: u32, kind: u32) {
        let mut header = [0u8; RECORD_HEADER];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..].copy_from_slice(&kind.to_le_bytes());
        self.mem.write(pos, &header);
    }

    /// Announces that the producer will sleep until the consumer frees space. Returns `false`
    /// (and withdraws the announcement) if `record_len` bytes of payload fit already.
    pub(crate) fn announce_wait_for_space(&self, payload_len: usize) -> Result<bool, RingError> {
        let word = self.mem.word32(WRITER_SLEEP);
        word.store(SLEEP_FUTEX, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        // Worst case: wrap padding plus the record.
        let worst = padded(payload_len) * 2;
        if self.free_space()? >= worst.min(self.mem.capacity()) {
            word.store(0, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    /// The word a producer waiting for space sleeps on.
    pub(crate) fn space_word(&self) -> &AtomicU32 {
        self.mem.word32(WRITER_SLEEP)
    }

    /// The word the consumer sleeps on (for a futex wake after a publish).
    pub(crate) fn reader_word(&self) -> &AtomicU32 {
        self.mem.word32(READER_SLEEP)
    }
}

/// A record found by [`Consumer::peek`], not yet consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// The record kind.
    pub(crate) kind: u32,
    /// Payload length.
    pub(crate) len: usize,
    pos: usize,
}

/// The reading end.
pub(crate) struct Consumer<M: RingMemory> {
    mem: M,
    head: u64,
}

impl<M: RingMemory> Consumer<M> {
    /// The consumer of a freshly initialised ring (counters zero).
    pub(crate) fn new(mem: M) -> Self {
        Consumer { mem, head: 0 }
    }

    fn published(&self) -> Result<u64, RingError> {
        let tail = self.mem.word64(TAIL).load(Ordering::Acquire);
        let capacity = self.mem.capacity() as u64;
        if tail < self.head || tail - self.head > capacity {
            return Err(RingError::Corrupt(format!(
                "producer position {tail} is outside [{}, {}]",
                self.head,
                self.head + capacity
            )));
        }
        Ok(tail - self.head)
    }

    /// Bytes consumed so far: this side's own count, never read back from shared memory.
    #[cfg(not(loom))]
    pub(crate) fn position(&self) -> u64 {
        self.head
    }

    /// Whether a record is waiting (without validating it).
    pub(crate) fn has_data(&self) -> Result<bool, RingError> {
        Ok(self.published()? > 0)
    }

    /// The next record, validated, or `None` if the ring is empty. Wrap records are skipped.
    pub(crate) fn peek(&mut self) -> Result<Option<Record>, RingError> {
        let capacity = self.mem.capacity();
        loop {
            let available = self.published()? as usize;
            if available == 0 {
                return Ok(None);
            }
            let pos = (self.head % capacity as u64) as usize;
            let to_end = capacity - pos;
            if available < RECORD_HEADER {
                return Err(RingError::Corrupt(format!(
                    "{available} published bytes cannot hold a record header"
                )));
            }
            let mut header = [0u8; RECORD_HEADER];
            self.mem.read(pos, &mut header);
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let kind = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
            match kind {
                KIND_WRAP if len == 0 && to_end <= available => {
                    self.advance(to_end);
                }
                KIND_DATA | KIND_LARGE
                    if len <= max_inline_payload(capacity)
                        && padded(len) <= to_end
                        && padded(len) <= available =>
                {
                    return Ok(Some(Record { kind, len, pos }));
                }
                _ => {
                    return Err(RingError::Corrupt(format!(
                        "record header (len {len}, kind {kind}) at {pos} is invalid with {available} bytes published"
                    )));
                }
            }
        }
    }

    /// Copies the payload of `record` into `out` (whose length must be `record.len`).
    pub(crate) fn read(&self, record: &Record, out: &mut [u8]) {
        assert_eq!(out.len(), record.len);
        self.mem.read(record.pos + RECORD_HEADER, out);
    }

    /// Appends the payload of `record` to `out`.
    #[cfg(not(loom))]
    pub(crate) fn append(&self, record: &Record, out: &mut bytes::BytesMut) {
        self.mem.append(record.pos + RECORD_HEADER, record.len, out);
    }

    /// Consumes `record` (returned by the last `peek`), freeing its space; returns whom to wake.
    pub(crate) fn consume(&mut self, record: Record) -> Wake {
        self.advance(padded(record.len));
        take_sleeper(self.mem.word32(WRITER_SLEEP))
    }

    fn advance(&mut self, bytes: usize) {
        self.head += bytes as u64;
        self.mem.word64(HEAD).store(self.head, Ordering::Release);
    }

    /// Announces that the consumer will sleep with mechanism `how`. Returns `false` (and
    /// withdraws the announcement) if data arrived meanwhile.
    pub(crate) fn announce_sleep(&self, how: u32) -> Result<bool, RingError> {
        let word = self.mem.word32(READER_SLEEP);
        word.store(how, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.published()? > 0 {
            word.store(0, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    /// Withdraws a sleep announcement after waking.
    pub(crate) fn end_sleep(&self) {
        self.mem.word32(READER_SLEEP).store(0, Ordering::Relaxed);
    }

    /// The word a futex sleeper waits on.
    pub(crate) fn sleep_word(&self) -> &AtomicU32 {
        self.mem.word32(READER_SLEEP)
    }

    /// The word the producer sleeps on while waiting for space.
    pub(crate) fn writer_word(&self) -> &AtomicU32 {
        self.mem.word32(WRITER_SLEEP)
    }
}

#[cfg(not(loom))]
pub(crate) use region_memory::RegionRing;

#[cfg(not(loom))]
mod region_memory {
    use std::sync::Arc;

    use super::{RING_CONTROL, RingMemory};
    use crate::shm::region::Region;
    use crate::shm::sync::{AtomicU32, AtomicU64};

    /// A ring inside a shared [`Region`]: control block at `base`, data right after.
    #[derive(Clone)]
    pub(crate) struct RegionRing {
        region: Arc<Region>,
        base: usize,
        capacity: usize,
    }

    impl RegionRing {
        /// The ring at `base` with `capacity` data bytes (must fit the region; panics otherwise).
        pub(crate) fn new(region: Arc<Region>, base: usize, capacity: usize) -> Self {
            assert!(capacity.is_power_of_two() && capacity >= 64);
            assert!(base.is_multiple_of(128) && base + RING_CONTROL + capacity <= region.len());
            RegionRing {
                region,
                base,
                capacity,
            }
        }
    }

    impl RingMemory for RegionRing {
        fn word64(&self, offset: usize) -> &AtomicU64 {
            self.region.atomic_u64(self.base + offset)
        }

        fn word32(&self, offset: usize) -> &AtomicU32 {
            self.region.atomic_u32(self.base + offset)
        }

        fn capacity(&self) -> usize {
            self.capacity
        }

        fn write(&self, pos: usize, bytes: &[u8]) {
            assert!(pos + bytes.len() <= self.capacity);
            self.region.write(self.base + RING_CONTROL + pos, bytes);
        }

        fn read(&self, pos: usize, out: &mut [u8]) {
            assert!(pos + out.len() <= self.capacity);
            self.region.read(self.base + RING_CONTROL + pos, out);
        }

        fn append(&self, pos: usize, len: usize, out: &mut bytes::BytesMut) {
            assert!(pos + len <= self.capacity);
            self.region
                .append_to(self.base + RING_CONTROL + pos, len, out);
        }

        fn fill<F: FnOnce(&mut [u8])>(&self, pos: usize, len: usize, fill: F) {
            assert!(pos + len <= self.capacity);
            self.region
                .with_slice_mut(self.base + RING_CONTROL + pos, len, fill);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_memory {
    //! Ring memory on the heap, for unit tests and the loom model. Data is kept in 8-byte
    //! cells so loom checks that every read of a cell happens after the write it depends on.

    use super::RingMemory;
    use crate::shm::sync::{AtomicU32, AtomicU64};

    #[cfg(loom)]
    use loom::cell::UnsafeCell;
    #[cfg(not(loom))]
    use std::cell::UnsafeCell;

    /// Heap-backed ring memory.
    pub(crate) struct HeapRing {
        words64: [AtomicU64; 2],
        words32: [AtomicU32; 2],
        cells: Vec<UnsafeCell<[u8; 8]>>,
    }

    // SAFETY: cells are only accessed under the ring protocol, which the tests (and loom)
    // check; the atomics are Sync.
    unsafe impl Sync for HeapRing {}

    impl HeapRing {
        pub(crate) fn new(capacity: usize) -> Self {
            HeapRing {
                words64: [AtomicU64::new(0), AtomicU64::new(0)],
                words32: [AtomicU32::new(0), AtomicU32::new(0)],
                cells: (0..capacity / 8).map(|_| UnsafeCell::new([0; 8])).collect(),
            }
        }

        fn with_cell<R>(&self, index: usize, f: impl FnOnce(*mut [u8; 8]) -> R) -> R {
            #[cfg(loom)]
            return self.cells[index].with_mut(f);
            #[cfg(not(loom))]
            return f(self.cells[index].get());
        }
    }

    impl RingMemory for &HeapRing {
        fn word64(&self, offset: usize) -> &AtomicU64 {
            &self.words64[offset / 128]
        }

        fn word32(&self, offset: usize) -> &AtomicU32 {
            &self.words32[offset / 128 - 2]
        }

        fn capacity(&self) -> usize {
            self.cells.len() * 8
        }

        fn write(&self, pos: usize, bytes: &[u8]) {
            for (i, byte) in bytes.iter().enumerate() {
                let at = pos + i;
                // SAFETY: the ring protocol gives the producer this cell alone until publish.
                self.with_cell(at / 8, |cell| unsafe { (*cell)[at % 8] = *byte });
            }
        }

        fn read(&self, pos: usize, out: &mut [u8]) {
            for (i, byte) in out.iter_mut().enumerate() {
                let at = pos + i;
                // SAFETY: the producer published this cell before the consumer reads it.
                *byte = self.with_cell(at / 8, |cell| unsafe { (*cell)[at % 8] });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::test_memory::HeapRing;
    use super::*;

    fn pop(consumer: &mut Consumer<&HeapRing>) -> Option<Vec<u8>> {
        let record = consumer.peek().unwrap()?;
        let mut out = vec![0; record.len];
        consumer.read(&record, &mut out);
        consumer.consume(record);
        Some(out)
    }

    #[test]
    fn records_wrap_and_keep_their_order() {
        let memory = HeapRing::new(256);
        let mut producer = Producer::new(&memory);
        let mut consumer = Consumer::new(&memory);
        for round in 0..50u8 {
            let message: Vec<u8> = (0..(round as usize % 40))
                .map(|i| i as u8 ^ round)
                .collect();
            assert!(producer.try_push(KIND_DATA, &[&message]).unwrap().is_some());
            assert_eq!(pop(&mut consumer).unwrap(), message);
        }
        assert_eq!(pop(&mut consumer), None);
    }

    #[test]
    fn a_full_ring_refuses_without_losing_anything() {
        let memory = HeapRing::new(256);
        let mut producer = Producer::new(&memory);
        let mut consumer = Consumer::new(&memory);
        let mut pushed = 0u8;
        while producer
            .try_push(KIND_DATA, &[&[pushed; 24]])
            .unwrap()
            .is_some()
        {
            pushed += 1;
        }
        assert_eq!(pushed as usize, 256 / 32);
        for expected in 0..pushed {
            assert_eq!(pop(&mut consumer).unwrap(), vec![expected; 24]);
        }
        assert!(producer.try_push(KIND_DATA, &[&[9; 24]]).unwrap().is_some());
    }

    #[test]
    fn a_sleeper_is_woken_once_and_only_when_announced() {
        let memory = HeapRing::new(256);
        let mut producer = Producer::new(&memory);
        let consumer = Consumer::new(&memory);
        assert_eq!(
            producer.try_push(KIND_DATA, &[b"a"]).unwrap(),
            Some(Wake::Nobody)
        );
        assert!(
            !consumer.announce_sleep(SLEEP_EVENTFD).unwrap(),
            "data is waiting"
        );
        let mut consumer = consumer;
        pop(&mut consumer);
        assert!(consumer.announce_sleep(SLEEP_EVENTFD).unwrap());
        assert_eq!(
            producer.try_push(KIND_DATA, &[b"b"]).unwrap(),
            Some(Wake::EventFd)
        );
        assert_eq!(
            producer.try_push(KIND_DATA, &[b"c"]).unwrap(),
            Some(Wake::Nobody)
        );
    }

    #[test]
    fn garbage_from_the_peer_is_corruption_not_a_crash() {
        let memory = HeapRing::new(256);
        let mut producer = Producer::new(&memory);
        let mut consumer = Consumer::new(&memory);
        producer.try_push(KIND_DATA, &[b"hello"]).unwrap();
        // A tail beyond the capacity.
        (&memory).word64(TAIL).store(10_000, Ordering::Relaxed);
        assert!(matches!(consumer.peek(), Err(RingError::Corrupt(_))));
        // A record header claiming more than was published.
        (&memory).word64(TAIL).store(16, Ordering::Relaxed);
        (&memory).write(0, &[200, 0, 0, 0, 1, 0, 0, 0]);
        assert!(matches!(consumer.peek(), Err(RingError::Corrupt(_))));
        // An unknown kind.
        (&memory).write(0, &[1, 0, 0, 0, 77, 0, 0, 0]);
        assert!(matches!(consumer.peek(), Err(RingError::Corrupt(_))));
        // A head that runs ahead of the producer.
        (&memory).word64(HEAD).store(1 << 40, Ordering::Relaxed);
        assert!(matches!(
            producer.try_push(KIND_DATA, &[b"x"]),
            Err(RingError::Corrupt(_))
        ));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p rpc-transport --lib --release shm::ring`

    use super::test_memory::HeapRing;
    use super::*;
    use loom::sync::Arc;

    #[test]
    fn every_record_arrives_whole_and_in_order() {
        loom::model(|| {
            // 24-byte records in a 64-byte ring: the third wraps, and the ring fills.
            let memory = Arc::new(HeapRing::new(64));
            let producer_memory = memory.clone();
            let producer = loom::thread::spawn(move || {
                let mut producer = Producer::new(&*producer_memory);
                for i in 0..3u8 {
                    while producer.try_push(KIND_DATA, &[&[i; 16]]).unwrap().is_none() {
                        loom::thread::yield_now();
                    }
                }
            });
            let mut consumer = Consumer::new(&*memory);
            for i in 0..3u8 {
                let record = loop {
                    if let Some(record) = consumer.peek().unwrap() {
                        break record;
                    }
                    loom::thread::yield_now();
                };
                let mut out = [0u8; 16];
                consumer.read(&record, &mut out);
                assert_eq!(out, [i; 16]);
                consumer.consume(record);
            }
            producer.join().unwrap();
        });
    }

    #[test]
    fn a_consumer_going_to_sleep_is_never_missed() {
        loom::model(|| {
            let memory = Arc::new(HeapRing::new(64));
            let woken = Arc::new(loom::sync::atomic::AtomicBool::new(false));
            let (producer_memory, producer_woken) = (memory.clone(), woken.clone());
            let producer = loom::thread::spawn(move || {
                let mut producer = Producer::new(&*producer_memory);
                let wake = producer.try_push(KIND_DATA, &[b"x"]).unwrap().unwrap();
                if wake != Wake::Nobody {
                    producer_woken.store(true, Ordering::SeqCst);
                }
            });
            let consumer = Consumer::new(&*memory);
            if consumer.announce_sleep(SLEEP_FUTEX).unwrap() {
                // We would sleep now: the producer must either wake us, or have published
                // before our re-check (then announce_sleep would have said false).
                producer.join().unwrap();
                assert!(
                    woken.load(Ordering::SeqCst),
                    "the consumer slept through a publish"
                );
            } else {
                assert!(consumer.has_data().unwrap());
                producer.join().unwrap();
            }
        });
    }
}
