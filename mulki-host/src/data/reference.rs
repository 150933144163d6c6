//! ZSCL's reference set: a folder of images (any depth, sorted by path) paired line by line
//! with a captions file, and its sampler (the epoch permutation, on its own stream).
use std::path::{Path, PathBuf};

use super::sampler::EpochSampler;
use super::{is_image_path, DataError, Item, Source, Split};

/// Keeps reference batches independent of the task's own sampling order.
const SALT: u64 = 0x7265_6665_7265_6e63; // "referenc"

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceSet {
    /// Image files, sorted by path.
    pub images: Vec<PathBuf>,
    /// `captions[i]` describes `images[i]`.
    pub captions: Vec<String>,
}

impl ReferenceSet {
    /// Lists `images_dir` recursively and reads one caption per line of `captions_file` (LF or
    /// CRLF; a final newline is optional). Empty lines and a count mismatch are errors.
    pub fn load(images_dir: &Path, captions_file: &Path) -> Result<Self, DataError> {
        if !images_dir.is_dir() {
            return Err(DataError::MissingDataset { path: images_dir.to_path_buf() });
        }
        let mut images = Vec::new();
        walk(images_dir, &mut images)?;
        images.sort();
        if images.is_empty() {
            return Err(DataError::NoImages { path: images_dir.to_path_buf() });
        }
        let text = std::fs::read_to_string(captions_file)
            .map_err(|source| DataError::Io { path: captions_file.to_path_buf(), source })?;
        let mut captions = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                return Err(DataError::EmptyCaption { path: captions_file.to_path_buf(), line: i + 1 });
            }
            captions.push(line.to_string());
        }
        if captions.len() != images.len() {
            return Err(DataError::CaptionCount {
                images: images_dir.to_path_buf(),
                n_images: images.len(),
                captions: captions_file.to_path_buf(),
                n_captions: captions.len(),
            });
        }
        Ok(ReferenceSet { images, captions })
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The images as a split whose label is the caption index (for a [`super::Loader`]).
    pub fn split(&self) -> Split {
        let items =
            self.images.iter().enumerate().map(|(label, p)| Item { source: Source::File(p.clone()), label }).collect();
        Split { items, classes: self.len() }
    }

    /// The reference batch sampler for `task` (epoch permutations on a salted seed).
    pub fn sampler(&self, seed: u64, task: u64) -> EpochSampler {
        EpochSampler::new(self.len(), seed ^ SALT, task)
    }
}

/// Image files under `dir`, recursively (symlinked folders are not followed, so no cycles).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            walk(&path, out)?;
        } else if is_image_path(&path) && path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}
