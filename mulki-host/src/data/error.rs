//! The errors of dataset listing, decoding and loading. Every message names the file or folder
//! and says what is wrong with it (and where: CSV line, IDX byte offset), so `mulki data check`
//! can print it as is.
use std::fmt::Write as _;
use std::path::PathBuf;

use super::decode::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: dataset folder not found")]
    MissingDataset { path: PathBuf },
    #[error("{path}: split `{split}` not found")]
    MissingSplit { path: PathBuf, split: String },
    #[error("{dir}: class `{class}` has no images (.png, .jpg, .jpeg)")]
    EmptyClass { dir: PathBuf, class: String },
    #[error("{dir}: class folders do not match the task's classes:{}", folder_diff(.missing, .extra))]
    ClassFolders {
        dir: PathBuf,
        /// Class folders the config names that are not on disk.
        missing: Vec<String>,
        /// Folders on disk that match no class.
        extra: Vec<String>,
    },
    #[error("{path}:{line}: {reason}")]
    Csv { path: PathBuf, line: usize, reason: String },
    /// `at` is `line N` (CSV) or `record N` (IDX).
    #[error("{path}: {at}: label {label} out of range: the task has {classes} classes")]
    LabelOutOfRange { path: PathBuf, at: String, label: u64, classes: usize },
    #[error("{path}: offset {offset}: {reason}")]
    Idx { path: PathBuf, offset: u64, reason: String },
    #[error("{images} holds {n_images} images but {labels} holds {n_labels} labels")]
    IdxCount { images: PathBuf, n_images: usize, labels: PathBuf, n_labels: usize },
    #[error("{images} holds {n_images} images but {captions} holds {n_captions} captions")]
    CaptionCount { images: PathBuf, n_images: usize, captions: PathBuf, n_captions: usize },
    #[error("{path}:{line}: empty caption")]
    EmptyCaption { path: PathBuf, line: usize },
    #[error("{path}: no images (.png, .jpg, .jpeg) found")]
    NoImages { path: PathBuf },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("loader: {0}")]
    Loader(String),
}

fn folder_diff(missing: &[String], extra: &[String]) -> String {
    let mut s = String::new();
    if !missing.is_empty() {
        let _ = write!(s, " missing (no folder): {}", missing.join(", "));
    }
    if !extra.is_empty() {
        if !s.is_empty() {
            s.push(';');
        }
        let _ = write!(s, " extra (no such class): {}", extra.join(", "));
    }
    s
}
