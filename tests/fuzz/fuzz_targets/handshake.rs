//! Fuzz target `handshake`: see `rpc_fuzz::bodies::handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::bodies::handshake(data));
