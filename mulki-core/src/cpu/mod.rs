//! The CPU backend (feature `cpu`): arenas are `Vec`s, GEMMs run on matrixmultiply, and with
//! feature `std` kernels split fixed-size tasks over scoped threads (see [`pool`]).
mod act;
mod attention;
mod cross_entropy;
mod embedding;
mod gemm;
mod layer_norm;
mod normalize;
mod optim;
mod patchify;
pub mod pool;
mod softmax;
mod vmath;

use alloc::vec;
use alloc::vec::Vec;

pub use gemm::CpuElem;
pub use pool::Pool;

use crate::backend::{
    check_ids, AdamW, ArenaId, Attn, Backend, Bcast, Buf, Ce, Gemm, IdxBuf, Patches, Rows, WeightRule,
};
use crate::clip::config::HiddenAct;
use crate::error::Error;

/// CPU backend over element type `E` (f32 for training, f64 for finite-difference checks).
pub struct CpuBackend<E> {
    arenas: Vec<Vec<E>>,
    idx: Vec<Vec<u32>>,
    pool: Pool,
    /// What the last `stage` copied.
    staged: Vec<E>,
}

impl<E: CpuElem> CpuBackend<E> {
    /// A backend using up to `threads` threads (ignored without feature `std`).
    pub fn new(threads: usize) -> Self {
        CpuBackend { arenas: Vec::new(), idx: Vec::new(), pool: Pool::new(threads), staged: Vec::new() }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The whole arena, for host-side inspection.
    pub fn arena(&self, id: ArenaId) -> Option<&[E]> {
        self.arenas.get(id as usize).map(|a| a.as_slice())
    }

    fn check(&self, op: &'static str, b: Buf) -> Result<(), Error> {
        match self.arenas.get(b.arena as usize) {
            Some(a) if b.offset.checked_add(b.len).is_some_and(|end| end <= a.len()) => Ok(()),
            Some(_) => Err(Error::Buffer { op, reason: "buffer handle outside its arena" }),
            None => Err(Error::Buffer { op, reason: "unknown arena" }),
        }
    }

    /// Resolves the operands of one kernel: checks every handle's bounds and that no output
    /// overlaps any other operand, then lends the output slices mutably and the inputs shared.
    #[allow(clippy::type_complexity)]
    fn args<'a, const O: usize, const I: usize>(
        &mut self, op: &'static str, outs: [Buf; O], ins: [Buf; I],
    ) -> Result<([&'a mut [E]; O], [&'a [E]; I]), Error> {
        for b in outs.iter().chain(ins.iter()) {
            self.check(op, *b)?;
        }
        for (i, o) in outs.iter().enumerate() {
            if outs[i + 1..].iter().chain(ins.iter()).any(|x| o.overlaps(x)) {
                return Err(Error::Buffer { op, reason: "an output overlaps another operand" });
            }
        }
        // SAFETY: bounds were checked; outputs are disjoint from each other and from inputs, so
        // the mutable slices alias nothing. The slices live only for this kernel call, during
        // which no arena is reallocated (`alloc` needs `&mut self`, which the kernel holds).
        let base = |arenas: &mut Vec<Vec<E>>, b: Buf| unsafe { arenas[b.arena as usize].as_mut_ptr().add(b.offset) };
        let o = outs.map(|b| unsafe { core::slice::from_raw_parts_mut(base(&mut self.arenas, b), b.len) });
        let i = ins.map(|b| unsafe { core::slice::from_raw_parts(base(&mut self.arenas, b) as *const E, b.len) });
        Ok((o, i))
    }

    fn ids<'a>(&self, op: &'static str, b: IdxBuf) -> Result<&'a [u32], Error> {
        match self.idx.get(b.arena as usize) {
            Some(a) if b.offset.checked_add(b.len).is_some_and(|end| end <= a.len()) => {
                // SAFETY: index arenas are only written through `write_idx` (`&mut self`),
                // never while a kernel holds this slice.
                Ok(unsafe { core::slice::from_raw_parts(a.as_ptr().add(b.offset), b.len) })
            }
            _ => Err(Error::Buffer { op, reason: "index handle outside its arena" }),
        }
    }
}

fn need(op: &'static str, buf: &[impl Sized], len: usize) -> Result<(), Error> {
    if buf.len() < len {
        return Err(Error::Buffer { op, reason: "buffer shorter than its dims" });
    }
    Ok(())
}

