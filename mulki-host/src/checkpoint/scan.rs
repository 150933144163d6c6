//! Reading checkpoints back: [`verify`] one directory, [`find_latest`] across a run, the verified
//! [`task_end`] of a task, and [`load_file`], which re-checks a file's hash as it reads it.
//! Nothing here writes; a damaged checkpoint is reported, never repaired or deleted.
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{check_file_name, hex, parse_name, read_manifest_at, task_dir_name, FileEntry, Kind, Manifest};
use super::CheckpointError;

/// Suffixes of directories that are not checkpoints: an unfinished commit (`.tmp`), a
/// checkpoint renamed aside while being replaced (`.old`) or deleted by rotation (`.del`).
pub(crate) const LEFTOVERS: [(&str, &str); 3] = [
    (".tmp", "unfinished checkpoint left by an interrupted commit"),
    (".old", "replaced checkpoint left by an interrupted commit"),
    (".del", "checkpoint left half-deleted by an interrupted rotation"),
];

/// The newest complete checkpoint of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// `run_dir/task-TT/step-NNNNNN`.
    pub dir: PathBuf,
    /// Its manifest, already verified against the files.
    pub manifest: Manifest,
    /// False when an expected config hash was given and the manifest's differs. Such a
    /// checkpoint is still returned: the caller refuses (naming the differing keys) or overrides.
    pub config_matches: bool,
}

/// Checks that `dir` is a committed, intact checkpoint: the manifest is present, parses and has
/// a known format and version, the directory is named after its task and step, and every
/// listed file is present with the recorded size and SHA-256.
pub fn verify(dir: &Path) -> Result<Manifest, CheckpointError> {
    let manifest = read_manifest_at(dir)?;
    for (name, entry) in &manifest.files {
        read_checked(dir, name, entry, false)?;
    }
    Ok(manifest)
}

/// Reads file `name` of the checkpoint at `dir`, checking its size and SHA-256 against the
/// manifest, so a file damaged after the checkpoint was verified is still caught.
pub fn load_file(dir: &Path, name: &str) -> Result<Vec<u8>, CheckpointError> {
    check_file_name(dir, name)?;
    let manifest = read_manifest_at(dir)?;
    let entry = manifest
        .files
        .get(name)
        .ok_or_else(|| CheckpointError::NotInManifest { dir: dir.to_path_buf(), name: name.to_string() })?;
    read_checked(dir, name, entry, true)
}

/// The newest checkpoint of the run by (task, step) that verifies.
///
/// Unfinished (`.tmp`) and aside (`.old`, `.del`) directories are ignored, and checkpoints that
/// fail verification are skipped; each gets a warning naming it and saying why. Only the
/// checkpoints newer than the one returned are verified, so a resume hashes one checkpoint in
/// the normal case. A missing run directory is not an error: there is nothing to resume.
pub fn find_latest(
    run_dir: &Path, expected_config_hash: Option<&str>,
) -> Result<(Option<Found>, Vec<String>), CheckpointError> {
    let mut warnings = Vec::new();
    let tasks = match list_tasks(run_dir)? {
        Some(tasks) => tasks,
        None => return Ok((None, warnings)),
    };
    let mut all = Vec::new();
    for (task, task_dir) in tasks {
        for (step, dir) in list_steps(&task_dir, &mut warnings)? {
            all.push((task, step, dir));
        }
    }
    all.sort_by_key(|&(task, step, _)| std::cmp::Reverse((task, step)));
    for (_, _, dir) in all {
        match verify(&dir) {
            Ok(manifest) => {
                let config_matches = expected_config_hash.is_none_or(|h| h == manifest.config_hash.as_str());
                let found = Found { dir, manifest, config_matches };
                return Ok((Some(found), warnings));
            }
            // Every verify error names the directory or a file in it.
            Err(e) => warnings.push(format!("skipping damaged checkpoint: {e}")),
        }
    }
    Ok((None, warnings))
}

/// The newest committed, verified task-end checkpoint of `task` (teacher P, the anchor), if any.
pub fn task_end(run_dir: &Path, task: usize) -> Option<PathBuf> {
    let task_dir = run_dir.join(task_dir_name(task));
    let mut ignored = Vec::new();
    let steps = list_steps(&task_dir, &mut ignored).ok()?;
    steps.into_iter().rev().find_map(|(_, dir)| {
        let m = read_manifest_at(&dir).ok()?;
        (m.kind == Kind::TaskEnd && m.task == task && verify(&dir).is_ok()).then_some(dir)
    })
}

