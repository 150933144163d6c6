//! `cargo fuzz run idx -s none fuzz/seeds/idx`; the body is [`mulki_fuzz::idx`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::idx(data));
