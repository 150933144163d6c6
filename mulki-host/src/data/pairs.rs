//! Image–caption pairs for pretraining: a TSV file of `path<TAB>caption` lines (paths relative
//! to the file's folder), as `scripts/get-offline-data.sh` writes `pairs.tsv`.
use std::path::{Path, PathBuf};

use super::transform::eval_transform;
use super::{load_rgb8, DataError};

/// One parsed line: the image path (resolved against the TSV's folder) and its caption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairLine {
    pub image: PathBuf,
    pub caption: String,
}

/// Parses the TSV text of `file` (LF or CRLF; a final newline is optional). Every line must hold
/// a non-empty path, a tab and a non-empty caption.
pub fn parse_pairs(text: &str, file: &Path) -> Result<Vec<PairLine>, DataError> {
    let base = file.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let bad = |reason: &str| DataError::Csv { path: file.to_path_buf(), line: i + 1, reason: reason.into() };
        let (image, caption) = line.split_once('\t').ok_or_else(|| bad("expected `path<TAB>caption`"))?;
        if image.is_empty() {
            return Err(bad("empty image path"));
        }
        if caption.trim().is_empty() {
            return Err(bad("empty caption"));
        }
        out.push(PairLine { image: base.join(image), caption: caption.to_string() });
    }
    if out.is_empty() {
        return Err(DataError::NoImages { path: file.to_path_buf() });
    }
    Ok(out)
}

/// Every pair of a TSV file, decoded and preprocessed once (CLIP's eval transform at `side`).
#[derive(Clone, Debug, PartialEq)]
pub struct PairSet {
    /// [n, 3, side, side], CLIP-normalised.
    pub pixels: Vec<f32>,
    pub captions: Vec<String>,
    pub side: usize,
}

impl PairSet {
    pub fn load(file: &Path, side: usize) -> Result<Self, DataError> {
        let text =
            std::fs::read_to_string(file).map_err(|source| DataError::Io { path: file.to_path_buf(), source })?;
        let lines = parse_pairs(&text, file)?;
        let mut pixels = Vec::with_capacity(lines.len() * 3 * side * side);
        let mut captions = Vec::with_capacity(lines.len());
        for l in lines {
            let img = load_rgb8(&l.image)?;
            pixels.extend(eval_transform(&img, side));
            captions.push(l.caption);
        }
        Ok(PairSet { pixels, captions, side })
    }

    pub fn len(&self) -> usize {
        self.captions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }

    /// Pixels of pair `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = 3 * self.side * self.side;
        &self.pixels[i * n..(i + 1) * n]
    }
}
