//! One module per subcommand.
pub mod bench;
pub mod bench_step;
pub mod config;
pub mod data;
pub mod demo;
pub mod embed;
pub mod eval;
pub mod inspect;
pub mod pretrain;
pub mod report;
pub mod train;

use crate::import::ImportError;
use crate::tokenizer::TokenizerError;

/// 3 when the error comes from bad input (a file, a config), 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    let bad_input = err.chain().any(|e| {
        e.is::<ImportError>()
            || e.is::<TokenizerError>()
            || e.is::<crate::image::ImageError>()
            || e.is::<crate::run::config::ConfigError>()
            || e.is::<crate::data::DataError>()
            || e.is::<crate::checkpoint::CheckpointError>()
            || e.is::<crate::report::ReportError>()
    });
    if bad_input {
        3
    } else {
        1
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message before it
/// already contains (errors that print their source themselves).
pub fn describe(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

/// `--threads`, defaulting to every core.
pub fn threads(arg: Option<usize>) -> usize {
    arg.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}
