//! One pre-LN transformer block, HF `CLIPEncoderLayer`:
//! `h = x + out_proj(attn(ln1(x)))`, `y = h + fc2(act(fc1(ln2(h))))`.
//! Dims legend: `b` sequences, `t` tokens, `c` width, `nh` heads, `hs = c/nh`, `inter` MLP width.
use alloc::vec::Vec;

use crate::arena::{head, Planner};
use crate::backend::{ArenaId, Attn, Backend, Buf, Rows};
use crate::clip::config::HiddenAct;
use crate::clip::layout::BlockParams;
use crate::error::Error;
use crate::layers::linear::Linear;

/// Sizes of a block.
#[derive(Clone, Copy, Debug)]
pub struct BlockDims {
    pub c: usize,
    pub nh: usize,
    pub inter: usize,
    pub eps: f64,
    pub act: HiddenAct,
    pub causal: bool,
}

/// Saved activations of one block, planned for `max_b` sequences of `max_t` tokens.
#[derive(Clone, Copy, Debug)]
pub struct BlockActs {
    ln1: Buf,
    ln1_mean: Buf,
    ln1_rstd: Buf,
    qkv: Buf,
    probs: Buf,
    attn: Buf,
    res1: Buf,
    ln2: Buf,
    ln2_mean: Buf,
    ln2_rstd: Buf,
    fc1: Buf,
    act: Buf,
    /// The block's output (the residual stream after the MLP).
    pub out: Buf,
}

impl BlockActs {
    /// The activations of `layers` blocks. A frozen model (a teacher: forward only, never a
    /// backward) keeps only two sets and alternates them, so each block still reads its input
    /// from the other set: memory of two layers instead of all.
    pub fn plan_layers(
        p: &mut Planner, d: &BlockDims, max_b: usize, max_t: usize, layers: usize, frozen: bool,
    ) -> Vec<Self> {
        if frozen {
            let sets: Vec<Self> = (0..layers.min(2)).map(|_| Self::plan(p, d, max_b, max_t)).collect();
            (0..layers).map(|l| sets[l % 2]).collect()
        } else {
            (0..layers).map(|_| Self::plan(p, d, max_b, max_t)).collect()
        }
    }

    pub fn plan(p: &mut Planner, d: &BlockDims, max_b: usize, max_t: usize) -> Self {
        let r = max_b * max_t;
        BlockActs {
            ln1: p.take(r * d.c),
            ln1_mean: p.take(r),
            ln1_rstd: p.take(r),
            qkv: p.take(r * 3 * d.c),
            probs: p.take(max_b * d.nh * max_t * max_t),
            attn: p.take(r * d.c),
            res1: p.take(r * d.c),
            ln2: p.take(r * d.c),
            ln2_mean: p.take(r),
            ln2_rstd: p.take(r),
            fc1: p.take(r * d.inter),
            act: p.take(r * d.inter),
            out: p.take(r * d.c),
        }
    }
}

/// A block's operands for one call: dims, parameter views and activations.
pub struct Block<'a> {
    pub d: &'a BlockDims,
    pub p: &'a BlockParams,
    pub a: &'a BlockActs,
    pub b: usize,
    pub t: usize,
}

