//! `mmap:///abs/file`: segments in slots of a regular file instead of memfds.
//!
//! ```text
//! file header (4096 bytes):
//!   0  magic "RPCMMAP1"  u64
//!   8  layout version    u32
//!  12  ring capacity     u32
//!  16  slot length       u64   (one segment)
//!  24  slot count        u64
//! slot i at 4096 + i * slot length: one segment (see segment.rs)
//! ```
//!
//! What persists: the file and its header. A server started over an existing file whose
//! header matches its ring capacity keeps the file (and its slot count); any other content is
//! replaced by a fresh header. What is reinitialised: a slot, each time it is handed to a new
//! connection (header rewritten, ring counters zeroed). Messages of earlier connections are never
//! replayed. A slot is free again two seconds after its connection ends (its peer may still
//! have it mapped for a moment).
//!
//! The file is shared by every connection of the server: use it between processes of one user
//! that trust each other (file mode 0600). Unlike a sealed memfd, a regular file can be
//! truncated by anyone allowed to write it, which would crash the mapping processes (SIGBUS).

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::region::Region;
use super::segment::{Segment, segment_len};

const MAGIC: u64 = u64::from_le_bytes(*b"RPCMMAP1");
const LAYOUT_VERSION: u32 = 1;
/// Bytes before the first slot.
pub const FILE_HEADER: u64 = 4096;

#[derive(Default)]
struct Slots {
    used: BTreeSet<u64>,
    /// Slots whose connection ended lately, with when: the peer may still have them mapped
    /// for a moment (it learns of the end through its socket), so they rest before reuse.
    cooling: Vec<(u64, Instant)>,
    count: u64,
}

/// How long a freed slot rests before another connection gets it.
const COOL_DOWN: Duration = Duration::from_secs(2);

/// A file of segment slots.
pub(crate) struct SlotFile {
    file: File,
    capacity: usize,
    slot_len: u64,
    slots: Arc<Mutex<Slots>>,
}

/// A slot in use; freed when dropped.
pub(crate) struct SlotLease {
    slots: Arc<Mutex<Slots>>,
    index: u64,
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.used.remove(&self.index);
        slots.cooling.push((self.index, Instant::now()));
    }
}

/// The header fields of a slot file, as read from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub capacity: u32,
    pub slot_len: u64,
    pub slot_count: u64,
}

/// Reads the header of the slot file at `file`, if it has a valid one.
pub fn read_header(file: &File) -> io::Result<Option<FileHeader>> {
    let mut header = [0u8; 32];
    if file.metadata()?.len() < FILE_HEADER || file.read_at(&mut header, 0)? < header.len() {
        return Ok(None);
    }
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    if word(0) != MAGIC || half(8) != LAYOUT_VERSION {
        return Ok(None);
    }
    Ok(Some(FileHeader {
        capacity: half(12),
        slot_len: word(16),
        slot_count: word(24),
    }))
}

impl SlotFile {
    /// Opens (or creates, mode 0600) the slot file for rings of `capacity` bytes, keeping a
    /// compatible existing file and replacing anything else.
    pub(crate) fn open(path: &Path, capacity: usize) -> io::Result<SlotFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let slot_len = segment_len(capacity) as u64;
        let kept = read_header(&file)?
            .filter(|h| h.capacity as usize == capacity && h.slot_len == slot_len);
        let count = match kept {
            Some(header) => {
                file.set_len(FILE_HEADER + header.slot_count * slot_len)?;
                header.slot_count
            }
            None => {
                file.set_len(0)?;
                file.set_len(FILE_HEADER)?;
                let mut header = [0u8; 32];
                header[..8].copy_from_slice(&MAGIC.to_le_bytes());
                header[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
                header[12..16].copy_from_slice(&(capacity as u32).to_le_bytes());
                header[16..24].copy_from_slice(&slot_len.to_le_bytes());
                file.write_all_at(&header, 0)?;
                0
            }
        };
        Ok(SlotFile {
            file,
            capacity,
            slot_len,
            slots: Arc::new(Mutex::new(Slots {
                used: BTreeSet::new(),
                cooling: Vec::new(),
                count,
            })),
        })
    }

    /// Hands out the lowest free slot, initialised: its segment, a descriptor of the file for
    /// the peer, the slot's offset, and the lease that frees it.
    pub(crate) fn lease(&self) -> io::Result<(Segment, OwnedFd, u64, SlotLease)> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .cooling
            .retain(|(_, freed)| freed.elapsed() < COOL_DOWN);
        let index = (0..)
            .find(|i| !slots.used.contains(i) && !slots.cooling.iter().any(|(c, _)| c == i))
            .expect("a free index");
        if index >= slots.count {
            slots.count = index + 1;
            self.file
                .set_len(FILE_HEADER + slots.count * self.slot_len)?;
            self.file.write_all_at(&slots.count.to_le_bytes(), 24)?;
        }
        let offset = FILE_HEADER + index * self.slot_len;
        let region = Region::map(self.file.as_fd(), offset, self.slot_len as usize, false)?;
        let segment = Segment {
            region: Arc::new(region),
            capacity: self.capacity,
        };
        segment.initialise();
        slots.used.insert(index);
        let lease = SlotLease {
            slots: self.slots.clone(),
            index,
        };
        Ok((
            segment,
            self.file.as_fd().try_clone_to_owned()?,
            offset,
            lease,
        ))
    }
}
