//! How an encoder that writes a large message in place tells the receiver how far it got, so
//! the receiver copies the message out while the rest is still being written.
//!
//! A large shared-memory message is announced to the peer *before* its bulk region is filled
//! (see `bulk.rs`), and the region's header carries a progress word: the number of payload
//! bytes that are final. The transport stores the final value itself once the fill returns, so
//! any fill works; a fill that also reports progress on the way lets the receiver's copy-out
//! run beside the sender's copy-in (on two cores, a one-way transfer then costs about one copy
//! instead of two).
//!
//! A fill reports progress through the two functions here, which find the fill running on
//! this thread by a thread-local that the transport sets for the duration of the fill. Called
//! from anywhere else (a ring fill, a `Vec`, another transport) they are plain copies and
//! no-ops, so an encoder can use them unconditionally.
//!
//! **The contract** a fill accepts by calling them: everything it writes before the point it
//! reports is final, except the first [`REWRITABLE_PREFIX`] bytes of the message, which it may
//! still rewrite until it returns (a frame header patched after its body, say). The receiver
//! copies that prefix last, after the fill has returned.

use std::cell::RefCell;
use std::sync::Arc;

use super::region::Region;
use super::store_choice::Stores;
use super::sync::Ordering;

/// Bytes at the start of a message that a fill may rewrite until it returns: the receiver
/// copies them only once the whole message is final.
pub const REWRITABLE_PREFIX: usize = 64;

/// Progress is published at least every this many bytes of a [`copy_in_place`]: small enough
/// that the receiver trails the sender by little, large enough that the cache line holding
/// the progress word moves between the cores rarely.
pub(crate) const PROGRESS_CHUNK: usize = 64 * 1024;

/// The fill running on this thread, if it writes into a bulk region.
struct Filling {
    /// Address of the first payload byte.
    start: usize,
    /// Payload length.
    len: usize,
    /// The region, whose header holds the progress word.
    region: Arc<Region>,
    /// Offset of the progress word in `region`.
    word: usize,
    /// The last progress stored (progress only moves forward).
    published: usize,
    /// How the chunks are written (`store_choice.rs`).
    stores: Stores,
}

thread_local! {
    static FILLING: RefCell<Option<Filling>> = const { RefCell::new(None) };
}

/// Marks the fill of a bulk region on this thread; the previous mark (none, unless a fill
/// sends another large message) comes back when this is dropped.
pub(crate) struct FillScope {
    previous: Option<Filling>,
}

impl FillScope {
    /// The fill of `payload` (the `len` bytes at address `start`) reports progress into the
    /// `u64` at offset `word` of `region`; [`copy_in_place`] writes it with `stores`.
    pub(crate) fn enter(
        start: usize,
        len: usize,
        region: Arc<Region>,
        word: usize,
        stores: Stores,
    ) -> FillScope {
        let filling = Filling {
            start,
            len,
            region,
            word,
            published: 0,
            stores,
        };
        FillScope {
            previous: FILLING.with(|f| f.borrow_mut().replace(filling)),
        }
    }
}

impl Drop for FillScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        FILLING.with(|f| *f.borrow_mut() = previous);
    }
}

/// Copies `src` into `out` (of the same length; panics otherwise, like
/// [`slice::copy_from_slice`]). When `out` lies in a large shared-memory message being
/// filled on this thread, the copy goes in chunks and each chunk, once written, is reported
/// to the receiver, which can copy it out at once: every byte of the message before the end
/// of the chunk must then be final (see the module's contract; an encoder that writes in
/// order, as postcard does, meets it). Anywhere else, a plain copy.
pub fn copy_in_place(out: &mut [u8], src: &[u8]) {
    assert_eq!(
        out.len(),
        src.len(),
        "copy_in_place: destination and source lengths differ"
    );
    let Some(stores) = filling(out) else {
        crate::large_copy::copy(out, src);
        return;
    };
    for (out, src) in out
        .chunks_mut(PROGRESS_CHUNK)
        .zip(src.chunks(PROGRESS_CHUNK))
    {
        // The receiver, on another CPU as a rule, reads these bytes next: written the way
        // that has lately let it do so faster.
        match stores {
            Stores::Streaming => crate::large_copy::copy_streaming(out, src),
            Stores::Cached => crate::large_copy::copy(out, src),
        }
        mark_written(out);
    }
}

