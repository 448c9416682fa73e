//! Replays the committed fuzz corpus (`tests/fuzz/corpus/TARGET/*`) and the generated seeds
//! through the fuzz targets' bodies, on stable, so CI exercises every input the fuzzers
//! found interesting. The bodies are the very files the fuzz crate (`tests/fuzz`, nightly)
//! builds its targets from.

#[path = "../fuzz/src/bodies/mod.rs"]
mod bodies;

use std::path::{Path, PathBuf};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Runs every committed input and every generated seed of `target`; returns how many ran.
fn replay(target: &str) -> usize {
    let (_, body) = bodies::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .unwrap_or_else(|e| panic!("corpus of {target}: {e}"))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    for file in &files {
        let input = std::fs::read(file).expect("a corpus file");
        // Name the input if it fails.
        eprintln!("replaying {}", file.display());
        body(&input);
    }
    let seeds: Vec<_> = bodies::seeds::all()
        .into_iter()
        .filter(|s| s.target == target)
        .collect();
    for seed in &seeds {
        eprintln!("replaying generated {}", seed.name);
        body(&seed.bytes);
    }
    assert!(
        files.len() >= seeds.len(),
        "corpus/{target} is missing its seeds: run the ignored test write_seeds"
    );
    files.len() + seeds.len()
}

#[test]
fn frame_decoder_corpus() {
    assert!(replay("frame_decoder") > 0);
}

#[test]
fn handshake_corpus() {
    assert!(replay("handshake") > 0);
    bodies::check_server_health();
}

#[test]
fn server_bytes_corpus() {
    assert!(replay("server_bytes") > 0);
    bodies::check_server_health();
}

#[test]
fn shm_ring_corpus() {
    assert!(replay("shm_ring") > 0);
}

/// Writes the generated seeds to `tests/fuzz/corpus/TARGET/seed-*`:
/// `cargo test -p rpc-tests --test fuzz_corpus -- --ignored write_seeds`.
#[test]
#[ignore = "writes the seed corpus into the source tree"]
fn write_seeds() {
    for seed in bodies::seeds::all() {
        let dir = corpus_dir(seed.target);
        std::fs::create_dir_all(&dir).expect("a corpus directory");
        std::fs::write(dir.join(&seed.name), &seed.bytes).expect("a seed file");
    }
}
