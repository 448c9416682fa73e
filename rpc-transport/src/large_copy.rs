//! Large copies that avoid `rep movsb`'s page-aliasing stall.
//!
//! glibc copies a large block with `rep movsb`. On the x86 CPUs this project is measured on,
//! that runs about 12 times slower when the destination lies just ahead of the source modulo
//! a 4 KiB page (`(dst - src) mod 4096` in 1..64): 1 MiB moved in 64 KiB pieces at ~3.2 GB/s
//! to `src + 8`, against ~38-45 GB/s at other offsets. A large message's payload sits wherever
//! its encoding puts it (after a header whose varints grow with the call id), so its copies
//! were fast or slow by the luck of two addresses. Copied in 2 KiB pieces, glibc uses its
//! vector loop instead (~37 GB/s at the bad offsets), so that is what happens there; every
//! other copy is one `memcpy`.
//!
//! [`copy_streaming`] is one of the two ways to write bytes another CPU reads next (a large
//! shared-memory message): it writes with non-temporal stores, so they go to memory rather
//! than sit modified in this CPU's cache for the reader to fetch line by line from it. On the
//! 2-vCPU machines here, fetching modified lines from the other CPU's cache runs at ~10 GB/s
//! at some times and at ~1-2 GB/s at others (a 1 MiB hand-over took 95-100 µs or 360-890 µs,
//! by minute, in a plain C test as in this crate's benchmark); with non-temporal stores it
//! took 92-108 µs either way. At yet other times ordinary stores win by twice. So a large
//! message's sender picks between the two by measuring (`shm/store_choice.rs`).

/// Below this, a copy is left to `memcpy` as it is (glibc does not use `rep movsb` for it).
const WORTH_CHECKING: usize = 4096;
/// `(dst - src) mod PAGE` under this is the stalling case.
const ALIASING: usize = 64;
const PAGE: usize = 4096;
/// The piece size that keeps glibc on its vector loop.
const PIECE: usize = 2048;

/// Whether one `memcpy` of `len` bytes from `src` to `dst` would stall.
fn aliased(src: usize, dst: usize, len: usize) -> bool {
    len >= WORTH_CHECKING && (dst.wrapping_sub(src) % PAGE).wrapping_sub(1) < ALIASING - 1
}

/// `dst.copy_from_slice(src)`, in pieces where one `memcpy` would stall (see the module
/// docs). Panics if the lengths differ.
pub(crate) fn copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy: lengths differ");
    // SAFETY: both slices are valid for their (equal) length, and a `&mut` slice cannot
    // overlap a shared one.
    unsafe { copy_raw(src.as_ptr(), dst.as_mut_ptr(), dst.len()) }
}

/// Below this, [`copy_streaming`] copies as [`copy`] does (the sfence and the miss the reader
/// takes on a line not in any cache cost more than they save on a few lines).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const STREAM_MIN: usize = 16 * 1024;

/// `dst.copy_from_slice(src)` with non-temporal stores, for a large destination another CPU
/// reads next (see the module docs); every store is globally visible in order with later
/// stores when this returns (an `sfence`), so a `Release` store after it publishes the bytes.
/// Falls back to [`copy`] when small or off x86_64. Panics if the lengths differ.
pub(crate) fn copy_streaming(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if dst.len() >= STREAM_MIN {
        stream_x86_64(dst, src);
        return;
    }
    copy(dst, src)
}

#[cfg(target_arch = "x86_64")]
fn stream_x86_64(dst: &mut [u8], src: &[u8]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    const LANE: usize = 16;
    let head = dst.as_ptr().align_offset(LANE).min(dst.len());
    let body = (dst.len() - head) / LANE * LANE;
    dst[..head].copy_from_slice(&src[..head]);
    let mut at = head;
    while at < head + body {
        // SAFETY: SSE2 is part of every x86_64 CPU. `at + LANE <= head + body <= len` for both
        // slices (same length); the load is unaligned, the store's address is 16-aligned
        // (`dst + head` is, and `at - head` is a multiple of 16), as `_mm_stream_si128` needs.
        unsafe {
            let lane = _mm_loadu_si128(src.as_ptr().add(at).cast::<__m128i>());
            _mm_stream_si128(dst.as_mut_ptr().add(at).cast::<__m128i>(), lane);
        }
        at += LANE;
    }
    dst[at..].copy_from_slice(&src[at..]);
    // SAFETY: SSE is part of every x86_64 CPU; the fence only orders this thread's stores.
    unsafe { _mm_sfence() };
}

