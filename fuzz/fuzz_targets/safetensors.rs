//! `cargo fuzz run safetensors -s none fuzz/seeds/safetensors`; the body is [`mulki_fuzz::safetensors`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::safetensors(data));
