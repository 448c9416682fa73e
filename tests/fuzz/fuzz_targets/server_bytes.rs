//! Fuzz target `server_bytes`: see `rpc_fuzz::bodies::server_bytes`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::bodies::server_bytes(data));
