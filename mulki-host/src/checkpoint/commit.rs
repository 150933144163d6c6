//! Writing checkpoints: [`commit`] (files into `step-NNNNNN.tmp/`, manifest last, fsync, rename
//! into place) and [`rotate`] (drop old periodic checkpoints of a task). Every filesystem effect
//! goes through a [`Storage`], so tests can fill the disk or crash at any point.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::manifest::{
    check_file_name, read_manifest_at, sha256_hex, step_dir_name, task_dir_name, FileEntry, Kind, Manifest,
    MANIFEST_FILE,
};
use super::scan::{leftover, list_steps, verify};
use super::storage::{CrashPoint, Storage};
use super::CheckpointError;

/// `step-NNNNNN` with a suffix, next to the final directory.
fn sibling(task_dir: &Path, step: usize, suffix: &str) -> PathBuf {
    task_dir.join(format!("{}{suffix}", step_dir_name(step)))
}

/// Writes checkpoint `run_dir/task-TT/step-NNNNNN` holding `files` and its manifest, and
/// returns its path.
///
/// The manifest is the commit record and the rename makes it visible, so at every instant the
/// final name holds either nothing, the previous checkpoint of that step, or the complete new
/// one; a failure removes the `.tmp` directory (best effort) and leaves every committed
/// checkpoint as it was. Re-committing an existing step renames the old one aside
/// (`.old`), renames the new one in and only then deletes the old one; a crash between the
/// two renames leaves the step absent (older checkpoints are found instead) with both copies
/// on disk. An error after the rename (syncing the parent) means the checkpoint is complete
/// but may not be durable.
#[allow(clippy::too_many_arguments)]
pub fn commit(
    run_dir: &Path, task: usize, step: usize, kind: Kind, config_hash: &str, files: &[(&str, &[u8])],
    storage: &dyn Storage,
) -> Result<PathBuf, CheckpointError> {
    let task_dir = run_dir.join(task_dir_name(task));
    let tmp = sibling(&task_dir, step, ".tmp");
    let mut seen = BTreeSet::new();
    for (name, _) in files {
        check_file_name(&tmp, name)?;
        if !seen.insert(*name) {
            return Err(CheckpointError::BadFileName { dir: tmp, name: name.to_string(), reason: "given twice" });
        }
    }

    let run_created = !run_dir.is_dir();
    let task_created = !task_dir.is_dir();
    if task_created {
        storage.create_dir(&task_dir).map_err(|e| CheckpointError::io(&task_dir, "create directory", e))?;
    }
    if tmp.symlink_metadata().is_ok() {
        storage.remove_dir(&tmp).map_err(|e| CheckpointError::io(&tmp, "remove stale directory", e))?;
    }
    storage.create_dir(&tmp).map_err(|e| CheckpointError::io(&tmp, "create directory", e))?;

    match write_and_rename(&task_dir, &tmp, task, step, kind, config_hash, files, storage) {
        Ok(final_dir) => {
            finish(run_dir, &task_dir, step, run_created, task_created, storage)?;
            Ok(final_dir)
        }
        Err(e) => {
            // Best effort: the original error is the one worth reporting, and a leftover
            // `.tmp` is ignored by readers and removed by the next commit of this step.
            let _ = storage.remove_dir(&tmp);
            Err(e)
        }
    }
}

/// Everything from the first file to the rename into place; on error, the final name holds
/// what it held before.
#[allow(clippy::too_many_arguments)]
fn write_and_rename(
    task_dir: &Path, tmp: &Path, task: usize, step: usize, kind: Kind, config_hash: &str, files: &[(&str, &[u8])],
    storage: &dyn Storage,
) -> Result<PathBuf, CheckpointError> {
    let crash =
        |point: CrashPoint| storage.at(point).map_err(|e| CheckpointError::io(tmp, format!("crash point {point}"), e));
    let mut manifest = Manifest::new(task, step, kind, config_hash);
    for (i, (name, bytes)) in files.iter().enumerate() {
        let path = tmp.join(name);
        storage.write_file(&path, bytes).map_err(|e| CheckpointError::io(&path, "write file", e))?;
        let entry = FileEntry { sha256: sha256_hex(bytes), bytes: bytes.len() as u64 };
        manifest.files.insert(name.to_string(), entry);
        crash(CrashPoint::AfterFile(i))?;
    }
    crash(CrashPoint::BeforeManifest)?;
    let manifest_path = tmp.join(MANIFEST_FILE);
    let text = manifest
        .to_json()
        .map_err(|e| CheckpointError::Encode { path: manifest_path.clone(), message: e.to_string() })?;
    storage.write_file(&manifest_path, &text).map_err(|e| CheckpointError::io(&manifest_path, "write manifest", e))?;
    // The files' directory entries must be durable before the rename publishes them.
    storage.sync_dir(tmp).map_err(|e| CheckpointError::io(tmp, "sync directory", e))?;
    crash(CrashPoint::AfterManifest)?;

    let final_dir = task_dir.join(step_dir_name(step));
    let old = sibling(task_dir, step, ".old");
    if old.symlink_metadata().is_ok() {
        storage.remove_dir(&old).map_err(|e| CheckpointError::io(&old, "remove stale directory", e))?;
    }
    let replacing = final_dir.symlink_metadata().is_ok();
    if replacing {
        storage.rename(&final_dir, &old).map_err(|e| CheckpointError::io(&final_dir, "rename aside", e))?;
    }
    let rename_in = crash(CrashPoint::BeforeRename).and_then(|()| {
        storage.rename(tmp, &final_dir).map_err(|e| CheckpointError::io(&final_dir, "rename into place", e))
    });
    if let Err(e) = rename_in {
        if replacing {
            // Put the previous checkpoint back under its name.
            let _ = storage.rename(&old, &final_dir);
        }
        return Err(e);
    }
    crash(CrashPoint::AfterRename)?;
    Ok(final_dir)
}

