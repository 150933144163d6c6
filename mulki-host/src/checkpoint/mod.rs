//! Atomic checkpoint directories with a SHA-256 manifest: `run_dir/task-TT/step-NNNNNN/` holds
//! named files plus `MANIFEST.json`, the commit record. This module stores, finds, verifies and
//! rotates them; what goes into a checkpoint is the runner's business. One writer per run
//! directory is assumed.
mod commit;
mod error;
mod header;
mod manifest;
mod scan;
mod storage;

pub use commit::{commit, rotate};
pub use error::CheckpointError;
pub use header::{decode_header, encode_header, HEADER_VERSION, MAGIC};
pub use manifest::{
    checkpoint_dir, sha256_hex, step_dir_name, task_dir_name, FileEntry, Kind, Manifest, FORMAT, MANIFEST_FILE,
    MANIFEST_LIMIT, VERSION,
};
pub use scan::{find_latest, load_file, task_end, verify, Found};
pub use storage::{CrashPoint, FailingStorage, RealStorage, Storage, CRASH_ENV};
