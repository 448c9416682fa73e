//! [`SharedCounter`]: an atomic counter that several processes can share through a file.

use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::AtomicUsize;

use memmap2::MmapMut;

/// A `usize` counter in memory that may be mapped from a file, so the probe servers spawned as
/// children of a test (`spawn:` transport) count into the memory the test reads. Use it as an
/// [`AtomicUsize`] (it dereferences to one).
#[derive(Debug)]
pub struct SharedCounter {
    map: MmapMut,
}

impl SharedCounter {
    /// A counter private to this process.
    pub fn anonymous() -> SharedCounter {
        SharedCounter {
            map: MmapMut::map_anon(std::mem::size_of::<AtomicUsize>()).expect("map a counter"),
        }
    }

    /// A counter in `path` (created and zeroed if missing), shared by every process mapping it.
    pub fn in_file(path: &Path) -> std::io::Result<SharedCounter> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let size = std::mem::size_of::<AtomicUsize>() as u64;
        if file.metadata()?.len() < size {
            file.set_len(size)?;
        }
        // SAFETY: the file is ours (a test's temporary directory); other processes change it
        // only through the atomic operations of this same type, never by plain writes.
        let map = unsafe { MmapMut::map_mut(&file)? };
        Ok(SharedCounter { map })
    }
}

impl Deref for SharedCounter {
    type Target = AtomicUsize;

    fn deref(&self) -> &AtomicUsize {
        // SAFETY: the mapping is page-aligned and at least `size_of::<AtomicUsize>()` long, it
        // lives as long as `self`, and `AtomicUsize` has the size and alignment of `usize` with
        // no invalid bit patterns; every access to it (here and in other processes) is atomic.
        unsafe { &*(self.map.as_ptr() as *const AtomicUsize) }
    }
}
