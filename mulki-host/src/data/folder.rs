//! ImageFolder listing: `root/<split>/<class folder>/*.{png,jpg,jpeg}` as torchvision's
//! `ImageFolder`, except that classes come from the config (in its order) rather than from the
//! sorted folder names, and only a class folder's direct files are taken, sorted by path.
use std::path::{Path, PathBuf};

use super::{is_image_path, DataError, Item, Source, Split};

/// What is on disk for one split, before judging it.
pub(crate) struct FolderScan {
    pub dir: PathBuf,
    /// Image files per class, sorted; empty for a missing folder.
    pub per_class: Vec<Vec<PathBuf>>,
    /// Class folders that are not on disk.
    pub missing: Vec<String>,
    /// Folders on disk (not hidden) that match no class, sorted.
    pub extra: Vec<String>,
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        out.push(entry.map_err(io)?.path());
    }
    out.sort();
    Ok(out)
}

pub(crate) fn scan(root: &Path, split: &str, names: &[String]) -> Result<FolderScan, DataError> {
    let dir = root.join(split);
    if !dir.is_dir() {
        return Err(DataError::MissingSplit { path: dir, split: split.into() });
    }
    let mut extra = Vec::new();
    for p in read_dir(&dir)? {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name {
            if p.is_dir() && !name.starts_with('.') && !names.contains(&name) {
                extra.push(name);
            }
        }
    }
    let mut missing = Vec::new();
    let mut per_class = Vec::with_capacity(names.len());
    for name in names {
        let class_dir = dir.join(name);
        if !class_dir.is_dir() {
            missing.push(name.clone());
            per_class.push(Vec::new());
            continue;
        }
        let files = read_dir(&class_dir)?.into_iter().filter(|p| is_image_path(p) && p.is_file()).collect();
        per_class.push(files);
    }
    Ok(FolderScan { dir, per_class, missing, extra })
}

/// Lists one split; every class folder must exist and hold an image, and no other folder may.
pub fn list(root: &Path, split: &str, names: &[String]) -> Result<Split, DataError> {
    let scan = scan(root, split, names)?;
    if !scan.missing.is_empty() || !scan.extra.is_empty() {
        return Err(DataError::ClassFolders { dir: scan.dir, missing: scan.missing, extra: scan.extra });
    }
    if let Some(c) = scan.per_class.iter().position(Vec::is_empty) {
        return Err(DataError::EmptyClass { dir: scan.dir.join(&names[c]), class: names[c].clone() });
    }
    let items = scan
        .per_class
        .into_iter()
        .enumerate()
        .flat_map(|(label, files)| files.into_iter().map(move |p| Item { source: Source::File(p), label }))
        .collect();
    Ok(Split { items, classes: names.len() })
}
