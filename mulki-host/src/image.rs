//! Image decoding (png, jpeg) and CLIP's evaluation transform: resize the shorter side to the
//! model's size with a bicubic filter, centre-crop, scale to [0, 1], normalise by CLIP's mean and
//! std, and lay out as [channels, side, side].
use std::path::{Path, PathBuf};

use image::imageops::FilterType;

/// CLIP's per-channel mean and std (OpenAI's preprocessing).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_7];
pub const CLIP_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

/// Decoded images may take at most this much memory (a crafted header cannot make us allocate
/// more).
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read image: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot decode image: {source}")]
    Decode {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// Decodes `path` and applies the evaluation transform for `side`×`side` inputs; returns
/// [3, side, side] CLIP-normalised values.
pub fn load_eval(path: &Path, side: usize) -> Result<Vec<f32>, ImageError> {
    let read = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let decode = |source| ImageError::Decode {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = image::ImageReader::open(path)
        .map_err(read)?
        .with_guessed_format()
        .map_err(read)?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(decode)?.to_rgb8();
    Ok(eval_transform(&img, side))
}

/// Resize (shorter side → `side`, bicubic with antialiasing, as PIL's `BICUBIC`), centre crop,
/// normalise. A degenerate 0-pixel image gives zeros.
pub fn eval_transform(img: &image::RgbImage, side: usize) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let mut out = vec![0f32; 3 * side * side];
    if w == 0 || h == 0 || side == 0 {
        return out;
    }
    let s = side as f64;
    let (nw, nh) = if w <= h {
        (
            side as u32,
            ((h as f64 * s / w as f64).round() as u32).max(side as u32),
        )
    } else {
        (
            ((w as f64 * s / h as f64).round() as u32).max(side as u32),
            side as u32,
        )
    };
    let resized = image::imageops::resize(img, nw, nh, FilterType::CatmullRom);
    let (x0, y0) = ((nw as usize - side) / 2, (nh as usize - side) / 2);
    for y in 0..side {
        for x in 0..side {
            let p = resized.get_pixel((x0 + x) as u32, (y0 + y) as u32);
            for ch in 0..3 {
                out[(ch * side + y) * side + x] =
                    (p[ch] as f32 / 255.0 - CLIP_MEAN[ch]) / CLIP_STD[ch];
            }
        }
    }
    out
}
