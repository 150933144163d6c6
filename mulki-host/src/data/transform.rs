//! CLIP's image transforms. Eval mirrors HF's `CLIPImageProcessor` (resize the shorter side with
//! `int()` for the longer, centre crop at `int((h - size) / 2)`, rescale 1/255, normalise);
//! train mirrors torchvision's `RandomResizedCrop(size, scale=(0.9, 1), ratio=(3/4, 4/3),
//! BICUBIC)` followed by the same normalisation. Output layout is [3, size, size].
use image::RgbImage;
use mulki_core::rng::Rng;

use super::resize::{resize_bicubic, CropBox};

/// CLIP's per-channel mean and std (OpenAI's preprocessing).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_7];
pub const CLIP_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

/// Size after resizing the shorter side of a `w`×`h` image to `size`: HF's
/// `get_resize_output_image_size` (and torchvision's `Resize(int)`) truncate the longer side.
pub fn eval_resize_dims(w: usize, h: usize, size: usize) -> (usize, usize) {
    let long = |l: usize, s: usize| ((size as u64 * l as u64) as f64 / s as f64) as usize;
    if w <= h {
        (size, long(h, w))
    } else {
        (long(w, h), size)
    }
}

/// The eval transform up to the centre crop: `size`×`size` RGB8, before rescaling. Only the
/// cropped window is resampled. An empty image or `size == 0` gives a black image.
pub fn eval_crop(img: &RgbImage, size: usize) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 || size == 0 {
        return RgbImage::new(size as u32, size as u32);
    }
    let (nw, nh) = eval_resize_dims(w, h, size);
    // HF's centre crop: int((n - size) / 2.0), i.e. floor (torchvision's CenterCrop rounds).
    let keep = CropBox { top: (nh - size) / 2, left: (nw - size) / 2, height: size, width: size };
    let src = CropBox { top: 0, left: 0, height: h, width: w };
    resize_bicubic(img, src, nw, nh, keep)
}

/// The whole eval transform: [3, size, size] CLIP-normalised values.
pub fn eval_transform(img: &RgbImage, size: usize) -> Vec<f32> {
    let mut out = vec![0f32; 3 * size * size];
    normalize_into(&eval_crop(img, size), &mut out);
    out
}

/// Rescales by 1/255 and normalises by CLIP's mean and std into `out` ([3, h, w]). HF fuses the
/// two into `(x - 255·mean) / (255·std)`; the difference is a few f32 ulps.
pub fn normalize_into(img: &RgbImage, out: &mut [f32]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    assert_eq!(out.len(), 3 * w * h, "normalize_into: output size");
    let data = img.as_raw();
    for c in 0..3 {
        let (m, s) = (CLIP_MEAN[c], CLIP_STD[c]);
        for (i, o) in out[c * w * h..(c + 1) * w * h].iter_mut().enumerate() {
            *o = (f32::from(data[3 * i + c]) / 255.0 - m) / s;
        }
    }
}

/// torchvision's `RandomResizedCrop`, drawing from a [`Rng`] instead of torch's generator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomResizedCrop {
    pub size: usize,
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f64, f64),
    /// Range of the crop's width/height, sampled log-uniformly.
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// CLIP fine-tuning's augmentation (as ZSCL): scale (0.9, 1), ratio (3/4, 4/3).
    pub fn clip(size: usize) -> Self {
        RandomResizedCrop { size, scale: (0.9, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) }
    }

    /// torchvision's `get_params` for a `width`×`height` image: ten tries at a random area and
    /// log-uniform aspect ratio, then the largest central crop within the ratio range.
    pub fn params(&self, width: usize, height: usize, rng: &mut Rng) -> CropBox {
        let area = (width * height) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * (self.scale.0 + (self.scale.1 - self.scale.0) * rng.uniform());
            let aspect = (lr0 + (lr1 - lr0) * rng.uniform()).exp();
            // Python's round() is round-half-even.
            let w = (target * aspect).sqrt().round_ties_even() as usize;
            let h = (target / aspect).sqrt().round_ties_even() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.below((height - h + 1) as u64) as usize;
                let left = rng.below((width - w + 1) as u64) as usize;
                return CropBox { top, left, height: h, width: w };
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (rmin, rmax) = (self.ratio.0.min(self.ratio.1), self.ratio.0.max(self.ratio.1));
        let (w, h) = if in_ratio < rmin {
            (width, (width as f64 / rmin).round_ties_even() as usize)
        } else if in_ratio > rmax {
            ((height as f64 * rmax).round_ties_even() as usize, height)
        } else {
            (width, height)
        };
        CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
    }

    /// Draws a box and resizes it to `size`×`size` RGB8 (before rescaling).
    pub fn crop(&self, img: &RgbImage, rng: &mut Rng) -> RgbImage {
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w == 0 || h == 0 || self.size == 0 {
            return RgbImage::new(self.size as u32, self.size as u32);
        }
        resized_crop(img, self.params(w, h, rng), self.size)
    }
}

/// torchvision's `resized_crop(img, top, left, height, width, [size, size], BICUBIC,
/// antialias=True)`: the box (inside the image) resampled to `size`×`size`.
pub fn resized_crop(img: &RgbImage, src: CropBox, size: usize) -> RgbImage {
    let keep = CropBox { top: 0, left: 0, height: size, width: size };
    resize_bicubic(img, src, size, size, keep)
}

/// Which transform a batch gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transform {
    /// Resize the shorter side, centre crop, normalise (HF `CLIPImageProcessor`).
    Eval { size: usize },
    /// Random resized crop, normalise.
    Train(RandomResizedCrop),
}

impl Transform {
    /// Side of the square output.
    pub fn size(&self) -> usize {
        match self {
            Transform::Eval { size } => *size,
            Transform::Train(rrc) => rrc.size,
        }
    }

    /// Transforms `img` into `out` ([3, size, size]); `rng` is only drawn from by `Train`.
    pub fn apply(&self, img: &RgbImage, rng: &mut Rng, out: &mut [f32]) {
        let cropped = match self {
            Transform::Eval { size } => eval_crop(img, *size),
            Transform::Train(rrc) => rrc.crop(img, rng),
        };
        normalize_into(&cropped, out);
    }
}
