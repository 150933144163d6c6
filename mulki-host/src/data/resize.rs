//! Antialiased bicubic resampling, bit-exact with torchvision's `resize(BICUBIC, antialias=True)`
//! on uint8 tensors (what HF's `CLIPImageProcessor` runs): PIL's separable filter (a = -0.5,
//! support scaled by the downscale factor, edge windows renormalised), horizontal pass first,
//! each pass in int16 fixed point rounded and clipped to u8 (PIL does the same with 22-bit weights).
use image::RgbImage;

/// A rectangle in pixels: `top`/`left` corner and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// PIL's bicubic kernel with a = -0.5 (torch uses it too when antialiasing).
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Fixed-point taps of one output sample: first input index and weights scaled by
/// 2^precision.
struct Taps {
    start: usize,
    weights: Vec<i32>,
}

/// One output sample's window and normalised weights (torch's
/// `_compute_indices_min_size_weights_aa`, in f64 as its uint8 path computes them).
fn window(input: usize, scale: f64, i: usize) -> (usize, Vec<f64>) {
    let (support, inv) = if scale >= 1.0 { (2.0 * scale, 1.0 / scale) } else { (2.0, 1.0) };
    let center = scale * (i as f64 + 0.5);
    // `as` truncates toward zero, as C's int conversion does.
    let lo = ((center - support + 0.5) as i64).max(0) as usize;
    let hi = ((center + support + 0.5) as i64).clamp(0, input as i64) as usize;
    let mut w: Vec<f64> = (lo..hi).map(|j| cubic((j as f64 - center + 0.5) * inv)).collect();
    let total: f64 = w.iter().sum();
    if total != 0.0 {
        for x in &mut w {
            *x /= total;
        }
    }
    (lo, w)
}

/// Passes longer than this scan only part of their outputs for the largest weight.
const FULL_SCAN: usize = 1 << 16;

/// Taps of the outputs in `keep` when `input` samples become `output`. The precision is torch's
/// (`_compute_index_ranges_int16_weights`): the largest that keeps the largest weight of the
/// whole pass (kept or not) below 2^15 with one bit to spare. For absurd aspect ratios (a pass
/// longer than [`FULL_SCAN`]) the largest weight is taken over the kept outputs and both ends
/// only, so work stays bounded; the precision could then differ from torch's by a bit.
fn taps(input: usize, output: usize, keep: std::ops::Range<usize>) -> (Vec<Taps>, u32) {
    let scale = input as f64 / output as f64;
    let mut wt_max = 0f64;
    let mut kept = Vec::with_capacity(keep.len());
    let ends = 64.min(output);
    let scanned: Box<dyn Iterator<Item = usize>> = if output <= FULL_SCAN {
        Box::new(0..output)
    } else {
        let (a, b) = (keep.start.max(ends), keep.end.min(output - ends));
        Box::new((0..ends).chain(a..b.max(a)).chain(output - ends..output))
    };
    for i in scanned {
        let (lo, w) = window(input, scale, i);
        wt_max = w.iter().fold(wt_max, |m, &x| m.max(x));
        if keep.contains(&i) {
            kept.push((lo, w));
        }
    }
    let mut precision = 0;
    while precision < 22 {
        let next = (0.5 + wt_max * f64::from(1u32 << (precision + 1))) as i64;
        if next >= 1 << 15 {
            break;
        }
        precision += 1;
    }
    let scale = f64::from(1u32 << precision);
    let taps = kept
        .into_iter()
        .map(|(start, w)| {
            let weights = w
                .iter()
                .map(|&x| {
                    let v = x * scale;
                    // Round half away from zero.
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            Taps { start, weights }
        })
        .collect();
    (taps, precision)
}

/// The fixed-point accumulator's start: one half, for rounding.
fn half(precision: u32) -> i32 {
    if precision > 0 {
        1 << (precision - 1)
    } else {
        0
    }
}

/// A fixed-point sum back to u8: shift, then clip as torch's saturating packs do.
#[inline]
fn to_u8(acc: i32, precision: u32) -> u8 {
    (acc >> precision).clamp(0, 255) as u8
}

/// Resamples the `src` window of `img` to `out_w`×`out_h` and returns only the `keep` window of
/// that result (a centre crop need not compute the columns it drops, which also bounds memory
/// for extreme aspect ratios). A dimension whose size does not change is copied, as torch skips
/// that pass.
pub fn resize_bicubic(img: &RgbImage, src: CropBox, out_w: usize, out_h: usize, keep: CropBox) -> RgbImage {
    assert!(src.left + src.width <= img.width() as usize);
    assert!(src.top + src.height <= img.height() as usize);
    assert!(keep.left + keep.width <= out_w && keep.top + keep.height <= out_h);
    let stride = img.width() as usize * 3;
    let data = img.as_raw();
    let (kw, kh) = (keep.width, keep.height);

    // Source rows the vertical pass reads (the kept rows when there is no vertical pass).
    let vtaps = (src.height != out_h).then(|| taps(src.height, out_h, keep.top..keep.top + kh));
    let (r0, r1) = match &vtaps {
        Some((t, _)) => (
            t.iter().map(|t| t.start).min().unwrap_or(0),
            t.iter().map(|t| t.start + t.weights.len()).max().unwrap_or(0),
        ),
        None => (keep.top, keep.top + kh),
    };

    // Horizontal pass over rows r0..r1 of the window, columns of `keep` only, to u8.
    let rows = r1 - r0;
    let mut tmp = vec![0u8; rows * kw * 3];
    let htaps = (src.width != out_w).then(|| taps(src.width, out_w, keep.left..keep.left + kw));
    for r in 0..rows {
        let line = &data[(src.top + r0 + r) * stride..][..stride];
        let out = &mut tmp[r * kw * 3..][..kw * 3];
        match &htaps {
            Some((ht, p)) => {
                for (o, t) in out.chunks_exact_mut(3).zip(ht) {
                    let from = (src.left + t.start) * 3;
                    let seg = &line[from..from + t.weights.len() * 3];
                    let mut acc = [half(*p); 3];
                    for (px, &w) in seg.chunks_exact(3).zip(&t.weights) {
                        for c in 0..3 {
                            acc[c] += i32::from(px[c]) * w;
                        }
                    }
                    for c in 0..3 {
                        o[c] = to_u8(acc[c], *p);
                    }
                }
            }
            None => {
                let from = (src.left + keep.left) * 3;
                out.copy_from_slice(&line[from..from + kw * 3]);
            }
        }
    }

    let Some((vt, p)) = vtaps else {
        return RgbImage::from_raw(kw as u32, kh as u32, tmp).unwrap_or_default();
    };
    // Vertical pass: whole rows at a time, so the inner loop runs along contiguous memory.
    let row = kw * 3;
    let mut out = vec![0u8; row * kh];
    let mut acc = vec![0i32; row];
    for (o, t) in out.chunks_exact_mut(row).zip(&vt) {
        acc.fill(half(p));
        for (j, &w) in t.weights.iter().enumerate() {
            let src_row = &tmp[(t.start + j - r0) * row..][..row];
            for (a, &v) in acc.iter_mut().zip(src_row) {
                *a += i32::from(v) * w;
            }
        }
        for (o, &a) in o.iter_mut().zip(&acc) {
            *o = to_u8(a, p);
        }
    }
    RgbImage::from_raw(kw as u32, kh as u32, out).unwrap_or_default()
}
