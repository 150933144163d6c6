//! `cargo fuzz run image -s none fuzz/seeds/image`; the body is [`mulki_fuzz::image`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::image(data));
