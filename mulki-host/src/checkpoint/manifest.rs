//! `MANIFEST.json`, the commit record of a checkpoint: which task and step it is, what kind, the
//! config hash of the run that wrote it, and the size and SHA-256 of every file. Also the names
//! of checkpoint directories and the rules for file names.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CheckpointError;

/// The manifest's file name inside a checkpoint directory.
pub const MANIFEST_FILE: &str = "MANIFEST.json";
/// The `format` field of every manifest.
pub const FORMAT: &str = "mulki-checkpoint";
/// The manifest version this build writes and reads.
pub const VERSION: u32 = 1;
/// Larger manifests are refused unread: a real one lists a handful of files.
pub const MANIFEST_LIMIT: u64 = 1 << 20;

/// Why the checkpoint was written; rotation never deletes a task end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Written every N steps to resume from; old ones are rotated away.
    Periodic,
    /// The model at the end of a task (teacher P, the anchor); kept for the whole run.
    TaskEnd,
}

/// One file of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lowercase hex SHA-256 of the contents.
    pub sha256: String,
    /// Length in bytes.
    pub bytes: u64,
}

/// The parsed `MANIFEST.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub task: usize,
    pub step: usize,
    pub kind: Kind,
    pub config_hash: String,
    /// Sorted by name, so the manifest text is canonical.
    pub files: BTreeMap<String, FileEntry>,
}

/// `task-TT`: zero-based, two digits or more.
pub fn task_dir_name(task: usize) -> String {
    format!("task-{task:02}")
}

/// `step-NNNNNN`: six digits or more.
pub fn step_dir_name(step: usize) -> String {
    format!("step-{step:06}")
}

/// `run_dir/task-TT/step-NNNNNN`.
pub fn checkpoint_dir(run_dir: &Path, task: usize, step: usize) -> PathBuf {
    run_dir.join(task_dir_name(task)).join(step_dir_name(step))
}

/// The number in a canonical `{prefix}{n:0width$}` name; anything else (leading zeros beyond
/// the padding, signs, suffixes) is `None`, so one checkpoint has exactly one name.
pub(crate) fn parse_name(name: &str, prefix: &str, width: usize) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (format!("{n:0width$}") == digits).then_some(n)
}

/// A file name is one plain component of safe characters, so a manifest can never point
/// outside its directory and the name means the same on every OS.
pub(crate) fn check_file_name(dir: &Path, name: &str) -> Result<(), CheckpointError> {
    let bad = |reason| Err(CheckpointError::BadFileName { dir: dir.to_path_buf(), name: name.to_string(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    if name == "." || name == ".." {
        return bad("not a file name");
    }
    if name == MANIFEST_FILE {
        return bad("reserved for the manifest");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl Manifest {
    /// The manifest of a checkpoint about to be committed.
    pub fn new(task: usize, step: usize, kind: Kind, config_hash: &str) -> Self {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            task,
            step,
            kind,
            config_hash: config_hash.into(),
            files: BTreeMap::new(),
        }
    }

    /// Where this checkpoint belongs under a run directory, as `task-TT/step-NNNNNN`.
    pub fn rel_dir(&self) -> String {
        format!("{}/{}", task_dir_name(self.task), step_dir_name(self.step))
    }

    /// Parses manifest text; `path` is for the messages. Format and version are checked before
    /// the rest, so a manifest from a future version says so instead of failing on a field.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, CheckpointError> {
        let malformed = |message: String| CheckpointError::ManifestParse { path: path.to_path_buf(), message };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        let obj = value.as_object().ok_or_else(|| malformed("expected a JSON object".into()))?;
        match obj.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(CheckpointError::UnknownFormat { path: path.to_path_buf(), format: other.into() })
            }
            None => return Err(malformed("field `format`: missing or not a string".into())),
        }
        match obj.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(version) => {
                return Err(CheckpointError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    what: "manifest",
                    version,
                    supported: VERSION,
                })
            }
            None => return Err(malformed("field `version`: missing or not a non-negative integer".into())),
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        for (name, entry) in &manifest.files {
            check_file_name(path.parent().unwrap_or(path), name)?;
            let hex_ok = entry.sha256.len() == 64
                && entry.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(malformed(format!(
                    "file {name:?}: sha256 must be 64 lowercase hex digits, got {:?}",
                    entry.sha256
                )));
            }
        }
        Ok(manifest)
    }

    /// The manifest text written to disk (pretty JSON, trailing newline).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        Ok(text)
    }
}

/// Reads and parses `dir/MANIFEST.json`, refusing one over [`MANIFEST_LIMIT`].
pub(crate) fn read_manifest(dir: &Path) -> Result<Manifest, CheckpointError> {
    let path = dir.join(MANIFEST_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CheckpointError::MissingManifest { dir: dir.to_path_buf() })
        }
        Err(e) => return Err(CheckpointError::io(&path, "open manifest", e)),
    };
    let meta = file.metadata().map_err(|e| CheckpointError::io(&path, "stat manifest", e))?;
    if !meta.is_file() {
        return Err(CheckpointError::NotAFile { path });
    }
    let too_large = |bytes| CheckpointError::ManifestTooLarge { path: path.clone(), bytes, limit: MANIFEST_LIMIT };
    if meta.len() > MANIFEST_LIMIT {
        return Err(too_large(meta.len()));
    }
    // The limit also bounds the read itself, in case the file grows after the stat.
    let mut bytes = Vec::new();
    file.take(MANIFEST_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CheckpointError::io(&path, "read manifest", e))?;
    if bytes.len() as u64 > MANIFEST_LIMIT {
        return Err(too_large(bytes.len() as u64));
    }
    Manifest::parse(&bytes, &path)
}

/// [`read_manifest`], plus the check that `dir` is named after the manifest's task and step,
/// so a checkpoint copied to the wrong place is not mistaken for another step.
pub(crate) fn read_manifest_at(dir: &Path) -> Result<Manifest, CheckpointError> {
    let manifest = read_manifest(dir)?;
    fn name(p: Option<&Path>) -> Option<&str> {
        p.and_then(|p| p.file_name()).and_then(|n| n.to_str())
    }
    let step_ok = name(Some(dir)) == Some(step_dir_name(manifest.step).as_str());
    let task_ok = name(dir.parent()) == Some(task_dir_name(manifest.task).as_str());
    if !(step_ok && task_ok) {
        return Err(CheckpointError::NameMismatch { dir: dir.to_path_buf(), expected: manifest.rel_dir() });
    }
    Ok(manifest)
}