/// Tells the receiver of the large shared-memory message being filled on this thread that
/// every byte of it up to the end of `done` is final (see the module's contract). A no-op when
/// `done` does not end inside such a message (an empty `done` counts by its address).
pub fn mark_written(done: &[u8]) {
    let end = done.as_ptr() as usize + done.len();
    FILLING.with(|f| {
        let mut filling = f.borrow_mut();
        let Some(filling) = filling.as_mut() else {
            return;
        };
        let Some(upto) = end.checked_sub(filling.start) else {
            return;
        };
        if upto > filling.len || upto <= filling.published {
            return;
        }
        filling.published = upto;
        filling
            .region
            .atomic_u64(filling.word)
            .store(upto as u64, Ordering::Release);
        wake_progress_waiter(&filling.region, filling.word + WAITER_AFTER_PROGRESS);
    });
}

/// Where a receiver waiting for progress announces itself: this many bytes after the progress
/// word (a `u32`, non-zero while it sleeps on it as a futex).
pub(crate) const WAITER_AFTER_PROGRESS: usize = 16;

/// Wakes a receiver asleep on the `u32` at `waiter` of `region` for progress, if one said it
/// sleeps there: after a progress store, so it either sees the store before sleeping or is
/// woken (the same protocol as the rings' sleep words, `ring.rs`). A receiver that waits there
/// on a busy machine is woken as soon as there is something to copy, instead of polling for
/// it while the CPU's other threads take their turns.
pub(crate) fn wake_progress_waiter(region: &Region, waiter: usize) {
    let word = region.atomic_u32(waiter);
    std::sync::atomic::fence(Ordering::SeqCst);
    if word.load(Ordering::Relaxed) != 0 && word.swap(0, Ordering::AcqRel) != 0 {
        super::region::futex_wake(word);
    }
}

/// How to write `out` if it lies in the message being filled on this thread.
fn filling(out: &[u8]) -> Option<Stores> {
    let at = out.as_ptr() as usize;
    FILLING.with(|f| {
        f.borrow()
            .as_ref()
            .filter(|f| at >= f.start && at + out.len() <= f.start + f.len)
            .map(|f| f.stores)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region with a progress word at 8 and a payload of `len` bytes at 64.
    fn region(len: usize) -> Arc<Region> {
        let (region, _fd) = Region::create_memfd(c"progress-test", 64 + len, false).unwrap();
        Arc::new(region)
    }

    fn progress(region: &Region) -> u64 {
        region.atomic_u64(8).load(Ordering::Acquire)
    }

    #[test]
    fn copies_into_the_message_being_filled_report_each_chunk_and_nothing_else_does() {
        let len = 5 * PROGRESS_CHUNK / 2;
        let shared = region(len);
        let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        // Outside any fill: a plain copy, nothing reported.
        let mut elsewhere = vec![0u8; len];
        copy_in_place(&mut elsewhere, &src);
        assert_eq!(elsewhere, src);
        shared.with_slice_mut(64, len, |out| {
            let _scope = FillScope::enter(
                out.as_ptr() as usize,
                len,
                shared.clone(),
                8,
                Stores::Streaming,
            );
            // A copy elsewhere during the fill reports nothing either.
            copy_in_place(&mut elsewhere, &src);
            mark_written(&elsewhere);
            assert_eq!(progress(&shared), 0);
            // Plain writes are reported when marked; a short copy, at once.
            out[..50].copy_from_slice(&src[..50]);
            assert_eq!(progress(&shared), 0);
            mark_written(&out[..50]);
            assert_eq!(progress(&shared), 50);
            copy_in_place(&mut out[50..100], &src[50..100]);
            assert_eq!(progress(&shared), 100);
            // A long copy reports the end of every chunk, the last one short.
            copy_in_place(&mut out[100..], &src[100..]);
            assert_eq!(progress(&shared), len as u64);
            // Progress never moves back.
            mark_written(&out[..10]);
            assert_eq!(progress(&shared), len as u64);
        });
        let mut back = vec![0u8; len];
        shared.read(64, &mut back);
        assert_eq!(back, src);
        // The scope is gone: copies into the region report nothing any more.
        shared.atomic_u64(8).store(0, Ordering::Release);
        shared.with_slice_mut(64, len, |out| copy_in_place(out, &src));
        assert_eq!(progress(&shared), 0);
    }

    #[test]
    fn a_nested_fill_restores_the_outer_one() {
        let (outer, inner) = (region(1024), region(1024));
        outer.with_slice_mut(64, 1024, |out| {
            let _outer = FillScope::enter(
                out.as_ptr() as usize,
                1024,
                outer.clone(),
                8,
                Stores::Cached,
            );
            inner.with_slice_mut(64, 1024, |inner_out| {
                let _inner = FillScope::enter(
                    inner_out.as_ptr() as usize,
                    1024,
                    inner.clone(),
                    8,
                    Stores::Streaming,
                );
                mark_written(&inner_out[..7]);
                mark_written(&out[..3]);
            });
            mark_written(&out[..5]);
        });
        assert_eq!(progress(&inner), 7);
        assert_eq!(progress(&outer), 5);
    }
}