/// After the rename: make it durable, then drop a replaced checkpoint.
fn finish(
    run_dir: &Path, task_dir: &Path, step: usize, run_created: bool, task_created: bool, storage: &dyn Storage,
) -> Result<(), CheckpointError> {
    let sync = |dir: &Path| storage.sync_dir(dir).map_err(|e| CheckpointError::io(dir, "sync directory", e));
    sync(task_dir)?;
    if task_created {
        sync(run_dir)?;
        if run_created {
            if let Some(parent) = run_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync(parent)?;
            }
        }
    }
    let old = sibling(task_dir, step, ".old");
    if old.symlink_metadata().is_ok() {
        // The new checkpoint is committed and durable; a leftover `.old` only costs space, is
        // ignored by readers and removed by the next commit of this step or rotation.
        let _ = storage.remove_dir(&old);
    }
    Ok(())
}

/// Deletes all but the newest `keep_periodic` periodic checkpoints of `task`; task-end
/// checkpoints are never deleted. Returns the deleted directories.
///
/// The kept checkpoints are verified (hashes included) and only intact ones count towards
/// `keep_periodic`, so rotation never leaves a task with only damaged periodic checkpoints.
/// Directories whose manifest cannot be read are left alone: they might be task ends. A
/// checkpoint is renamed to `.del` before it is removed, so a crash mid-delete never leaves a
/// half-deleted directory under a checkpoint name. Stale `.del` directories, and `.old` ones
/// whose step has been committed again, are removed too.
pub fn rotate(
    run_dir: &Path, task: usize, keep_periodic: usize, storage: &dyn Storage,
) -> Result<Vec<PathBuf>, CheckpointError> {
    let task_dir = run_dir.join(task_dir_name(task));
    let mut ignored = Vec::new();
    let steps = list_steps(&task_dir, &mut ignored)?;
    remove_leftovers(&task_dir, storage)?;

    let mut kept = 0;
    let mut removed = Vec::new();
    for (step, dir) in steps.into_iter().rev() {
        let Ok(manifest) = read_manifest_at(&dir) else {
            continue;
        };
        if manifest.kind != Kind::Periodic || manifest.task != task {
            continue;
        }
        if kept < keep_periodic {
            if verify(&dir).is_ok() {
                kept += 1;
            }
            continue;
        }
        let del = sibling(&task_dir, step, ".del");
        if del.symlink_metadata().is_ok() {
            storage.remove_dir(&del).map_err(|e| CheckpointError::io(&del, "remove stale directory", e))?;
        }
        storage.rename(&dir, &del).map_err(|e| CheckpointError::io(&dir, "rename aside for deletion", e))?;
        storage.sync_dir(&task_dir).map_err(|e| CheckpointError::io(&task_dir, "sync directory", e))?;
        storage.remove_dir(&del).map_err(|e| CheckpointError::io(&del, "remove directory", e))?;
        removed.push(dir);
    }
    Ok(removed)
}

/// Removes `.del` directories and `.old` ones superseded by a committed step of the same number.
fn remove_leftovers(task_dir: &Path, storage: &dyn Storage) -> Result<(), CheckpointError> {
    let Ok(entries) = std::fs::read_dir(task_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((step, _)) = leftover(name) else {
            continue;
        };
        let superseded = name.ends_with(".old") && task_dir.join(step_dir_name(step)).is_dir();
        if name.ends_with(".del") || superseded {
            let path = entry.path();
            storage.remove_dir(&path).map_err(|e| CheckpointError::io(&path, "remove leftover directory", e))?;
        }
    }
    Ok(())
}