impl<E: CpuElem> Backend for CpuBackend<E> {
    type E = E;

    fn alloc(&mut self, len: usize) -> Result<ArenaId, Error> {
        self.arenas.push(vec![E::zero(); len]);
        Ok((self.arenas.len() - 1) as ArenaId)
    }

    fn alloc_idx(&mut self, len: usize) -> Result<ArenaId, Error> {
        self.idx.push(vec![0; len]);
        Ok((self.idx.len() - 1) as ArenaId)
    }

    fn write(&mut self, dst: Buf, src: &[E]) -> Result<(), Error> {
        let ([d], []) = self.args("write", [dst], [])?;
        if d.len() != src.len() {
            return Err(Error::Buffer { op: "write", reason: "length mismatch" });
        }
        d.copy_from_slice(src);
        Ok(())
    }

    fn read(&mut self, src: Buf, dst: &mut [E]) -> Result<(), Error> {
        let ([], [s]) = self.args("read", [], [src])?;
        if s.len() != dst.len() {
            return Err(Error::Buffer { op: "read", reason: "length mismatch" });
        }
        dst.copy_from_slice(s);
        Ok(())
    }

    fn stage(&mut self, src: Buf) -> Result<(), Error> {
        // The copy is reused from step to step, so staging allocates nothing once it has grown.
        let mut staged = core::mem::take(&mut self.staged);
        let ([], [s]) = self.args("stage", [], [src])?;
        staged.clear();
        staged.extend_from_slice(s);
        self.staged = staged;
        Ok(())
    }

    fn collect(&mut self, dst: &mut [E]) -> Result<(), Error> {
        if self.staged.len() != dst.len() {
            return Err(Error::Buffer { op: "collect", reason: "length mismatch" });
        }
        dst.copy_from_slice(&self.staged);
        Ok(())
    }

    fn write_idx(&mut self, dst: IdxBuf, src: &[u32]) -> Result<(), Error> {
        let arena =
            self.idx.get_mut(dst.arena as usize).ok_or(Error::Buffer { op: "write_idx", reason: "unknown arena" })?;
        let slot = dst
            .offset
            .checked_add(dst.len)
            .and_then(|end| arena.get_mut(dst.offset..end))
            .ok_or(Error::Buffer { op: "write_idx", reason: "index handle outside its arena" })?;
        if slot.len() != src.len() {
            return Err(Error::Buffer { op: "write_idx", reason: "length mismatch" });
        }
        slot.copy_from_slice(src);
        Ok(())
    }

    fn fill(&mut self, dst: Buf, value: f64) -> Result<(), Error> {
        let ([d], []) = self.args("fill", [dst], [])?;
        act::fill(&self.pool, d, E::from_f64(value));
        Ok(())
    }

    fn copy(&mut self, dst: Buf, src: Buf) -> Result<(), Error> {
        let ([d], [s]) = self.args("copy", [dst], [src])?;
        if d.len() != s.len() {
            return Err(Error::Buffer { op: "copy", reason: "length mismatch" });
        }
        d.copy_from_slice(s);
        Ok(())
    }

    fn gemm(&mut self, c: Buf, a: Buf, b: Buf, dims: Gemm) -> Result<(), Error> {
        let ([cs], [as_, bs]) = self.args("gemm", [c], [a, b])?;
        let (na, nb, nc) = gemm::extents(dims);
        need("gemm", as_, na)?;
        need("gemm", bs, nb)?;
        need("gemm", cs, nc)?;
        gemm::gemm(&self.pool, cs, as_, bs, dims);
        Ok(())
    }

    fn broadcast_add_forward(&mut self, out: Buf, add: Buf, dims: Bcast) -> Result<(), Error> {
        let ([o], [a]) = self.args("broadcast_add_forward", [out], [add])?;
        need("broadcast_add_forward", o, dims.outer * dims.inner * dims.c)?;
        need("broadcast_add_forward", a, dims.inner * dims.c)?;
        embedding::broadcast_add(&self.pool, o, a, dims);
        Ok(())
    }

    fn broadcast_add_backward(&mut self, dadd: Buf, dout: Buf, dims: Bcast) -> Result<(), Error> {
        let ([da], [dy]) = self.args("broadcast_add_backward", [dadd], [dout])?;
        need("broadcast_add_backward", da, dims.inner * dims.c)?;
        need("broadcast_add_backward", dy, dims.outer * dims.inner * dims.c)?;
        embedding::broadcast_add_backward(&self.pool, da, dy, dims);
        Ok(())
    }

