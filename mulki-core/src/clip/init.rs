//! Random initialisation of a fresh CLIP, following HF `CLIPPreTrainedModel._init_weights`
//! (factor 1, initializer_range 0.02): used to pretrain tiny models and in tests.
use alloc::vec;
use alloc::vec::Vec;

use super::config::ClipConfig;
use super::layout::{BlockParams, ClipLayout, ParamView};
use crate::elem::Elem;
use crate::rng::Rng;

struct Init<'a, E> {
    p: &'a mut [E],
    rng: Rng,
}

impl<E: Elem> Init<'_, E> {
    fn normal(&mut self, v: ParamView, std: f64) {
        for x in &mut self.p[v.offset..v.offset + v.len] {
            *x = E::from_f64(std * self.rng.normal());
        }
    }
    fn constant(&mut self, v: ParamView, value: f64) {
        self.p[v.offset..v.offset + v.len].fill(E::from_f64(value));
    }
    fn block(&mut self, b: &BlockParams, c: usize, layers: usize) {
        let cf = c as f64;
        let in_proj_std = libm::pow(cf, -0.5) * libm::pow(2.0 * layers as f64, -0.5);
        self.normal(b.qkv_w, in_proj_std);
        self.normal(b.out_w, libm::pow(cf, -0.5));
        self.normal(b.fc1_w, libm::pow(2.0 * cf, -0.5));
        self.normal(b.fc2_w, in_proj_std);
        for v in [b.qkv_b, b.out_b, b.fc1_b, b.fc2_b, b.ln1_b, b.ln2_b] {
            self.constant(v, 0.0);
        }
        self.constant(b.ln1_w, 1.0);
        self.constant(b.ln2_w, 1.0);
    }
}

/// Fresh parameters in the layout's order; `logit_scale` = `logit_scale_init_value`.
pub fn init_params<E: Elem>(cfg: &ClipConfig, layout: &ClipLayout, seed: u64) -> Vec<E> {
    let mut p = vec![E::zero(); layout.len];
    let mut it = Init { p: &mut p, rng: Rng::new(seed) };
    let (t, v) = (&layout.text, &layout.vision);
    let (tc, vc) = (&cfg.text_config, &cfg.vision_config);
    it.normal(t.token_emb, 0.02);
    it.normal(t.pos_emb, 0.01);
    for b in &t.blocks {
        it.block(b, tc.hidden_size, tc.num_hidden_layers);
    }
    it.constant(t.ln_final_w, 1.0);
    it.constant(t.ln_final_b, 0.0);
    it.normal(v.class_emb, libm::pow(vc.hidden_size as f64, -0.5));
    it.normal(v.patch_w, 0.02);
    it.normal(v.pos_emb, 0.02);
    it.constant(v.pre_ln_w, 1.0);
    it.constant(v.pre_ln_b, 0.0);
    for b in &v.blocks {
        it.block(b, vc.hidden_size, vc.num_hidden_layers);
    }
    it.constant(v.post_ln_w, 1.0);
    it.constant(v.post_ln_b, 0.0);
    it.normal(v.proj, libm::pow(vc.hidden_size as f64, -0.5));
    it.normal(t.proj, libm::pow(tc.hidden_size as f64, -0.5));
    it.constant(layout.logit_scale, cfg.logit_scale_init_value);
    p
}
