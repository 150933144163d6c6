//! AdamW state over the flat parameter layout, and the learning-rate schedule of METHOD.md:
//! linear warm-up, then cosine decay (ZSCL's `cosine_lr`).
use crate::backend::{AdamW, ArenaId, Backend, Buf};
use crate::error::Error;

/// AdamW hyper-parameters other than the learning rate (PyTorch's defaults, weight decay 0 as
/// in MTIL).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Moments `m`, `v` in two arenas with the parameter layout.
pub struct Optimizer {
    m: ArenaId,
    v: ArenaId,
    len: usize,
    pub config: AdamWConfig,
    step: u64,
}

impl Optimizer {
    pub fn new<B: Backend>(be: &mut B, len: usize, config: AdamWConfig) -> Result<Self, Error> {
        Ok(Optimizer { m: be.alloc(len)?, v: be.alloc(len)?, len, config, step: 0 })
    }

    /// Zeroes the moments and the step count: each task starts afresh, as in ZSCL.
    pub fn reset<B: Backend>(&mut self, be: &mut B) -> Result<(), Error> {
        self.step = 0;
        be.fill(Buf { arena: self.m, offset: 0, len: self.len }, 0.0)?;
        be.fill(Buf { arena: self.v, offset: 0, len: self.len }, 0.0)
    }

    /// The moment buffers `m`, `v` (the parameter layout), for checkpoints.
    pub fn moments(&self) -> (Buf, Buf) {
        (Buf { arena: self.m, offset: 0, len: self.len }, Buf { arena: self.v, offset: 0, len: self.len })
    }

    /// Restores the step count of a checkpoint (bias correction continues from it).
    pub fn set_steps(&mut self, steps: u64) {
        self.step = steps;
    }

    /// Steps taken since the last reset.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update of `params` (a range of the parameter arena; `grads` the same range of the
    /// gradient arena) at learning rate `lr`.
    pub fn step<B: Backend>(&mut self, be: &mut B, params: Buf, grads: Buf, lr: f64) -> Result<(), Error> {
        self.guarded_step(be, params, grads, lr, None)
    }

    /// [`Optimizer::step`], skipped on the device when the one-element `guard` is not finite
    /// ([`AdamW::guard`]). The step is counted either way: the caller, once it has read the
    /// guard, calls [`Optimizer::uncount`] for a skipped one.
    pub fn guarded_step<B: Backend>(
        &mut self, be: &mut B, params: Buf, grads: Buf, lr: f64, guard: Option<Buf>,
    ) -> Result<(), Error> {
        self.step += 1;
        let c = self.config;
        let (beta1, beta2, eps, weight_decay) = (c.beta1, c.beta2, c.eps, c.weight_decay);
        let hp = AdamW { lr, beta1, beta2, eps, weight_decay, step: self.step, guard };
        be.adamw(params, grads, params.in_arena(self.m), params.in_arena(self.v), hp)
    }

    /// Takes back the count of a step its guard skipped, so bias correction goes on from the
    /// steps actually applied.
    pub fn uncount(&mut self) {
        self.step = self.step.saturating_sub(1);
    }
}

/// Default warm-up length: min(100, ⌊N/10⌋).
pub fn default_warmup(steps: usize) -> usize {
    (steps / 10).min(100)
}

/// Learning rate of step `k` (1-based) of `n`: `lr·(u+1)/W` while `u = k−1 < W`, then
/// `½(1 + cos(π·(u−W)/(n−W)))·lr`.
pub fn lr_at(lr: f64, k: usize, n: usize, warmup: usize) -> f64 {
    let u = k.saturating_sub(1);
    if u < warmup {
        lr * (u + 1) as f64 / warmup as f64
    } else {
        let span = n.saturating_sub(warmup).max(1) as f64;
        0.5 * (1.0 + libm::cos(core::f64::consts::PI * (u - warmup) as f64 / span)) * lr
    }
}
