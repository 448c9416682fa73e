//! One function per fuzz target, taking the raw input bytes. Each returns normally for any
//! input; a panic (an assertion here, or one anywhere in the code under test, including the
//! server's own threads) is a finding.
//!
//! These files are compiled twice: by the fuzz crate (nightly, libFuzzer) and, through
//! `#[path]`, by `tests/tests/fuzz_corpus.rs` on stable, which replays the committed corpus.

mod frame;
mod handshake;
mod harness;
mod ring;
pub mod seeds;
mod server;
mod split;

pub use frame::frame_decoder;
pub use handshake::handshake;
pub use harness::check_server_health;
pub use ring::shm_ring;
pub use server::server_bytes;

/// A target's body: runs one input.
pub type Body = fn(&[u8]);

/// The targets, by name (the corpus directory of each is `corpus/NAME/`).
pub const TARGETS: [(&str, Body); 4] = [
    ("frame_decoder", frame_decoder),
    ("handshake", handshake),
    ("server_bytes", server_bytes),
    ("shm_ring", shm_ring),
];
