//! `cargo fuzz run run_config -s none fuzz/seeds/run_config`; the body is [`mulki_fuzz::run_config`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::run_config(data));
