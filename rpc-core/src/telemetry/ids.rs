//! New trace and span ids: unpredictable enough to be unique, without a random-number crate.
//!
//! Each thread keys a SipHash (std's `RandomState`, seeded from the OS) once and hashes a
//! process-wide counter with it: no two calls share an input, and the keys make outputs that
//! are not guessable from one another.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static KEYS: RandomState = RandomState::new();
}

/// A new non-zero 64-bit value.
fn next_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut hasher = KEYS.with(|keys| keys.build_hasher());
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        let value = hasher.finish();
        if value != 0 {
            return value;
        }
    }
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
