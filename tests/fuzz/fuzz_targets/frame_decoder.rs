//! Fuzz target `frame_decoder`: see `rpc_fuzz::bodies::frame_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rpc_fuzz::bodies::frame_decoder(data));
