//! Fuzz target `shm_ring`: see `rpc_fuzz::bodies::shm_ring`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::bodies::shm_ring(data));
