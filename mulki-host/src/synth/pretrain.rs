//! Pretraining data: an endless stream of (scene, caption) pairs, pair i of step k drawn from
//! the counter (seed ^ salt, k, i), with soft targets from the caption match rule. The same
//! generator, on its own salt, gives ZSCL's fixed reference set.
use mulki_core::rng::Rng;

use super::caption::{caption, soft_targets, soft_targets_text, Caption, CaptionAttrs};
use super::render::{normalise_into, render};
use super::world::{Draw, Scene};

const PRETRAIN_SALT: u64 = 0x7072_6574_7261_696e; // "pretrain"
const REFERENCE_SALT: u64 = 0x7265_6673_6574_2d2d; // "refset--"

/// One pretraining batch.
#[derive(Clone, Debug, PartialEq)]
pub struct PretrainBatch {
    /// [b, 3, side, side], CLIP-normalised.
    pub pixels: Vec<f32>,
    pub captions: Vec<String>,
    /// [b, b] image→text targets: row i is image i's matching captions, normalised.
    pub soft_targets: Vec<f32>,
    /// [b, b] text→image targets: row j is caption j's matching images, normalised.
    pub soft_targets_text: Vec<f32>,
}

/// Pair `i` of pretraining step `step`.
pub fn pretrain_pair(seed: u64, step: u64, i: u64) -> (Scene, Caption) {
    let mut rng = Rng::for_counter(seed ^ PRETRAIN_SALT, step, i);
    let scene = Scene::draw(&mut rng, &Draw::default());
    let cap = caption(&scene, &mut rng);
    (scene, cap)
}

/// The `b` pairs of step `step`, rendered at `side`, with both soft-target matrices.
pub fn pretrain_batch(seed: u64, step: u64, b: usize, side: usize) -> PretrainBatch {
    let (scenes, caps): (Vec<Scene>, Vec<Caption>) = (0..b as u64).map(|i| pretrain_pair(seed, step, i)).unzip();
    let mut pixels = Vec::with_capacity(b * 3 * side * side);
    for s in &scenes {
        normalise_into(&render(s, side), side, &mut pixels);
    }
    let attrs: Vec<CaptionAttrs> = caps.iter().map(|c| c.attrs).collect();
    PretrainBatch {
        pixels,
        soft_targets: soft_targets(&scenes, &attrs),
        soft_targets_text: soft_targets_text(&scenes, &attrs),
        captions: caps.into_iter().map(|c| c.text).collect(),
    }
}

/// ZSCL's reference set: `n` pretraining-style pairs on a stream of their own.
pub fn reference_pairs(seed: u64, n: usize) -> Vec<(Scene, Caption)> {
    (0..n as u64)
        .map(|i| {
            let mut rng = Rng::for_counter(seed ^ REFERENCE_SALT, 0, i);
            let scene = Scene::draw(&mut rng, &Draw::default());
            let cap = caption(&scene, &mut rng);
            (scene, cap)
        })
        .collect()
}