/// The `task-TT` directories of a run, sorted by task; `None` when the run directory does not
/// exist.
pub(crate) fn list_tasks(run_dir: &Path) -> Result<Option<Vec<(usize, PathBuf)>>, CheckpointError> {
    let entries = match fs::read_dir(run_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CheckpointError::io(run_dir, "read directory", e)),
    };
    let mut tasks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CheckpointError::io(run_dir, "read directory", e))?;
        let path = entry.path();
        let Some(task) = entry.file_name().to_str().and_then(|n| parse_name(n, "task-", 2)) else {
            continue;
        };
        if path.is_dir() {
            tasks.push((task, path));
        }
    }
    tasks.sort();
    Ok(Some(tasks))
}

/// The `step-NNNNNN` directories of a task directory, sorted by step (oldest first); leftovers
/// and step-like names that are not checkpoint directories add a warning. A missing task
/// directory has no steps.
pub(crate) fn list_steps(
    task_dir: &Path, warnings: &mut Vec<String>,
) -> Result<Vec<(usize, PathBuf)>, CheckpointError> {
    let entries = match fs::read_dir(task_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CheckpointError::io(task_dir, "read directory", e)),
    };
    let mut steps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CheckpointError::io(task_dir, "read directory", e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(step) = parse_name(name, "step-", 6) {
            if path.is_dir() {
                steps.push((step, path));
            } else {
                warnings.push(format!("ignoring {}: not a directory", path.display()));
            }
        } else if let Some((_, why)) = leftover(name) {
            warnings.push(format!("ignoring {}: {why}", path.display()));
        } else if name.starts_with("step-") {
            warnings.push(format!("ignoring {}: not a checkpoint name", path.display()));
        }
    }
    steps.sort();
    Ok(steps)
}

/// `(step, why)` when `name` is a step name with a leftover suffix.
pub(crate) fn leftover(name: &str) -> Option<(usize, &'static str)> {
    LEFTOVERS.iter().find_map(|&(suffix, why)| {
        let step = parse_name(name.strip_suffix(suffix)?, "step-", 6)?;
        Some((step, why))
    })
}

/// Streams file `name` of `dir` through SHA-256, checking size and hash against `entry`;
/// returns the bytes when `keep`. Never reads more than the manifest's size plus one byte.
fn read_checked(dir: &Path, name: &str, entry: &FileEntry, keep: bool) -> Result<Vec<u8>, CheckpointError> {
    check_file_name(dir, name)?;
    let path = dir.join(name);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CheckpointError::MissingFile { dir: dir.to_path_buf(), name: name.to_string() })
        }
        Err(e) => return Err(CheckpointError::io(&path, "open", e)),
    };
    let meta = file.metadata().map_err(|e| CheckpointError::io(&path, "stat", e))?;
    if !meta.is_file() {
        return Err(CheckpointError::NotAFile { path });
    }
    let size_mismatch = |got| CheckpointError::SizeMismatch { path: path.clone(), expected: entry.bytes, got };
    if meta.len() != entry.bytes {
        return Err(size_mismatch(meta.len()));
    }
    let mut data = Vec::new();
    if keep {
        let want = usize::try_from(entry.bytes).map_err(|_| size_mismatch(meta.len()))?;
        data.try_reserve_exact(want).map_err(|_| {
            let e = io::Error::new(io::ErrorKind::OutOfMemory, "cannot allocate the file's size");
            CheckpointError::io(&path, "read", e)
        })?;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let mut reader = file.take(entry.bytes.saturating_add(1));
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CheckpointError::io(&path, "read", e)),
        };
        let chunk = buf.get(..n).unwrap_or(&buf);
        hasher.update(chunk);
        if keep {
            data.extend_from_slice(chunk);
        }
        got += n as u64;
    }
    // The file changed between the stat and the read.
    if got != entry.bytes {
        return Err(size_mismatch(got));
    }
    let digest = hex(&hasher.finalize());
    if digest != entry.sha256 {
        return Err(CheckpointError::HashMismatch {
            path,
            name: name.to_string(),
            expected: entry.sha256.clone(),
            got: digest,
        });
    }
    Ok(data)
}
