//! The fuzz targets' bodies, as plain functions of the input bytes (see `README.md`).
//!
//! `fuzz_targets/*.rs` hand libFuzzer's input to these; on stable,
//! `tests/tests/fuzz_corpus.rs` of the `rpc-tests` crate compiles the same files and replays
//! the committed corpus through them.

pub mod bodies;
