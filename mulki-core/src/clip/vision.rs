//! The image tower, HF `CLIPVisionTransformer` + `visual_projection`: patch embedding (im2col +
//! GEMM), class token and positions, `pre_layrnorm`, pre-LN blocks, `post_layernorm` on the
//! class token, projection.
use alloc::vec::Vec;

use super::config::VisionConfig;
use super::layout::VisionParams;
use crate::arena::{head, Planner};
use crate::backend::{ArenaId, Backend, Buf, Gemm, IdxBuf, Patches, Rows};
use crate::error::Error;
use crate::layers::block::{Block, BlockActs, BlockDims};
use crate::layers::linear::Linear;

/// Image-tower activations, planned for `max_b` images.
pub struct VisionTower {
    cfg: VisionConfig,
    proj: usize,
    dims: BlockDims,
    max_b: usize,
    cls_rows: IdxBuf,
    pixels: Buf,
    patches: Buf,
    patch_out: Buf,
    embed: Buf,
    x0: Buf,
    x0_mean: Buf,
    x0_rstd: Buf,
    blocks: Vec<BlockActs>,
    pooled: Buf,
    post: Buf,
    post_mean: Buf,
    post_rstd: Buf,
    out: Buf,
    last_b: usize,
}

impl VisionTower {
    /// `frozen`: forward only (see [`BlockActs::plan_layers`]).
    pub fn plan(
        cfg: &VisionConfig, proj: usize, p: &mut Planner, idx: ArenaId, idx_offset: usize, max_b: usize, frozen: bool,
    ) -> Self {
        let (c, t) = (cfg.hidden_size, cfg.tokens());
        let dims = BlockDims {
            c,
            nh: cfg.num_attention_heads,
            inter: cfg.intermediate_size,
            eps: cfg.layer_norm_eps,
            act: cfg.hidden_act,
            causal: false,
        };
        let np = t - 1;
        VisionTower {
            cfg: cfg.clone(),
            proj,
            dims,
            max_b,
            cls_rows: IdxBuf { arena: idx, offset: idx_offset, len: max_b },
            pixels: p.take(max_b * cfg.num_channels * cfg.image_size * cfg.image_size),
            patches: p.take(max_b * np * cfg.patch_dim()),
            patch_out: p.take(max_b * np * c),
            embed: p.take(max_b * t * c),
            x0: p.take(max_b * t * c),
            x0_mean: p.take(max_b * t),
            x0_rstd: p.take(max_b * t),
            blocks: BlockActs::plan_layers(p, &dims, max_b, t, cfg.num_hidden_layers, frozen),
            pooled: p.take(max_b * c),
            post: p.take(max_b * c),
            post_mean: p.take(max_b),
            post_rstd: p.take(max_b),
            out: p.take(max_b * proj),
            last_b: 0,
        }
    }

    /// Index-arena elements `plan` uses.
    pub fn idx_len(max_b: usize) -> usize {
        max_b
    }

    /// Writes the class-token row indices (`i·t`), which never change.
    pub fn init<B: Backend>(&self, be: &mut B) -> Result<(), Error> {
        let t = self.cfg.tokens() as u32;
        for i in 0..self.max_b {
            be.write_idx(IdxBuf { offset: self.cls_rows.offset + i, len: 1, ..self.cls_rows }, &[i as u32 * t])?;
        }
        Ok(())
    }

    /// The pixel buffer for `b` images [b, channels, side, side] (CLIP-normalised), to be
    /// written before `forward`.
    pub fn pixels(&self, b: usize) -> Result<Buf, Error> {
        if b > self.max_b {
            return Err(Error::Capacity { what: "image batch", max: self.max_b, got: b });
        }
        let side = self.cfg.image_size;
        Ok(head(self.pixels, b * self.cfg.num_channels * side * side))
    }

    fn patch_dims(&self, b: usize) -> Patches {
        Patches { b, channels: self.cfg.num_channels, side: self.cfg.image_size, patch: self.cfg.patch_size }
    }

