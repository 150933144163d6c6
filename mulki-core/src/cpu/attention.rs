//! Multi-head self-attention over packed qkv, as HF `CLIPAttention` after its projections:
//! `softmax(q·kᵀ·hs^−½ [+ causal mask])·v`. One task per (image/text, head), which owns that
//! head's columns of the output and of dqkv, so no two tasks write the same element. The four
//! products per head run on matrixmultiply, reading q, k and v in place through the strides of
//! the packed layout (row stride 3c); a task's result does not depend on the thread count.
//! Dims legend: `b` batch, `t` tokens, `nh` heads, `hs` head size, `c = nh·hs`.
use alloc::vec;

use super::gemm::CpuElem;
use super::pool::{Pool, SyncPtr};
use super::vmath::sum_zip;
use crate::backend::Attn;

/// Writes out [b, t, c] and probs [b, nh, t, t] (masked entries exactly 0, like HF's additive
/// `finfo.min` mask after exp).
pub(crate) fn forward<E: CpuElem>(pool: &Pool, out: &mut [E], probs: &mut [E], qkv: &[E], d: Attn) {
    let (t, nh, hs) = (d.t, d.nh, d.hs);
    let c = nh * hs;
    let (rs, c3) = (3 * c as isize, c as isize);
    let scale = E::from_f64(1.0 / libm::sqrt(hs as f64));
    let (po, pp) = (SyncPtr::new(out), SyncPtr::new(probs));
    pool.run(d.b * nh, t * t * hs * 2, |task| {
        let (bi, h) = (task / nh, task % nh);
        let q = bi * t * 3 * c + h * hs;
        let p0 = (bi * nh + h) * t * t;
        // SAFETY: this task owns probs[p0 .. p0 + t·t] and head h's columns of rows
        // (bi, 0..t) of out; q, k and v lie inside qkv (checked by the caller).
        unsafe {
            let p = pp.slice(p0, t * t);
            // scores = scale · q·kᵀ: q rows at stride 3c, kᵀ read as k with swapped strides.
            E::mm(
                t,
                hs,
                t,
                scale,
                qkv.as_ptr().add(q),
                rs,
                1,
                qkv.as_ptr().add(q + c),
                1,
                rs,
                E::zero(),
                p.as_mut_ptr(),
                t as isize,
                1,
            );
            for (i, row) in p.chunks_exact_mut(t).enumerate() {
                let keys = if d.causal { i + 1 } else { t };
                let (live, masked) = row.split_at_mut(keys);
                let mx = live.iter().fold(E::neg_infinity(), |m, &v| m.max(v));
                for v in live.iter_mut() {
                    *v = *v - mx;
                }
                E::exp_in_place(live);
                let sum = sum_zip(live, live, |v, _| v);
                let inv = E::one() / sum;
                for v in live.iter_mut() {
                    *v = *v * inv;
                }
                masked.fill(E::zero());
            }
            // out = p·v
            E::mm(
                t,
                t,
                hs,
                E::one(),
                p.as_ptr(),
                t as isize,
                1,
                qkv.as_ptr().add(q + 2 * c),
                rs,
                1,
                E::zero(),
                po.ptr().add(bi * t * c + h * hs),
                c3,
                1,
            );
        }
    });
}

/// Adds into dqkv [b, t, 3c]: dv += pᵀ·dout, dp = dout·vᵀ, ds = p ⊙ (dp − Σ_j p·dp)·scale,
/// dq += ds·k, dk += dsᵀ·q. ds lives in a [t, t] scratch per task.
pub(crate) fn backward<E: CpuElem>(pool: &Pool, dqkv: &mut [E], dout: &[E], qkv: &[E], probs: &[E], d: Attn) {
    let (t, nh, hs) = (d.t, d.nh, d.hs);
    let c = nh * hs;
    let (rs, c1) = (3 * c as isize, c as isize);
    let ti = t as isize;
    let scale = E::from_f64(1.0 / libm::sqrt(hs as f64));
    let pd = SyncPtr::new(dqkv);
    pool.run(d.b * nh, t * t * hs * 4, |task| {
        let (bi, h) = (task / nh, task % nh);
        let q = bi * t * 3 * c + h * hs;
        let p = &probs[(bi * nh + h) * t * t..][..t * t];
        let dy = dout[bi * t * c + h * hs..].as_ptr();
        let mut ds = vec![E::zero(); t * t];
        // SAFETY: this task owns head h's q, k and v columns of rows (bi, 0..t) of dqkv; all
        // operands lie inside their buffers (checked by the caller); ds is its own.
        unsafe {
            let (qp, kp, vp) = (qkv.as_ptr().add(q), qkv.as_ptr().add(q + c), qkv.as_ptr().add(q + 2 * c));
            let (dq, dk, dv) = (pd.ptr().add(q), pd.ptr().add(q + c), pd.ptr().add(q + 2 * c));
            // dv += pᵀ·dout
            E::mm(t, t, hs, E::one(), p.as_ptr(), 1, ti, dy, c1, 1, E::one(), dv, rs, 1);
            // dp = dout·vᵀ
            E::mm(t, hs, t, E::one(), dy, c1, 1, vp, 1, rs, E::zero(), ds.as_mut_ptr(), ti, 1);
            for (pr, dr) in p.chunks_exact(t).zip(ds.chunks_exact_mut(t)) {
                let pdp = sum_zip(pr, dr, |a, b| a * b);
                for (x, &pj) in dr.iter_mut().zip(pr) {
                    *x = pj * (*x - pdp) * scale;
                }
            }
            // dq += ds·k, dk += dsᵀ·q
            E::mm(t, t, hs, E::one(), ds.as_ptr(), ti, 1, kp, rs, 1, E::one(), dq, rs, 1);
            E::mm(t, t, hs, E::one(), ds.as_ptr(), 1, ti, qp, rs, 1, E::one(), dk, rs, 1);
        }
    });
}
