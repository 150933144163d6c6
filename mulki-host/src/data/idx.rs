//! IDX files (MNIST's format): `root/<split>-images-idx3-ubyte` and
//! `root/<split>-labels-idx1-ubyte`, each optionally gzipped (`.gz`). Magic, dimensions, counts
//! and lengths are validated before use; errors give the file and the byte offset.
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use super::decode::gray_to_rgb8;
use super::{DataError, Item, Source, Split};

/// At most this many records per file.
pub const MAX_RECORDS: u64 = 1 << 26;
/// At most this many rows and columns per image.
pub const MAX_SIDE: u64 = 4096;

/// A whole IDX images file in memory: `count` grayscale `rows`×`cols` records.
#[derive(Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub path: PathBuf,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pixels: Vec<u8>,
}

impl std::fmt::Debug for IdxImages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdxImages({}: {}×{}×{})", self.path.display(), self.count, self.rows, self.cols)
    }
}

impl IdxImages {
    /// Reads and validates an idx3 ubyte file (gzipped if its name ends in `.gz`).
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let (dims, pixels) = read_idx(path, 3)?;
        // `read_idx` returns exactly 3 dimensions, each within its limit, and `count·rows·cols`
        // pixels.
        let (count, rows, cols) = (dims[0] as usize, dims[1] as usize, dims[2] as usize);
        Ok(IdxImages { path: path.to_path_buf(), count, rows, cols, pixels })
    }

    /// Record `i`'s pixels, row-major. Panics if `i >= count` (splits only hold valid indices).
    pub fn record(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Record `i` as RGB8.
    pub fn rgb8(&self, i: usize) -> RgbImage {
        gray_to_rgb8(self.cols as u32, self.rows as u32, self.record(i))
    }
}

/// Reads and validates an idx1 ubyte labels file; every label must be `< classes`.
pub fn load_labels(path: &Path, classes: usize) -> Result<Vec<u8>, DataError> {
    let (_, labels) = read_idx(path, 1)?;
    if let Some(i) = labels.iter().position(|&l| usize::from(l) >= classes) {
        return Err(DataError::LabelOutOfRange {
            path: path.to_path_buf(),
            at: format!("record {i} (offset {})", 8 + i),
            label: u64::from(labels[i]),
            classes,
        });
    }
    Ok(labels)
}

/// Reads an unsigned-byte IDX file with `ndims` dimensions: the dimensions and the data.
fn read_idx(path: &Path, ndims: u8) -> Result<(Vec<u64>, Vec<u8>), DataError> {
    let bad = |offset: u64, reason: String| DataError::Idx { path: path.to_path_buf(), offset, reason };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let header_len = 4 + 4 * u64::from(ndims);
    let mut header = Vec::new();
    (&mut reader).take(header_len).read_to_end(&mut header).map_err(|e| bad(0, format!("cannot read header: {e}")))?;
    if header.len() < 4 {
        return Err(bad(header.len() as u64, format!("truncated: the header needs {header_len} bytes")));
    }
    let want = [0, 0, 0x08, ndims];
    if header[..4] != want {
        return Err(bad(
            0,
            format!("bad magic {:02x?}: expected {want:02x?} (unsigned bytes, {ndims} dimensions)", &header[..4]),
        ));
    }
    if (header.len() as u64) < header_len {
        return Err(bad(header.len() as u64, format!("truncated: the header needs {header_len} bytes")));
    }
    // `header_len` bytes were read, so there are exactly `ndims` (1 or 3) dimensions.
    let dims: Vec<u64> =
        header[4..].chunks_exact(4).map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))).collect();
    if dims[0] > MAX_RECORDS {
        return Err(bad(4, format!("{} records (at most {MAX_RECORDS})", dims[0])));
    }
    for (k, &d) in dims.iter().enumerate().skip(1) {
        if d == 0 || d > MAX_SIDE {
            return Err(bad(4 + 4 * k as u64, format!("dimension {k} is {d} (must be 1..={MAX_SIDE})")));
        }
    }
    // At most 2^26 · 4096² = 2^50: no overflow.
    let len: u64 = dims.iter().product();
    // Grows with what is actually read, so a lying header cannot make us allocate.
    let mut data = Vec::new();
    (&mut reader)
        .take(len)
        .read_to_end(&mut data)
        .map_err(|e| bad(header_len + data.len() as u64, format!("cannot read: {e}")))?;
    if (data.len() as u64) < len {
        return Err(bad(
            header_len + data.len() as u64,
            format!("truncated: dimensions {dims:?} need {len} data bytes, the file ends after {}", data.len()),
        ));
    }
    let mut extra = [0u8; 1];
    let n = reader.read(&mut extra).map_err(|e| bad(header_len + len, format!("cannot read: {e}")))?;
    if n > 0 {
        return Err(bad(header_len + len, format!("unexpected data after the last record (dimensions {dims:?})")));
    }
    Ok((dims, data))
}

/// The plain file if present, else its `.gz`.
fn find(root: &Path, name: &str, split: &str) -> Result<PathBuf, DataError> {
    let plain = root.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gz = root.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(DataError::MissingSplit { path: plain, split: split.into() })
}

/// Lists one split from its images and labels files.
pub fn list(root: &Path, split: &str, classes: usize) -> Result<Split, DataError> {
    let images_path = find(root, &format!("{split}-images-idx3-ubyte"), split)?;
    let labels_path = find(root, &format!("{split}-labels-idx1-ubyte"), split)?;
    let images = Arc::new(IdxImages::load(&images_path)?);
    let labels = load_labels(&labels_path, classes)?;
    if labels.len() != images.count {
        return Err(DataError::IdxCount {
            images: images_path,
            n_images: images.count,
            labels: labels_path,
            n_labels: labels.len(),
        });
    }
    if labels.is_empty() {
        return Err(DataError::NoImages { path: images_path });
    }
    let items = labels
        .iter()
        .enumerate()
        .map(|(index, &l)| Item { source: Source::Idx { images: Arc::clone(&images), index }, label: usize::from(l) })
        .collect();
    Ok(Split { items, classes })
}
