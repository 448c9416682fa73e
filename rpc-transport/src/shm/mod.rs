//! Shared memory: `shm://NAME`, `shm:///abs/rendezvous.sock`, the file-backed
//! `mmap:///abs/file` and the System V `sysv-shm://NAME`.
//!
//! - `region.rs`: mapping, fd passing, futex — and all the `unsafe` (with `ring.rs`, which has
//!   none beyond its heap test memory, and `sysv/ipc.rs`, the System V calls).
//! - `ring.rs`: the SPSC ring and its wake-up protocol, model-checked with loom (`sync.rs`).
//! - `segment.rs`: header plus one ring per direction in one region.
//! - `rendezvous.rs`: the Unix socket over which the server hands each client its segment.
//! - `link.rs`: that socket afterwards — liveness and large-message descriptors.
//! - `watcher.rs`: the one thread per process that reads every link's socket (epoll).
//! - `endpoint.rs`: the sending and receiving halves, async and blocking.
//! - `bulk.rs`: separately mapped, reused regions for messages too big for the ring.
//! - `progress.rs`: how a fill reports how far it got, so a large message is copied out while
//!   it is written ([`copy_in_place`], [`mark_written`]).
//! - `store_choice.rs`: whether a large message is written with non-temporal or ordinary
//!   stores, learned from the intervals between the sender's large messages.
//! - `file_slots.rs`: segments in slots of a regular file, for `mmap://`.
//! - `sysv/`: segments in System V shared memory, for `sysv-shm://` (its `ipc.rs`: the calls).
//! - `transport.rs`: the `shm` and `mmap` transports, and the halves' trait implementations.

// Under `--cfg loom` only the ring and its atomics shim are built, for the model checker.
#[cfg(not(loom))]
mod bulk;
#[cfg(not(loom))]
mod endpoint;
#[cfg(not(loom))]
mod file_slots;
#[cfg(not(loom))]
pub(crate) mod fuzzing;
#[cfg(not(loom))]
mod link;
#[cfg(not(loom))]
mod progress;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
mod rendezvous;
#[cfg_attr(loom, allow(dead_code))]
mod ring;
#[cfg(not(loom))]
mod segment;
#[cfg(not(loom))]
mod store_choice;
mod sync;
#[cfg(not(loom))]
mod sysv;
#[cfg(not(loom))]
mod transport;
#[cfg(not(loom))]
mod watcher;

#[cfg(not(loom))]
pub use file_slots::{FILE_HEADER, FileHeader, read_header};

#[cfg(not(loom))]
pub use progress::{REWRITABLE_PREFIX, copy_in_place, mark_written};
#[cfg(not(loom))]
pub use rendezvous::{runtime_dir, socket_path};
#[cfg(not(loom))]
#[cfg(not(loom))]
pub(crate) use transport::{MMAP, SHM, SYSV_SHM};
