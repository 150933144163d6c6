//! `cargo fuzz run csv -s none fuzz/seeds/csv`; the body is [`mulki_fuzz::csv`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::csv(data));
