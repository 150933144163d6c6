//! Image decoding and CLIP's evaluation transform, kept at this path for the commands; the
//! implementation lives in [`crate::data`] (decode, resize, transform), which mirrors HF's
//! `CLIPImageProcessor`.
use std::path::Path;

pub use crate::data::decode::{ImageError, MAX_DECODED_BYTES};
pub use crate::data::transform::{eval_transform, CLIP_MEAN, CLIP_STD};

/// Decodes `path` and applies the evaluation transform for `side`×`side` inputs; returns
/// [3, side, side] CLIP-normalised values.
pub fn load_eval(path: &Path, side: usize) -> Result<Vec<f32>, ImageError> {
    Ok(eval_transform(&crate::data::load_rgb8(path)?, side))
}
