//! `cargo fuzz run checkpoint_manifest -s none fuzz/seeds/checkpoint_manifest`; the body is [`mulki_fuzz::checkpoint_manifest`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::checkpoint_manifest(data));