impl Block<'_> {
    fn shapes(&self) -> (Rows, Attn, Linear, Linear, Linear, Linear) {
        let (d, rows) = (self.d, self.b * self.t);
        let ln = Rows { rows, c: d.c, eps: d.eps };
        let attn = Attn { b: self.b, t: self.t, nh: d.nh, hs: d.c / d.nh, causal: d.causal };
        let qkv = Linear { rows, inp: d.c, out: 3 * d.c };
        let out = Linear { rows, inp: d.c, out: d.c };
        let fc1 = Linear { rows, inp: d.c, out: d.inter };
        let fc2 = Linear { rows, inp: d.inter, out: d.c };
        (ln, attn, qkv, out, fc1, fc2)
    }

    /// The block's activations cut to this call's batch: (ln1, ln1_mean, ln1_rstd, qkv, probs,
    /// attn, res1, ln2, ln2_mean, ln2_rstd, fc1, act, out).
    fn acts(&self) -> [Buf; 13] {
        let (a, d, r) = (self.a, self.d, self.b * self.t);
        let rc = r * d.c;
        [
            head(a.ln1, rc),
            head(a.ln1_mean, r),
            head(a.ln1_rstd, r),
            head(a.qkv, 3 * rc),
            head(a.probs, self.b * d.nh * self.t * self.t),
            head(a.attn, rc),
            head(a.res1, rc),
            head(a.ln2, rc),
            head(a.ln2_mean, r),
            head(a.ln2_rstd, r),
            head(a.fc1, r * d.inter),
            head(a.act, r * d.inter),
            head(a.out, rc),
        ]
    }

    /// Reads `x` [b, t, c] (parameters in arena `params`), writes the saved activations.
    pub fn forward<B: Backend>(&self, be: &mut B, params: ArenaId, x: Buf) -> Result<(), Error> {
        let (ln, attn_d, qkv_l, out_l, fc1_l, fc2_l) = self.shapes();
        let [ln1, ln1_mean, ln1_rstd, qkv, probs, attn, res1, ln2, ln2_mean, ln2_rstd, fc1, act, out] = self.acts();
        let p = self.p;
        let w = |v: crate::clip::layout::ParamView| v.at(params);
        be.layer_norm_forward(ln1, ln1_mean, ln1_rstd, x, w(p.ln1_w), w(p.ln1_b), ln)?;
        qkv_l.forward(be, qkv, ln1, w(p.qkv_w), Some(w(p.qkv_b)), false)?;
        be.attention_forward(attn, probs, qkv, attn_d)?;
        be.copy(res1, x)?;
        out_l.forward(be, res1, attn, w(p.out_w), Some(w(p.out_b)), true)?;
        be.layer_norm_forward(ln2, ln2_mean, ln2_rstd, res1, w(p.ln2_w), w(p.ln2_b), ln)?;
        fc1_l.forward(be, fc1, ln2, w(p.fc1_w), Some(w(p.fc1_b)), false)?;
        be.act_forward(act, fc1, self.d.act)?;
        be.copy(out, res1)?;
        fc2_l.forward(be, out, act, w(p.fc2_w), Some(w(p.fc2_b)), true)
    }

    /// Mirror of `forward`: reads d(out) from arena `dacts`, adds into `dx` and the parameter
    /// gradients in arena `grads`.
    pub fn backward<B: Backend>(
        &self, be: &mut B, params: ArenaId, grads: ArenaId, dacts: ArenaId, x: Buf, dx: Buf,
    ) -> Result<(), Error> {
        let (ln, attn_d, qkv_l, out_l, fc1_l, fc2_l) = self.shapes();
        let [ln1, ln1_mean, ln1_rstd, qkv, probs, attn, res1, ln2, ln2_mean, ln2_rstd, fc1, act, out] = self.acts();
        let g = |b: Buf| b.in_arena(dacts);
        let (p, w) = (self.p, |v: crate::clip::layout::ParamView| v.at(params));
        let dw = |v: crate::clip::layout::ParamView| v.at(grads);
        // out = res1 + fc2(act): res1 receives d(out) directly (first of its two additions).
        be.axpby(g(res1), g(out), 1.0, 1.0)?;
        fc2_l.backward(be, Some(g(act)), dw(p.fc2_w), Some(dw(p.fc2_b)), g(out), act, w(p.fc2_w))?;
        be.act_backward(g(fc1), g(act), fc1, self.d.act)?;
        fc1_l.backward(be, Some(g(ln2)), dw(p.fc1_w), Some(dw(p.fc1_b)), g(fc1), ln2, w(p.fc1_w))?;
        // Second addition into d(res1): through ln2.
        be.layer_norm_backward(g(res1), dw(p.ln2_w), dw(p.ln2_b), g(ln2), res1, w(p.ln2_w), ln2_mean, ln2_rstd, ln)?;
        // res1 = x + out_proj(attn): x receives d(res1) directly (first of its two additions).
        be.axpby(dx, g(res1), 1.0, 1.0)?;
        out_l.backward(be, Some(g(attn)), dw(p.out_w), Some(dw(p.out_b)), g(res1), attn, w(p.out_w))?;
        be.attention_backward(g(qkv), g(attn), qkv, probs, attn_d)?;
        qkv_l.backward(be, Some(g(ln1)), dw(p.qkv_w), Some(dw(p.qkv_b)), g(qkv), ln1, w(p.qkv_w))?;
        // Second addition into dx: through ln1.
        be.layer_norm_backward(dx, dw(p.ln1_w), dw(p.ln1_b), g(ln1), x, w(p.ln1_w), ln1_mean, ln1_rstd, ln)
    }
}
