//! The CLIP model over a backend: its arenas (parameters, gradients, activations, activation
//! gradients, indices), both towers, and `logit_scale`. Everything is allocated here, once, from
//! the config and the largest batch; a training step allocates nothing.
use super::config::ClipConfig;
use super::layout::ClipLayout;
use super::text::TextTower;
use super::vision::VisionTower;
use crate::arena::Planner;
use crate::backend::{ArenaId, Backend, Buf};
use crate::error::Error;

/// Largest batches the activation arena is sized for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub images: usize,
    pub texts: usize,
}

/// Arena ids of one model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arenas {
    pub params: ArenaId,
    pub grads: ArenaId,
    pub acts: ArenaId,
    pub dacts: ArenaId,
    pub idx: ArenaId,
}

pub struct Clip {
    pub config: ClipConfig,
    pub layout: ClipLayout,
    pub arenas: Arenas,
    acts_len: usize,
    text: TextTower,
    vision: VisionTower,
}

impl Clip {
    /// Validates the config, then allocates every buffer the model will use.
    pub fn new<B: Backend>(be: &mut B, config: &ClipConfig, cap: Capacity) -> Result<Self, Error> {
        Self::build(be, config, cap, false)
    }

    /// A forward-only model (a teacher): no gradient arenas, and block activations for two
    /// layers instead of all (a backward on it fails with a buffer error).
    pub fn new_frozen<B: Backend>(be: &mut B, config: &ClipConfig, cap: Capacity) -> Result<Self, Error> {
        Self::build(be, config, cap, true)
    }

    fn build<B: Backend>(be: &mut B, config: &ClipConfig, cap: Capacity, frozen: bool) -> Result<Self, Error> {
        config.validate()?;
        let layout = ClipLayout::new(config);
        let (tc, vc, proj) = (&config.text_config, &config.vision_config, config.projection_dim);
        let idx_len = TextTower::idx_len(cap.texts, tc) + VisionTower::idx_len(cap.images);
        let plan = |p: &mut Planner, idx: ArenaId| {
            let text = TextTower::plan(tc, proj, p, idx, 0, cap.texts, frozen);
            let vision = VisionTower::plan(vc, proj, p, idx, TextTower::idx_len(cap.texts, tc), cap.images, frozen);
            (text, vision)
        };
        let mut sizing = Planner::new(ArenaId::MAX);
        plan(&mut sizing, ArenaId::MAX);
        let trained = |n: usize| if frozen { 0 } else { n };
        let params = be.alloc(layout.len)?;
        let grads = be.alloc(trained(layout.len))?;
        let acts = be.alloc(sizing.used())?;
        let dacts = be.alloc(trained(sizing.used()))?;
        let idx = be.alloc_idx(idx_len)?;
        let (text, vision) = plan(&mut Planner::new(acts), idx);
        vision.init(be)?;
        let arenas = Arenas { params, grads, acts, dacts, idx };
        Ok(Clip { config: config.clone(), layout, arenas, acts_len: sizing.used(), text, vision })
    }

    /// The whole parameter buffer.
    pub fn params(&self) -> Buf {
        Buf { arena: self.arenas.params, offset: 0, len: self.layout.len }
    }

    /// The whole gradient buffer (same layout as `params`).
    pub fn grads(&self) -> Buf {
        self.params().in_arena(self.arenas.grads)
    }

    /// `logit_scale` in the parameter buffer (CLIP's s is its exp).
    pub fn logit_scale(&self) -> Buf {
        self.layout.logit_scale.at(self.arenas.params)
    }

    /// Zeroes the parameter gradients and the activation gradients; backward passes then add.
    pub fn zero_grad<B: Backend>(&self, be: &mut B) -> Result<(), Error> {
        be.fill(self.grads(), 0.0)?;
        self.zero_act_grads(be)
    }

    /// Zeroes only the activation gradients: a second forward/backward in the same step (ZSCL's
    /// reference batch) then adds to the parameter gradients already there.
    pub fn zero_act_grads<B: Backend>(&self, be: &mut B) -> Result<(), Error> {
        let dacts = Buf { arena: self.arenas.dacts, offset: 0, len: self.acts_len };
        be.fill(dacts, 0.0)
    }

    /// Where to write `b` images (CLIP-normalised pixels, [b, channels, side, side]).
    pub fn pixels(&self, b: usize) -> Result<Buf, Error> {
        self.vision.pixels(b)
    }

    /// Image features [b, proj], unnormalised, of the images in `pixels(b)`.
    pub fn encode_image<B: Backend>(&mut self, be: &mut B, b: usize) -> Result<Buf, Error> {
        self.vision.forward(be, &self.layout.vision, self.arenas.params, b)
    }

    /// Text features [b, proj], unnormalised, of `b` sequences of `t` token ids.
    pub fn encode_text<B: Backend>(&mut self, be: &mut B, ids: &[u32], b: usize, t: usize) -> Result<Buf, Error> {
        self.text.forward(be, &self.layout.text, self.arenas.params, ids, b, t)
    }

    /// Gradient slot of the last image features: a loss adds d(features) here.
    pub fn image_dout(&self) -> Buf {
        self.vision.dout(self.arenas.dacts)
    }

    /// Gradient slot of the last text features.
    pub fn text_dout(&self) -> Buf {
        self.text.dout(self.arenas.dacts)
    }

    /// Back-propagates `image_dout()` into the parameter gradients.
    pub fn backward_image<B: Backend>(&self, be: &mut B) -> Result<(), Error> {
        let a = self.arenas;
        self.vision.backward(be, &self.layout.vision, a.params, a.grads, a.dacts)
    }

    /// Back-propagates `text_dout()` into the parameter gradients.
    pub fn backward_text<B: Backend>(&self, be: &mut B) -> Result<(), Error> {
        let a = self.arenas;
        self.text.backward(be, &self.layout.text, a.params, a.grads, a.dacts)
    }
}
