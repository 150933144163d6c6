//! The text tower, HF `CLIPTextTransformer` + `text_projection`: token and position
//! embeddings, causal pre-LN blocks, pooling at the EOT token, `final_layer_norm`, projection.
//! LayerNorm is per row, so it runs on the pooled rows only: the same values HF gets by
//! normalising every token and pooling after.
use alloc::vec::Vec;

use super::config::TextConfig;
use super::layout::TextParams;
use crate::arena::{head, Planner};
use crate::backend::{ArenaId, Backend, Bcast, Buf, IdxBuf, Rows};
use crate::error::Error;
use crate::layers::block::{Block, BlockActs, BlockDims};
use crate::layers::linear::Linear;

/// The row each sequence is pooled at, as HF does it: with the legacy `eos_token_id == 2` the
/// position of the largest id (the first, on ties); otherwise the first position holding
/// `eos_token_id`, or 0 when there is none (what HF's argmax over an all-false mask gives).
pub fn eot_position(ids: &[u32], eos_token_id: u32) -> usize {
    if eos_token_id == 2 {
        let mut best = 0;
        for (i, &id) in ids.iter().enumerate() {
            if id > ids[best] {
                best = i;
            }
        }
        best
    } else {
        ids.iter().position(|&id| id == eos_token_id).unwrap_or(0)
    }
}

/// Text-tower activations, planned for `max_b` sequences of up to `max_t` tokens.
pub struct TextTower {
    cfg: TextConfig,
    proj: usize,
    dims: BlockDims,
    max_b: usize,
    max_t: usize,
    ids: IdxBuf,
    eot_rows: IdxBuf,
    rows_host: Vec<u32>,
    x0: Buf,
    blocks: Vec<BlockActs>,
    pooled: Buf,
    lnf: Buf,
    lnf_mean: Buf,
    lnf_rstd: Buf,
    out: Buf,
    /// (b, t) of the last forward, for the backward.
    last: (usize, usize),
}

impl TextTower {
    /// Plans the activations in `p` and the token ids at `idx_offset` of index arena `idx`;
    /// `frozen`: forward only (see [`BlockActs::plan_layers`]).
    pub fn plan(
        cfg: &TextConfig, proj: usize, p: &mut Planner, idx: ArenaId, idx_offset: usize, max_b: usize, frozen: bool,
    ) -> Self {
        let max_t = cfg.max_position_embeddings;
        let c = cfg.hidden_size;
        let dims = BlockDims {
            c,
            nh: cfg.num_attention_heads,
            inter: cfg.intermediate_size,
            eps: cfg.layer_norm_eps,
            act: cfg.hidden_act,
            causal: true,
        };
        let x0 = p.take(max_b * max_t * c);
        let blocks = BlockActs::plan_layers(p, &dims, max_b, max_t, cfg.num_hidden_layers, frozen);
        TextTower {
            cfg: cfg.clone(),
            proj,
            dims,
            max_b,
            max_t,
            ids: IdxBuf { arena: idx, offset: idx_offset, len: max_b * max_t },
            eot_rows: IdxBuf { arena: idx, offset: idx_offset + max_b * max_t, len: max_b },
            rows_host: Vec::with_capacity(max_b),
            x0,
            blocks,
            pooled: p.take(max_b * c),
            lnf: p.take(max_b * c),
            lnf_mean: p.take(max_b),
            lnf_rstd: p.take(max_b),
            out: p.take(max_b * proj),
            last: (0, 0),
        }
    }

    /// Index-arena elements `plan` uses.
    pub fn idx_len(max_b: usize, cfg: &TextConfig) -> usize {
        max_b * cfg.max_position_embeddings + max_b
    }

