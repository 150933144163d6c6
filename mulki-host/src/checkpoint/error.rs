//! [`CheckpointError`], the one error type of the checkpoint layer. Every variant names the
//! checkpoint directory or file it concerns and says what is wrong, so the message alone is
//! enough to act on; causes are folded into the message rather than chained.
use std::path::PathBuf;

/// Why a checkpoint could not be written, found, verified or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A filesystem operation failed (`op` says which: write, rename, sync directory, ...), or a
    /// test storage stopped at a crash point.
    #[error("{}: io error during {op}: {error}", path.display())]
    Io { path: PathBuf, op: String, error: std::io::Error },

    /// The directory has no `MANIFEST.json`, so it was never committed.
    #[error("{}: missing manifest (MANIFEST.json): not a committed checkpoint", dir.display())]
    MissingManifest { dir: PathBuf },

    /// The manifest is larger than any real one; refused rather than read.
    #[error("{}: manifest is {bytes} bytes, more than the {limit}-byte limit", path.display())]
    ManifestTooLarge { path: PathBuf, bytes: u64, limit: u64 },

    /// The manifest is not JSON or a field has the wrong type or value.
    #[error("{}: malformed manifest: {message}", path.display())]
    ManifestParse { path: PathBuf, message: String },

    /// The manifest's `format` is not `mulki-checkpoint`.
    #[error("{}: unknown format {format:?} (expected \"mulki-checkpoint\")", path.display())]
    UnknownFormat { path: PathBuf, format: String },

    /// A manifest or `state.postcard` header of a version this build cannot read.
    #[error(
        "{}: unsupported {what} version {version} (this build reads version {supported})",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, what: &'static str, version: u64, supported: u32 },

    /// The directory's name disagrees with the task and step in its manifest (moved or copied).
    #[error(
        "{}: directory name does not match the manifest, which says it belongs at {expected}",
        dir.display()
    )]
    NameMismatch { dir: PathBuf, expected: String },

    /// A file name cannot be stored in a checkpoint (path separators, `..`, the manifest's own
    /// name, a duplicate, ...).
    #[error("{}: bad checkpoint file name {name:?}: {reason}", dir.display())]
    BadFileName { dir: PathBuf, name: String, reason: &'static str },

    /// A file listed in the manifest is absent.
    #[error("{}: file {name:?} listed in the manifest is missing", dir.display())]
    MissingFile { dir: PathBuf, name: String },

    /// A name listed in the manifest is not a regular file.
    #[error("{}: not a regular file", path.display())]
    NotAFile { path: PathBuf },

    /// The file asked for is not listed in the manifest.
    #[error("{}: no file {name:?} in the manifest", dir.display())]
    NotInManifest { dir: PathBuf, name: String },

    /// The file's length differs from the manifest's (truncated or appended to).
    #[error("{}: size mismatch: expected {expected} bytes, got {got}", path.display())]
    SizeMismatch { path: PathBuf, expected: u64, got: u64 },

    /// The file's SHA-256 differs from the manifest's (corrupted).
    #[error(
        "{}: hash mismatch of file {name:?}: expected sha256 {expected}, got {got}",
        path.display()
    )]
    HashMismatch { path: PathBuf, name: String, expected: String, got: String },

    /// `state.postcard` does not start with `MULKICKP`.
    #[error("{}: bad magic: expected \"MULKICKP\", found {found}", path.display())]
    BadMagic { path: PathBuf, found: String },

    /// The bytes end inside the header or the payload.
    #[error("{}: truncated: {what}", path.display())]
    Truncated { path: PathBuf, what: String },

    /// The payload is not a valid postcard encoding of the expected type.
    #[error("{}: corrupt payload: {message}", path.display())]
    CorruptPayload { path: PathBuf, message: String },

    /// A value could not be serialised (a `Serialize` impl reported an error).
    #[error("{}: cannot encode: {message}", path.display())]
    Encode { path: PathBuf, message: String },
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>, op: impl Into<String>, error: std::io::Error) -> Self {
        CheckpointError::Io { path: path.into(), op: op.into(), error }
    }
}
