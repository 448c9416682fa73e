//! In-process copy bandwidth: the ceiling for any bulk transfer between processes.

use std::hint::black_box;
use std::time::Instant;

use serde::Serialize;

use super::stats::{Bulk, pattern};

/// Copy bandwidth at one size.
#[derive(Debug, Clone, Serialize)]
pub struct MemcpyResult {
    /// `copy_from_slice` between two preallocated, touched buffers.
    pub copy: Bulk,
    /// `src.to_vec()`: a fresh allocation each time, as a framework echo's result must be.
    pub allocating_copy: Bulk,
}

/// Measures `iterations` copies of `size` bytes, both ways (after one untimed copy each).
pub fn measure(size: usize, iterations: usize) -> MemcpyResult {
    let iterations = iterations.max(1);
    let src = pattern(size);
    let mut dst = vec![1u8; size];
    dst.copy_from_slice(&src);
    let start = Instant::now();
    for _ in 0..iterations {
        black_box(&mut dst).copy_from_slice(black_box(&src));
    }
    let copy = Bulk::new(size, iterations, start.elapsed());
    drop(black_box(src.to_vec()));
    let start = Instant::now();
    for _ in 0..iterations {
        drop(black_box(black_box(&src).to_vec()));
    }
    let allocating_copy = Bulk::new(size, iterations, start.elapsed());
    MemcpyResult {
        copy,
        allocating_copy,
    }
}