    /// Encodes `b` sequences of `t` token ids (row-major [b, t]); returns the projected,
    /// unnormalised features [b, proj] (HF `text_embeds` before `F.normalize`).
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, p: &TextParams, params: ArenaId, ids: &[u32], b: usize, t: usize,
    ) -> Result<Buf, Error> {
        if b > self.max_b {
            return Err(Error::Capacity { what: "text batch", max: self.max_b, got: b });
        }
        if t > self.max_t || t == 0 {
            return Err(Error::Capacity { what: "sequence length", max: self.max_t, got: t });
        }
        if ids.len() != b * t {
            return Err(Error::Capacity { what: "token ids", max: b * t, got: ids.len() });
        }
        let c = self.dims.c;
        self.rows_host.clear();
        for (i, seq) in ids.chunks(t).enumerate() {
            self.rows_host.push((i * t + eot_position(seq, self.cfg.eos_token_id)) as u32);
        }
        be.write_idx(IdxBuf { len: b * t, ..self.ids }, ids)?;
        be.write_idx(IdxBuf { len: b, ..self.eot_rows }, &self.rows_host)?;
        let x0 = head(self.x0, b * t * c);
        be.embedding_forward(x0, p.token_emb.at(params), IdxBuf { len: b * t, ..self.ids }, c)?;
        be.broadcast_add_forward(x0, head(p.pos_emb.at(params), t * c), Bcast { outer: b, inner: t, c })?;
        let mut x = x0;
        for (bp, ba) in p.blocks.iter().zip(&self.blocks) {
            Block { d: &self.dims, p: bp, a: ba, b, t }.forward(be, params, x)?;
            x = head(ba.out, b * t * c);
        }
        let (pooled, lnf, out) = (head(self.pooled, b * c), head(self.lnf, b * c), head(self.out, b * self.proj));
        be.embedding_forward(pooled, x, IdxBuf { len: b, ..self.eot_rows }, c)?;
        let ln = Rows { rows: b, c, eps: self.dims.eps };
        be.layer_norm_forward(
            lnf,
            head(self.lnf_mean, b),
            head(self.lnf_rstd, b),
            pooled,
            p.ln_final_w.at(params),
            p.ln_final_b.at(params),
            ln,
        )?;
        Linear { rows: b, inp: c, out: self.proj }.forward(be, out, lnf, p.proj.at(params), None, false)?;
        self.last = (b, t);
        Ok(out)
    }

    /// The output buffer of the last forward in arena `dacts`: where a loss adds d(features).
    pub fn dout(&self, dacts: ArenaId) -> Buf {
        head(self.out, self.last.0 * self.proj).in_arena(dacts)
    }

    /// Back-propagates d(features) from `dout(dacts)` into the parameter gradients.
    pub fn backward<B: Backend>(
        &self, be: &mut B, p: &TextParams, params: ArenaId, grads: ArenaId, dacts: ArenaId,
    ) -> Result<(), Error> {
        let (b, t) = self.last;
        let c = self.dims.c;
        let g = |x: Buf| x.in_arena(dacts);
        let (pooled, lnf, out) = (head(self.pooled, b * c), head(self.lnf, b * c), head(self.out, b * self.proj));
        Linear { rows: b, inp: c, out: self.proj }.backward(
            be,
            Some(g(lnf)),
            p.proj.at(grads),
            None,
            g(out),
            lnf,
            p.proj.at(params),
        )?;
        let ln = Rows { rows: b, c, eps: self.dims.eps };
        be.layer_norm_backward(
            g(pooled),
            p.ln_final_w.at(grads),
            p.ln_final_b.at(grads),
            g(lnf),
            pooled,
            p.ln_final_w.at(params),
            head(self.lnf_mean, b),
            head(self.lnf_rstd, b),
            ln,
        )?;
        let x0 = head(self.x0, b * t * c);
        let last = self.blocks.last().map_or(x0, |a| head(a.out, b * t * c));
        be.embedding_backward(g(last), g(pooled), IdxBuf { len: b, ..self.eot_rows }, c)?;
        for (i, (bp, ba)) in p.blocks.iter().zip(&self.blocks).enumerate().rev() {
            let x = if i == 0 { x0 } else { head(self.blocks[i - 1].out, b * t * c) };
            Block { d: &self.dims, p: bp, a: ba, b, t }.backward(be, params, grads, dacts, x, g(x))?;
        }
        be.broadcast_add_backward(head(p.pos_emb.at(grads), t * c), g(x0), Bcast { outer: b, inner: t, c })?;
        be.embedding_backward(p.token_emb.at(grads), g(x0), IdxBuf { len: b * t, ..self.ids }, c)
    }
}