/// [`copy`] between raw pointers (the one place its pieces are cut).
///
/// # Safety
/// As [`std::ptr::copy_nonoverlapping`]: `src` valid for `len` reads, `dst` for `len` writes,
/// the two not overlapping.
pub(crate) unsafe fn copy_raw(src: *const u8, dst: *mut u8, len: usize) {
    let step = if aliased(src as usize, dst as usize, len) {
        PIECE
    } else {
        len.max(1)
    };
    let mut at = 0;
    while at < len {
        let n = step.min(len - at);
        // SAFETY: `at + n <= len`, so both ranges lie within the caller's `len` bytes, which
        // the caller guarantees valid and not overlapping.
        unsafe { std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), n) };
        at += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stalling_offsets_are_a_destination_just_ahead_of_the_source_within_a_page() {
        assert!(aliased(0, 8, WORTH_CHECKING));
        assert!(aliased(4096 + 56, 2 * 4096 + 64 + 48, 1 << 20));
        assert!(aliased(100, 100 + 63, 1 << 20));
        assert!(!aliased(0, 0, 1 << 20), "same offset");
        assert!(!aliased(8, 0, 1 << 20), "destination behind");
        assert!(!aliased(0, 64, 1 << 20), "a line ahead");
        assert!(!aliased(0, 8, WORTH_CHECKING - 1), "small");
    }

    #[test]
    fn copies_every_byte_at_every_offset_and_length() {
        let src: Vec<u8> = (0..3 * PAGE).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 63, PIECE + 1, WORTH_CHECKING, 2 * WORTH_CHECKING + 5] {
            for offset in [0, 1, 8, 63, 64, 100] {
                let mut dst = vec![0u8; len + 128];
                copy(&mut dst[offset..offset + len], &src[..len]);
                assert_eq!(
                    &dst[offset..offset + len],
                    &src[..len],
                    "len {len} +{offset}"
                );
                assert!(dst[..offset].iter().all(|&b| b == 0), "nothing before");
                assert!(dst[offset + len..].iter().all(|&b| b == 0), "nothing after");

                let mut raw = vec![0u8; len + 128];
                // SAFETY: both ranges are in bounds of their own vectors, which do not overlap.
                unsafe { copy_raw(src.as_ptr(), raw.as_mut_ptr().add(offset), len) };
                assert_eq!(
                    &raw[offset..offset + len],
                    &src[..len],
                    "raw len {len} +{offset}"
                );
            }
        }
    }

    #[test]
    fn streaming_copies_every_byte_at_every_offset_and_length() {
        let src: Vec<u8> = (0..3 * STREAM_MIN).map(|i| (i * 13 + 5) as u8).collect();
        for len in [
            0,
            15,
            STREAM_MIN - 1,
            STREAM_MIN,
            STREAM_MIN + 17,
            2 * STREAM_MIN + 9,
        ] {
            for (from, offset) in [(0, 0), (1, 0), (0, 1), (3, 15), (16, 31)] {
                let mut dst = vec![0u8; len + 64];
                copy_streaming(&mut dst[offset..offset + len], &src[from..from + len]);
                assert_eq!(
                    &dst[offset..offset + len],
                    &src[from..from + len],
                    "{len} {offset}"
                );
                assert!(dst[..offset].iter().all(|&b| b == 0), "nothing before");
                assert!(dst[offset + len..].iter().all(|&b| b == 0), "nothing after");
            }
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn refuses_different_lengths() {
        copy(&mut [0u8; 4], &[1u8; 5]);
    }
}