    fn layer_norm_forward(
        &mut self, out: Buf, mean: Buf, rstd: Buf, inp: Buf, weight: Buf, bias: Buf, dims: Rows,
    ) -> Result<(), Error> {
        let op = "layer_norm_forward";
        let ([o, m, r], [x, w, b]) = self.args(op, [out, mean, rstd], [inp, weight, bias])?;
        for (s, n) in [(&*o, dims.rows * dims.c), (&*m, dims.rows), (&*r, dims.rows)] {
            need(op, s, n)?;
        }
        for (s, n) in [(x, dims.rows * dims.c), (w, dims.c), (b, dims.c)] {
            need(op, s, n)?;
        }
        layer_norm::forward(&self.pool, o, m, r, x, w, b, dims);
        Ok(())
    }

    fn layer_norm_backward(
        &mut self, dinp: Buf, dweight: Buf, dbias: Buf, dout: Buf, inp: Buf, weight: Buf, mean: Buf, rstd: Buf,
        dims: Rows,
    ) -> Result<(), Error> {
        let op = "layer_norm_backward";
        let ([dx, dw, db], [dy, x, w, m, r]) =
            self.args(op, [dinp, dweight, dbias], [dout, inp, weight, mean, rstd])?;
        let (rc, c, rows) = (dims.rows * dims.c, dims.c, dims.rows);
        for (s, n) in [(&*dx, rc), (&*dw, c), (&*db, c)] {
            need(op, s, n)?;
        }
        for (s, n) in [(dy, rc), (x, rc), (w, c), (m, rows), (r, rows)] {
            need(op, s, n)?;
        }
        layer_norm::backward(&self.pool, dx, dw, db, dy, x, w, m, r, dims);
        Ok(())
    }

    fn softmax_forward(&mut self, out: Buf, inp: Buf, dims: Rows) -> Result<(), Error> {
        let ([o], [x]) = self.rows_args("softmax_forward", [out], [inp], dims)?;
        softmax::softmax_forward(&self.pool, o, x, dims);
        Ok(())
    }