    /// Encodes the `b` images in `pixels(b)`; returns the projected, unnormalised features
    /// [b, proj] (HF `image_embeds` before `F.normalize`).
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, p: &VisionParams, params: ArenaId, b: usize,
    ) -> Result<Buf, Error> {
        let pixels = self.pixels(b)?;
        let (c, t, pd) = (self.dims.c, self.cfg.tokens(), self.cfg.patch_dim());
        let np = t - 1;
        let (patches, patch_out) = (head(self.patches, b * np * pd), head(self.patch_out, b * np * c));
        be.patchify_forward(patches, pixels, self.patch_dims(b))?;
        be.gemm(
            patch_out,
            patches,
            p.patch_w.at(params),
            Gemm::new(b * np, c, pd, false, true, 1.0, 0.0).low_precision(),
        )?;
        let embed = head(self.embed, b * t * c);
        be.vision_embed_forward(embed, patch_out, p.class_emb.at(params), p.pos_emb.at(params), b, t, c)?;
        let x0 = head(self.x0, b * t * c);
        let ln = Rows { rows: b * t, c, eps: self.dims.eps };
        let (m0, r0) = (head(self.x0_mean, b * t), head(self.x0_rstd, b * t));
        be.layer_norm_forward(x0, m0, r0, embed, p.pre_ln_w.at(params), p.pre_ln_b.at(params), ln)?;
        let mut x = x0;
        for (bp, ba) in p.blocks.iter().zip(&self.blocks) {
            Block { d: &self.dims, p: bp, a: ba, b, t }.forward(be, params, x)?;
            x = head(ba.out, b * t * c);
        }
        let (pooled, post, out) = (head(self.pooled, b * c), head(self.post, b * c), head(self.out, b * self.proj));
        be.embedding_forward(pooled, x, IdxBuf { len: b, ..self.cls_rows }, c)?;
        let ln = Rows { rows: b, c, eps: self.dims.eps };
        let (pm, pr) = (head(self.post_mean, b), head(self.post_rstd, b));
        be.layer_norm_forward(post, pm, pr, pooled, p.post_ln_w.at(params), p.post_ln_b.at(params), ln)?;
        Linear { rows: b, inp: c, out: self.proj }.forward(be, out, post, p.proj.at(params), None, false)?;
        self.last_b = b;
        Ok(out)
    }

    /// The output buffer of the last forward in arena `dacts`: where a loss adds d(features).
    pub fn dout(&self, dacts: ArenaId) -> Buf {
        head(self.out, self.last_b * self.proj).in_arena(dacts)
    }

    /// Back-propagates d(features) from `dout(dacts)` into the parameter gradients (not into the
    /// pixels: inputs need none).
    pub fn backward<B: Backend>(
        &self, be: &mut B, p: &VisionParams, params: ArenaId, grads: ArenaId, dacts: ArenaId,
    ) -> Result<(), Error> {
        let b = self.last_b;
        let (c, t, pd) = (self.dims.c, self.cfg.tokens(), self.cfg.patch_dim());
        let np = t - 1;
        let g = |x: Buf| x.in_arena(dacts);
        let (pooled, post, out) = (head(self.pooled, b * c), head(self.post, b * c), head(self.out, b * self.proj));
        Linear { rows: b, inp: c, out: self.proj }.backward(
            be,
            Some(g(post)),
            p.proj.at(grads),
            None,
            g(out),
            post,
            p.proj.at(params),
        )?;
        let ln = Rows { rows: b, c, eps: self.dims.eps };
        let (pm, pr) = (head(self.post_mean, b), head(self.post_rstd, b));
        be.layer_norm_backward(
            g(pooled),
            p.post_ln_w.at(grads),
            p.post_ln_b.at(grads),
            g(post),
            pooled,
            p.post_ln_w.at(params),
            pm,
            pr,
            ln,
        )?;
        let x0 = head(self.x0, b * t * c);
        let last = self.blocks.last().map_or(x0, |a| head(a.out, b * t * c));
        be.embedding_backward(g(last), g(pooled), IdxBuf { len: b, ..self.cls_rows }, c)?;
        for (i, (bp, ba)) in p.blocks.iter().zip(&self.blocks).enumerate().rev() {
            let x = if i == 0 { x0 } else { head(self.blocks[i - 1].out, b * t * c) };
            Block { d: &self.dims, p: bp, a: ba, b, t }.backward(be, params, grads, dacts, x, g(x))?;
        }
        let embed = head(self.embed, b * t * c);
        let ln = Rows { rows: b * t, c, eps: self.dims.eps };
        let (m0, r0) = (head(self.x0_mean, b * t), head(self.x0_rstd, b * t));
        be.layer_norm_backward(
            g(embed),
            p.pre_ln_w.at(grads),
            p.pre_ln_b.at(grads),
            g(x0),
            embed,
            p.pre_ln_w.at(params),
            m0,
            r0,
            ln,
        )?;
        let (patches, patch_out) = (head(self.patches, b * np * pd), head(self.patch_out, b * np * c));
        be.vision_embed_backward(g(patch_out), p.class_emb.at(grads), p.pos_emb.at(grads), g(embed), b, t, c)?;
        // patch_out = patches · Wᵀ: only dW is needed.
        Linear { rows: b * np, inp: pd, out: c }.backward(
            be,
            None,
            p.patch_w.at(grads),
            None,
            g(patch_out),
            patches,
            p.patch_w.at(params),
        )
    }
}
