//! Parity of our decoder + eval transform with HF's `CLIPImageProcessor` on the inputs of
//! `fixtures/preprocess/` (real photos from the scikit-image / scikit-learn wheels and synthetic
//! images for every conversion to RGB), written by `fixtures/gen_preprocess.py`.
//!
//! PNG inputs decode exactly, so they measure the transform alone: it is bit-exact with HF's
//! (torchvision uint8) resize. JPEG inputs also measure the decoder: the `image` crate's
//! (zune-jpeg) IDCT and chroma upsampling round differently from libjpeg-turbo's, by up to a few
//! levels on single pixels, so they get a looser bound.
use std::collections::BTreeMap;

use mulki_host::data::decode::{load_rgb8, over_white};
use mulki_host::data::transform::{eval_crop, eval_transform, resized_crop, CLIP_STD};
use mulki_host::data::CropBox;
use mulki_tests::fixture::{fixtures_dir, Fixture};

/// Per-pixel tolerance before normalisation, in 1/255 steps.
const TOL_LEVELS: f64 = 2.0;
/// For JPEG inputs: decoder differences (measured: at most 3 at size 224).
const TOL_LEVELS_JPEG: f64 = 4.0;
/// ... and their mean absolute difference, in levels.
const TOL_MEAN_JPEG: f64 = 0.35;

fn is_jpeg(file: &str) -> bool {
    file.ends_with(".jpg") || file.ends_with(".jpeg")
}

fn expected() -> (Fixture, BTreeMap<String, String>) {
    let fx = Fixture::load(fixtures_dir().join("preprocess").join("expected.safetensors")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&fx.metadata()["fixture"]).unwrap();
    let inputs = serde_json::from_value(meta["inputs"].clone()).unwrap();
    (fx, inputs)
}

/// Largest |a - b|, mean |a - b| and the share of exactly equal values.
fn compare(ours: &[f64], theirs: &[f64]) -> (f64, f64, f64) {
    assert_eq!(ours.len(), theirs.len());
    let d: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).collect();
    let max = d.iter().copied().fold(0.0, f64::max);
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let same = d.iter().filter(|&&x| x == 0.0).count();
    (max, mean, same as f64 / d.len() as f64)
}

/// An RGB8 image as planar [3, h, w] values.
fn planar(img: &mulki_host::data::codec::RgbImage) -> Vec<f64> {
    let raw = img.as_raw();
    let n = raw.len() / 3;
    (0..3).flat_map(|c| (0..n).map(move |i| f64::from(raw[3 * i + c]))).collect()
}

fn input(name: &str, file: &str) -> mulki_host::data::codec::RgbImage {
    load_rgb8(&fixtures_dir().join("preprocess").join(file)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Our eval crop as [3, s, s] u8 values, for the comparison with `<name>.<s>.u8`.
fn ours_planar(name: &str, file: &str, size: usize) -> Vec<f64> {
    planar(&eval_crop(&input(name, file), size))
}

#[test]
fn eval_transform_matches_hf_clip_image_processor() {
    let (fx, inputs) = expected();
    assert!(inputs.len() >= 20, "fixture lists {} inputs", inputs.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, file) in &inputs {
        for size in [224usize, 32] {
            let key = format!("{name}.{size}.u8");
            if !fx.contains(&key) {
                continue;
            }
            checked += 1;
            let (shape, theirs) = fx.i64s(&key).unwrap();
            assert_eq!(shape, vec![3, size, size], "{key}");
            let theirs: Vec<f64> = theirs.iter().map(|&v| v as f64).collect();
            let ours = ours_planar(name, file, size);
            let (max, mean, same) = compare(&ours, &theirs);
            let mut line = format!(
                "{file:>18} {size:>3}: max |ours - HF| = {max:.0}/255, mean {mean:.3}/255, \
                 {:.2}% equal",
                100.0 * same
            );
            let pil = format!("{name}.{size}.pil_u8");
            if fx.contains(&pil) {
                let (_, p) = fx.i64s(&pil).unwrap();
                let p: Vec<f64> = p.iter().map(|&v| v as f64).collect();
                line += &format!("; vs HF's PIL backend {:.0}/255", compare(&ours, &p).0);
            }
            println!("{line}");
            let bad = if is_jpeg(file) { max > TOL_LEVELS_JPEG || mean > TOL_MEAN_JPEG } else { max > TOL_LEVELS };
            if bad {
                failures.push(line);
            }
        }
    }
    assert!(checked >= 30, "only {checked} comparisons");
    assert!(failures.is_empty(), "beyond tolerance:\n{}", failures.join("\n"));
}

#[test]
fn normalised_output_matches_hf() {
    let (fx, inputs) = expected();
    for (name, file) in &inputs {
        // The u8 tolerance scaled by the smallest std, plus f32 rounding.
        let levels = if is_jpeg(file) { TOL_LEVELS_JPEG } else { TOL_LEVELS };
        let tol = levels / 255.0 / f64::from(CLIP_STD[1]) + 1e-5;
        let key = format!("{name}.32.pixel_values");
        let (shape, theirs) = fx.f64s(&key).unwrap();
        assert_eq!(shape, vec![3, 32, 32]);
        let img = load_rgb8(&fixtures_dir().join("preprocess").join(file)).unwrap();
        let ours: Vec<f64> = eval_transform(&img, 32).into_iter().map(f64::from).collect();
        let (max, _, _) = compare(&ours, &theirs);
        assert!(max <= tol, "{name}: normalised max diff {max}");
        // Where the u8 values agree, normalisation itself agrees to f32 rounding.
        let (_, u8s) = fx.i64s(&format!("{name}.32.u8")).unwrap();
        let mine = ours_planar(name, file, 32);
        for (i, (&e, m)) in u8s.iter().zip(&mine).enumerate() {
            if e as f64 == *m {
                assert!((ours[i] - theirs[i]).abs() < 2e-6, "{name}[{i}]");
            }
        }
    }
}

#[test]
fn alpha_composite_is_pils() {
    // Spot values of PIL's `alpha_composite(white, (v, v, v, a))`.
    assert_eq!(over_white(0, 0), 255);
    assert_eq!(over_white(200, 255), 200);
    assert_eq!(over_white(0, 128), 127);
    assert_eq!(over_white(0, 1), 254);
    for v in 0..=255u8 {
        assert_eq!(over_white(v, 255), v);
        assert_eq!(over_white(v, 0), 255);
    }
}

#[test]
fn resized_crop_matches_torchvision() {
    let (fx, inputs) = expected();
    let mut boxes_seen = 0;
    for (name, file) in &inputs {
        let key = format!("{name}.rrc.boxes");
        if !fx.contains(&key) {
            continue;
        }
        let img = input(name, file);
        let (shape, boxes) = fx.i64s(&key).unwrap();
        for (k, b) in boxes.chunks(4).enumerate().take(shape[0]) {
            let crop = CropBox { top: b[0] as usize, left: b[1] as usize, height: b[2] as usize, width: b[3] as usize };
            let (_, theirs) = fx.i64s(&format!("{name}.rrc.{k}")).unwrap();
            let theirs: Vec<f64> = theirs.iter().map(|&v| v as f64).collect();
            let (max, _, _) = compare(&planar(&resized_crop(&img, crop, 32)), &theirs);
            println!("{file} box {crop:?}: max {max:.0}/255");
            assert_eq!(max, 0.0, "{name} box {k}");
            boxes_seen += 1;
        }
    }
    assert_eq!(boxes_seen, 6);
}