    fn softmax_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, dims: Rows) -> Result<(), Error> {
        let ([dx], [dy, y]) = self.rows_args("softmax_backward", [dinp], [dout, out], dims)?;
        softmax::softmax_backward(&self.pool, dx, dy, y, dims);
        Ok(())
    }

    fn log_softmax_forward(&mut self, out: Buf, inp: Buf, dims: Rows) -> Result<(), Error> {
        let ([o], [x]) = self.rows_args("log_softmax_forward", [out], [inp], dims)?;
        softmax::log_softmax_forward(&self.pool, o, x, dims);
        Ok(())
    }

    fn log_softmax_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, dims: Rows) -> Result<(), Error> {
        let ([dx], [dy, y]) = self.rows_args("log_softmax_backward", [dinp], [dout, out], dims)?;
        softmax::log_softmax_backward(&self.pool, dx, dy, y, dims);
        Ok(())
    }

    fn attention_forward(&mut self, out: Buf, probs: Buf, qkv: Buf, dims: Attn) -> Result<(), Error> {
        let op = "attention_forward";
        let ([o, p], [x]) = self.args(op, [out, probs], [qkv])?;
        let btc = dims.b * dims.t * dims.nh * dims.hs;
        need(op, o, btc)?;
        need(op, p, dims.b * dims.nh * dims.t * dims.t)?;
        need(op, x, 3 * btc)?;
        attention::forward(&self.pool, o, p, x, dims);
        Ok(())
    }

    fn attention_backward(&mut self, dqkv: Buf, dout: Buf, qkv: Buf, probs: Buf, dims: Attn) -> Result<(), Error> {
        let op = "attention_backward";
        let ([dx], [dy, x, p]) = self.args(op, [dqkv], [dout, qkv, probs])?;
        let btc = dims.b * dims.t * dims.nh * dims.hs;
        need(op, dx, 3 * btc)?;
        need(op, dy, btc)?;
        need(op, x, 3 * btc)?;
        need(op, p, dims.b * dims.nh * dims.t * dims.t)?;
        attention::backward(&self.pool, dx, dy, x, p, dims);
        Ok(())
    }

    fn act_forward(&mut self, out: Buf, inp: Buf, act: HiddenAct) -> Result<(), Error> {
        let ([o], [x]) = self.args("act_forward", [out], [inp])?;
        need("act_forward", x, o.len())?;
        act::forward(&self.pool, o, x, act);
        Ok(())
    }

    fn act_backward(&mut self, dinp: Buf, dout: Buf, inp: Buf, act: HiddenAct) -> Result<(), Error> {
        let ([dx], [dy, x]) = self.args("act_backward", [dinp], [dout, inp])?;
        need("act_backward", dy, dx.len())?;
        need("act_backward", x, dx.len())?;
        act::backward(&self.pool, dx, dy, x, act);
        Ok(())
    }

    fn embedding_forward(&mut self, out: Buf, table: Buf, ids: IdxBuf, c: usize) -> Result<(), Error> {
        let op = "embedding_forward";
        let ids = self.ids(op, ids)?;
        let ([o], [tb]) = self.args(op, [out], [table])?;
        check_ids(ids, tb.len(), c)?;
        need(op, o, ids.len() * c)?;
        embedding::gather(&self.pool, o, tb, ids, c);
        Ok(())
    }

    fn embedding_backward(&mut self, dtable: Buf, dout: Buf, ids: IdxBuf, c: usize) -> Result<(), Error> {
        let op = "embedding_backward";
        let ids = self.ids(op, ids)?;
        let ([dt], [dy]) = self.args(op, [dtable], [dout])?;
        check_ids(ids, dt.len(), c)?;
        need(op, dy, ids.len() * c)?;
        embedding::scatter_add(&self.pool, dt, dy, ids, c);
        Ok(())
    }

    fn patchify_forward(&mut self, out: Buf, pixels: Buf, dims: Patches) -> Result<(), Error> {
        let op = "patchify_forward";
        let ([o], [x]) = self.args(op, [out], [pixels])?;
        let n = dims.b * dims.channels * dims.side * dims.side;
        if dims.patch == 0 || !dims.side.is_multiple_of(dims.patch) {
            return Err(Error::Buffer { op, reason: "patch must divide the image side" });
        }
        need(op, o, n)?;
        need(op, x, n)?;
        patchify::forward(&self.pool, o, x, dims);
        Ok(())
    }

    fn patchify_backward(&mut self, dpixels: Buf, dout: Buf, dims: Patches) -> Result<(), Error> {
        let op = "patchify_backward";
        let ([dx], [dy]) = self.args(op, [dpixels], [dout])?;
        let n = dims.b * dims.channels * dims.side * dims.side;
        if dims.patch == 0 || !dims.side.is_multiple_of(dims.patch) {
            return Err(Error::Buffer { op, reason: "patch must divide the image side" });
        }
        need(op, dx, n)?;
        need(op, dy, n)?;
        patchify::backward(&self.pool, dx, dy, dims);
        Ok(())
    }

    fn vision_embed_forward(
        &mut self, out: Buf, patch_out: Buf, class_emb: Buf, pos: Buf, b: usize, t: usize, c: usize,
    ) -> Result<(), Error> {
        let op = "vision_embed_forward";
        let ([o], [p, ce, ps]) = self.args(op, [out], [patch_out, class_emb, pos])?;
        if t == 0 {
            return Err(Error::Buffer { op, reason: "no tokens" });
        }
        for (s, n) in [(&*o, b * t * c), (p, b * (t - 1) * c), (ce, c), (ps, t * c)] {
            need(op, s, n)?;
        }
        embedding::vision_embed(&self.pool, o, p, ce, ps, b, t, c);
        Ok(())
    }

    fn vision_embed_backward(
        &mut self, dpatch_out: Buf, dclass_emb: Buf, dpos: Buf, dout: Buf, b: usize, t: usize, c: usize,
    ) -> Result<(), Error> {
        let op = "vision_embed_backward";
        let ([dp, dc, dps], [dy]) = self.args(op, [dpatch_out, dclass_emb, dpos], [dout])?;
        if t == 0 {
            return Err(Error::Buffer { op, reason: "no tokens" });
        }
        for (s, n) in [(&*dp, b * (t - 1) * c), (&*dc, c), (&*dps, t * c), (dy, b * t * c)] {
            need(op, s, n)?;
        }
        embedding::vision_embed_backward(&self.pool, dp, dc, dps, dy, b, t, c);
        Ok(())
    }

    fn l2_normalize_forward(&mut self, out: Buf, norm: Buf, inp: Buf, dims: Rows) -> Result<(), Error> {
        let op = "l2_normalize_forward";
        let ([o, n], [x]) = self.args(op, [out, norm], [inp])?;
        for (s, len) in [(&*o, dims.rows * dims.c), (&*n, dims.rows), (x, dims.rows * dims.c)] {
            need(op, s, len)?;
        }
        normalize::l2_forward(&self.pool, o, n, x, dims);
        Ok(())
    }

    fn l2_normalize_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, norm: Buf, dims: Rows) -> Result<(), Error> {
        let op = "l2_normalize_backward";
        let ([dx], [dy, y, n]) = self.args(op, [dinp], [dout, out, norm])?;
        let rc = dims.rows * dims.c;
        for (s, len) in [(&*dx, rc), (dy, rc), (y, rc), (n, dims.rows)] {
            need(op, s, len)?;
        }
        normalize::l2_backward(&self.pool, dx, dy, y, n, dims);
        Ok(())
    }

    fn row_dot_forward(&mut self, out: Buf, a: Buf, b: Buf, dims: Rows) -> Result<(), Error> {
        let op = "row_dot_forward";
        let ([o], [x, y]) = self.args(op, [out], [a, b])?;
        let rc = dims.rows * dims.c;
        for (s, len) in [(&*o, dims.rows), (x, rc), (y, rc)] {
            need(op, s, len)?;
        }
        normalize::dot_forward(&self.pool, o, x, y, dims);
        Ok(())
    }

    fn row_dot_backward(
        &mut self, da: Option<Buf>, db: Option<Buf>, dout: Buf, a: Buf, b: Buf, dims: Rows,
    ) -> Result<(), Error> {
        let op = "row_dot_backward";
        for (dst, src) in [(da, b), (db, a)] {
            if let Some(dst) = dst {
                let ([d], [dy, s]) = self.args(op, [dst], [dout, src])?;
                need(op, d, dims.rows * dims.c)?;
                need(op, s, dims.rows * dims.c)?;
                need(op, dy, dims.rows)?;
                normalize::dot_backward_side(&self.pool, d, dy, s, dims);
            }
        }
        Ok(())
    }

    fn row_kl_forward(&mut self, out: Buf, p_log: Buf, q_log: Buf, dims: Rows) -> Result<(), Error> {
        let op = "row_kl_forward";
        let ([o], [lp, lq]) = self.args(op, [out], [p_log, q_log])?;
        let rc = dims.rows * dims.c;
        for (s, len) in [(&*o, dims.rows), (lp, rc), (lq, rc)] {
            need(op, s, len)?;
        }
        normalize::kl_forward(&self.pool, o, lp, lq, dims);
        Ok(())
    }

    fn row_kl_backward(
        &mut self, dp_log: Option<Buf>, dq_log: Option<Buf>, dout: Buf, p_log: Buf, q_log: Buf, dims: Rows,
    ) -> Result<(), Error> {
        let op = "row_kl_backward";
        for (dst, teacher) in [(dp_log, true), (dq_log, false)] {
            if let Some(dst) = dst {
                let ([d], [dy, lp, lq]) = self.args(op, [dst], [dout, p_log, q_log])?;
                let rc = dims.rows * dims.c;
                for (s, len) in [(&*d, rc), (dy, dims.rows), (lp, rc), (lq, rc)] {
                    need(op, s, len)?;
                }
                normalize::kl_backward_side(&self.pool, d, dy, lp, lq, teacher, dims);
            }
        }
        Ok(())
    }

    fn cross_entropy_forward(
        &mut self, loss: Buf, lse: Buf, logits: Buf, targets: IdxBuf, dims: Ce,
    ) -> Result<(), Error> {
        let op = "cross_entropy_forward";
        let t = self.ids(op, targets)?;
        let ([l, s], [z]) = self.args(op, [loss, lse], [logits])?;
        self.ce_checks(op, t, &[&*l, &*s], z, dims)?;
        cross_entropy::forward(&self.pool, l, s, z, t, dims);
        Ok(())
    }

    fn cross_entropy_backward(
        &mut self, dlogits: Buf, dloss: Buf, logits: Buf, lse: Buf, targets: IdxBuf, dims: Ce,
    ) -> Result<(), Error> {
        let op = "cross_entropy_backward";
        let t = self.ids(op, targets)?;
        let ([dz], [dl, z, s]) = self.args(op, [dlogits], [dloss, logits, lse])?;
        self.ce_checks(op, t, &[dl, s], z, dims)?;
        need(op, dz, dims.rows * dims.nc)?;
        cross_entropy::backward(&self.pool, dz, dl, z, s, t, dims);
        Ok(())
    }

    fn teacher_weights(
        &mut self, alpha: Buf, stat: Buf, rule: WeightRule, teachers: usize, b: usize,
    ) -> Result<(), Error> {
        let op = "teacher_weights";
        let ([a], [st]) = self.args(op, [alpha], [stat])?;
        need(op, a, teachers * b)?;
        match rule {
            WeightRule::Confidence { tau } => {
                need(op, st, teachers * b)?;
                optim::confidence_weights(a, st, tau, teachers, b);
            }
            WeightRule::Discrepancy { scale, threshold } => {
                if teachers != 2 {
                    return Err(Error::Buffer { op, reason: "the discrepancy rule needs two teachers" });
                }
                need(op, st, b)?;
                optim::discrepancy_weights(a, st, scale, threshold, b);
            }
        }
        Ok(())
    }

    fn prototype_ema(
        &mut self, protos: Buf, sums: Buf, counts: Buf, momentum: f64, dims: Rows, guard: Option<Buf>,
    ) -> Result<(), Error> {
        let op = "prototype_ema";
        if !self.guard_ok(op, guard)? {
            return Ok(());
        }
        let ([p], [s, n]) = self.args(op, [protos], [sums, counts])?;
        let rc = dims.rows * dims.c;
        for (x, len) in [(&*p, rc), (s, rc), (n, dims.rows)] {
            need(op, x, len)?;
        }
        optim::prototype_ema(&self.pool, p, s, n, momentum, dims);
        Ok(())
    }

    fn scale(&mut self, y: Buf, a: f64) -> Result<(), Error> {
        let ([ys], []) = self.args("scale", [y], [])?;
        let a = E::from_f64(a);
        act::map_elems(&self.pool, ys, 1, |_, v| *v = *v * a);
        Ok(())
    }

    fn axpby(&mut self, y: Buf, x: Buf, a: f64, b: f64) -> Result<(), Error> {
        let ([ys], [xs]) = self.args("axpby", [y], [x])?;
        need("axpby", xs, ys.len())?;
        optim::axpby(&self.pool, ys, xs, a, b);
        Ok(())
    }

    fn adamw(&mut self, params: Buf, grads: Buf, m: Buf, v: Buf, hp: AdamW) -> Result<(), Error> {
        let op = "adamw";
        if !self.guard_ok(op, hp.guard)? {
            return Ok(());
        }
        let ([p, ms, vs], [g]) = self.args(op, [params, m, v], [grads])?;
        for s in [&*ms, &*vs, g] {
            need(op, s, p.len())?;
        }
        optim::adamw(&self.pool, p, g, ms, vs, hp);
        Ok(())
    }
}

