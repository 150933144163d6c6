//! `cargo fuzz run tokenizer -s none fuzz/seeds/tokenizer`; the body is [`mulki_fuzz::tokenizer`], which
//! tests/tests/fuzz_regressions.rs replays on the seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mulki_fuzz::tokenizer(data));
