//! `cargo fuzz run header_roundtrip -s none fuzz/seeds/header_roundtrip`; the body is [`mulki_fuzz::header_roundtrip`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::header_roundtrip(data));
