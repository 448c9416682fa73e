//! New trace and span ids: unpredictable enough to be unique, without a random-number crate.
//!
//! Each thread seeds a SplitMix64 sequence once from a SipHash keyed by the OS (std's
//! `RandomState`): ids are unique within a thread's sequence and unrelated across threads.
//! They identify spans; they are not secrets.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// Each thread's generator state: seeded once from a SipHash keyed by the OS (std's
    /// `RandomState`) over a process-wide counter, so no two threads start alike.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    static THREADS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(THREADS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A new non-zero 64-bit value: the thread's SplitMix64 sequence (a few instructions per id).
fn next_u64() -> u64 {
    STATE.with(|state| {
        loop {
            let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(next);
            let mut z = next;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            if z != 0 {
                return z;
            }
        }
    })
}

/// A new trace id (never all zeros).
pub(crate) fn trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next_u64().to_be_bytes());
    id[8..].copy_from_slice(&next_u64().to_be_bytes());
    id
}

/// A new span id (never all zeros).
pub(crate) fn span_id() -> [u8; 8] {
    next_u64().to_be_bytes()
}
