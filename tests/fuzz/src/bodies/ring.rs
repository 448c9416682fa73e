//! Target `shm_ring`: the shared-memory ring's consumer over memory a hostile peer writes.
//!
//! Input: `[capacity selector][op...]`. The ring (64 to 512 data bytes, in a real memfd
//! mapping) starts zeroed; each op is a byte (`op % 9`) followed by its operands:
//! - 0: take a record (validate, copy out, consume), as the receiver does;
//! - 1: peek at the next record; 2: ask whether data is published;
//! - 3 OFF LEN BYTES: overwrite `LEN % 33` bytes anywhere in the region (control or data);
//! - 4 D D: publish `tail = consumer's head + D` (u16), a position the consumer may accept;
//! - 5 8 BYTES: publish any `tail`; 6 8 BYTES: overwrite the consumer's `head` word;
//! - 7 K LEN: the real producer pushes a record (kind DATA or LARGE) of `LEN` bytes;
//! - 8 HOW: the consumer announces a sleep of kind `HOW` (and withdraws it); the producer
//!   announces it waits for room.
//!
//! Nothing may panic or leave the mapping; every accepted record must have a valid kind and
//! length. As long as only the producer has written (no op 3 to 6), what comes out must be
//! exactly what went in, in order, and no error may occur.

use std::collections::VecDeque;

use rpc_core::transport::fuzzing::{HostileRing, RING_CONTROL, RingRecord};

const KIND_DATA: u32 = 1;
const KIND_LARGE: u32 = 3;

/// A cursor over the input's bytes; missing bytes read as zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut word = [0u8; 8];
        for byte in &mut word {
            *byte = self.byte();
        }
        u64::from_le_bytes(word)
    }
}

/// Runs one input; see the module docs.
pub fn shm_ring(data: &[u8]) {
    let mut input = Input(data);
    let capacity = 64usize << (input.byte() & 3);
    let mut ring = HostileRing::new(capacity).expect("a memfd region");
    assert_eq!(ring.region_len(), RING_CONTROL + capacity);
    // What the producer pushed and the consumer has not taken, while nobody else wrote.
    let mut clean = true;
    let mut pushed: VecDeque<(u32, Vec<u8>)> = VecDeque::new();
    while !input.0.is_empty() {
        match input.byte() % 9 {
            0 => match ring.take() {
                Ok(Some((record, payload))) => {
                    check(&ring, record);
                    assert_eq!(payload.len(), record.len);
                    if clean {
                        let expected = pushed.pop_front().expect("a record nobody pushed");
                        assert_eq!((record.kind, payload), expected, "records out of order");
                    }
                }
                Ok(None) => assert!(!clean || pushed.is_empty(), "a pushed record was lost"),
                Err(error) => assert!(!clean, "clean ring reported {error}"),
            },
            1 => match ring.peek() {
                Ok(Some(record)) => {
                    check(&ring, record);
                    if clean {
                        let expected = pushed.front().expect("a record nobody pushed");
                        assert_eq!((record.kind, record.len), (expected.0, expected.1.len()));
                    }
                }
                Ok(None) => assert!(!clean || pushed.is_empty(), "a pushed record was lost"),
                Err(error) => assert!(!clean, "clean ring reported {error}"),
            },
            2 => {
                let has = ring.has_data();
                assert!(!clean || has == Ok(!pushed.is_empty()), "has_data: {has:?}");
            }
            3 => {
                let offset = usize::from(input.u16()) % ring.region_len();
                let len = usize::from(input.byte()) % 33;
                ring.scribble(offset, input.bytes(len));
                clean = false;
            }
            4 => {
                let delta = u64::from(input.u16());
                ring.store_tail(ring.consumer_head().wrapping_add(delta));
                clean = false;
            }
            5 => {
                ring.store_tail(input.u64());
                clean = false;
            }
            6 => {
                ring.store_head(input.u64());
                clean = false;
            }
            7 => {
                let kind = if input.byte() & 1 == 0 {
                    KIND_DATA
                } else {
                    KIND_LARGE
                };
                let len = usize::from(input.byte()).min(ring.max_inline_payload());
                let payload: Vec<u8> = (0..len).map(|i| i as u8 ^ kind as u8).collect();
                match ring.push(kind, &payload) {
                    Ok(true) if clean => pushed.push_back((kind, payload)),
                    Ok(_) => {}
                    Err(error) => assert!(!clean, "clean ring refused a push: {error}"),
                }
            }
            _ => {
                let how = u32::from(input.byte());
                let slept = ring.announce_sleep(how);
                assert!(
                    !clean || slept == Ok(pushed.is_empty()),
                    "announce_sleep: {slept:?}"
                );
                let wait = ring.announce_wait_for_space(usize::from(input.byte()));
                assert!(!clean || wait.is_ok(), "announce_wait_for_space: {wait:?}");
            }
        }
    }
}

/// A record the consumer accepted has a kind it knows and fits a record slot.
fn check(ring: &HostileRing, record: RingRecord) {
    assert!(
        record.kind == KIND_DATA || record.kind == KIND_LARGE,
        "accepted kind {}",
        record.kind
    );
    assert!(
        record.len <= ring.max_inline_payload(),
        "accepted a {}-byte record",
        record.len
    );
}
