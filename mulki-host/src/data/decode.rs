//! Decoding png/jpeg files to RGB8 the way HF's `CLIPImageProcessor` sees them: PIL's
//! `Image.open` followed by transformers' `convert_to_rgb` (grayscale replicated, transparency
//! composited onto white with PIL's `alpha_composite` arithmetic, 16-bit keeping the high byte as
//! PIL's 16-bit RGB decoder does).
use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage};

/// Decoded images may take at most this much memory (a crafted header cannot make us allocate
/// more).
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read image: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot decode image: {source}")]
    Decode { path: PathBuf, source: image::ImageError },
}

/// Reads and decodes `path` (png or jpeg, whatever its extension says) to RGB8.
pub fn load_rgb8(path: &Path) -> Result<RgbImage, ImageError> {
    let read = |source| ImageError::Read { path: path.to_path_buf(), source };
    let decode = |source| ImageError::Decode { path: path.to_path_buf(), source };
    let mut reader = image::ImageReader::open(path).map_err(read)?.with_guessed_format().map_err(read)?;
    reader.limits(limits());
    Ok(to_rgb8(reader.decode().map_err(decode)?))
}

/// Decodes an in-memory png or jpeg to RGB8 (same limits and conversion as [`load_rgb8`]).
pub fn decode_rgb8(bytes: &[u8]) -> Result<RgbImage, image::ImageError> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    reader.limits(limits());
    Ok(to_rgb8(reader.decode()?))
}

fn limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
}

/// Converts any decoded image to RGB8 as transformers' `convert_to_rgb` does on a PIL image.
pub fn to_rgb8(img: DynamicImage) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let from_fn = |f: &dyn Fn(usize) -> [u8; 3]| {
        let mut out = RgbImage::new(w, h);
        for (i, p) in out.pixels_mut().enumerate() {
            p.0 = f(i);
        }
        out
    };
    // 16-bit samples keep their high byte (PIL's `RGB;16B` raw mode). The indexing below stays
    // in bounds: an `ImageBuffer` holds at least `w·h·channels` samples.
    let hi = |x: u16| (x >> 8) as u8;
    match img {
        DynamicImage::ImageRgb8(im) => im,
        DynamicImage::ImageLuma8(im) => {
            let d = im.as_raw();
            from_fn(&|i| [d[i]; 3])
        }
        DynamicImage::ImageLumaA8(im) => {
            let d = im.as_raw();
            from_fn(&|i| [over_white(d[2 * i], d[2 * i + 1]); 3])
        }
        DynamicImage::ImageRgba8(im) => {
            let d = im.as_raw();
            from_fn(&|i| {
                let a = d[4 * i + 3];
                [0, 1, 2].map(|c| over_white(d[4 * i + c], a))
            })
        }
        DynamicImage::ImageLuma16(im) => {
            let d = im.as_raw();
            from_fn(&|i| [hi(d[i]); 3])
        }
        DynamicImage::ImageLumaA16(im) => {
            let d = im.as_raw();
            from_fn(&|i| [over_white(hi(d[2 * i]), hi(d[2 * i + 1])); 3])
        }
        DynamicImage::ImageRgb16(im) => {
            let d = im.as_raw();
            from_fn(&|i| [0, 1, 2].map(|c| hi(d[3 * i + c])))
        }
        DynamicImage::ImageRgba16(im) => {
            let d = im.as_raw();
            from_fn(&|i| {
                let a = hi(d[4 * i + 3]);
                [0, 1, 2].map(|c| over_white(hi(d[4 * i + c]), a))
            })
        }
        other => other.to_rgb8(),
    }
}

/// One channel of PIL's `alpha_composite(white, src)`, in PIL's fixed-point arithmetic (7 extra
/// bits, divisions by 255 done as shifts) so results match to the last bit.
pub fn over_white(v: u8, a: u8) -> u8 {
    const PRECISION_BITS: u32 = 7;
    let div255 = |x: u32| ((x >> 8) + x) >> 8;
    if a == 0 {
        return 255;
    }
    let (v, a) = (u32::from(v), u32::from(a));
    let blend = 255 * (255 - a);
    let outa255 = a * 255 + blend;
    let coef1 = a * 255 * 255 * (1 << PRECISION_BITS) / outa255;
    let coef2 = 255 * (1 << PRECISION_BITS) - coef1;
    let tmp = v * coef1 + 255 * coef2;
    (div255(tmp + (0x80 << PRECISION_BITS)) >> PRECISION_BITS) as u8
}

/// A grayscale raster (an IDX record) as RGB, as PIL's `convert("RGB")` replicates `L`.
pub fn gray_to_rgb8(width: u32, height: u32, pixels: &[u8]) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    for (p, &g) in out.pixels_mut().zip(pixels) {
        p.0 = [g; 3];
    }
    out
}
