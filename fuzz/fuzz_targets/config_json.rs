//! `cargo fuzz run config_json -s none fuzz/seeds/config_json`; the body is [`mulki_fuzz::config_json`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::config_json(data));