impl<E: CpuElem> CpuBackend<E> {
    /// Whether an update guarded by `guard` goes ahead: no guard, or a finite value in it.
    fn guard_ok(&mut self, op: &'static str, guard: Option<Buf>) -> Result<bool, Error> {
        let Some(g) = guard else { return Ok(true) };
        let ([], [s]) = self.args(op, [], [g])?;
        need(op, s, 1)?;
        Ok(s[0].to_f64().is_finite())
    }

    #[allow(clippy::type_complexity)]
    fn rows_args<'a, const O: usize, const I: usize>(
        &mut self, op: &'static str, outs: [Buf; O], ins: [Buf; I], dims: Rows,
    ) -> Result<([&'a mut [E]; O], [&'a [E]; I]), Error> {
        let (o, i) = self.args(op, outs, ins)?;
        for s in o.iter().map(|s| &**s).chain(i.iter().copied()) {
            need(op, s, dims.rows * dims.c)?;
        }
        Ok((o, i))
    }

    fn ce_checks(&self, op: &'static str, targets: &[u32], per_row: &[&[E]], logits: &[E], d: Ce) -> Result<(), Error> {
        if targets.len() < d.rows {
            return Err(Error::Buffer { op, reason: "fewer targets than rows" });
        }
        if let Some(&bad) = targets[..d.rows].iter().find(|&&y| y as usize >= d.nc) {
            return Err(Error::Index { what: "class label", index: bad as usize, bound: d.nc });
        }
        for s in per_row {
            need(op, s, d.rows)?;
        }
        need(op, logits, d.rows * d.nc)
    }
}
