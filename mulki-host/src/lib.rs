//! mulki-host: everything that touches files, the terminal or OS threads: HF CLIP import and
//! export, the CLIP BPE tokenizer, and the `mulki` commands.
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod data;
pub mod image;
pub mod import;
pub mod report;
pub mod run;
pub mod synth;
pub mod tokenizer;
