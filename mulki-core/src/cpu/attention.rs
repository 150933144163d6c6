//! Multi-head self-attention over packed qkv, as HF `CLIPAttention` after its projections:
//! `softmax(q·kᵀ·hs^−½ [+ causal mask])·v`. One task per (image/text, head), which owns that
//! head's columns of the output and of dqkv, so no two tasks write the same element.
//! Dims legend: `b` batch, `t` tokens, `nh` heads, `hs` head size, `c = nh·hs`.
use super::pool::{Pool, SyncPtr};
use crate::backend::Attn;
use crate::elem::Elem;

fn dot<E: Elem>(a: &[E], b: &[E]) -> E {
    a.iter().zip(b).fold(E::zero(), |s, (&x, &y)| s + x * y)
}

/// Writes out [b, t, c] and probs [b, nh, t, t] (masked entries exactly 0, like HF's additive
/// `finfo.min` mask after exp).
pub(crate) fn forward<E: Elem>(pool: &Pool, out: &mut [E], probs: &mut [E], qkv: &[E], d: Attn) {
    let (t, nh, hs) = (d.t, d.nh, d.hs);
    let c = nh * hs;
    let scale = E::from_f64(1.0 / libm::sqrt(hs as f64));
    let (po, pp) = (SyncPtr::new(out), SyncPtr::new(probs));
    pool.run(d.b * nh, t * t * hs * 2, |task| {
        let (bi, h) = (task / nh, task % nh);
        let row = |i: usize, which: usize| {
            let s = (bi * t + i) * 3 * c + which * c + h * hs;
            &qkv[s..s + hs]
        };
        for i in 0..t {
            // SAFETY: (bi, h, i) rows of probs are owned by this task.
            let p = unsafe { pp.slice(((bi * nh + h) * t + i) * t, t) };
            let keys = if d.causal { i + 1 } else { t };
            let q = row(i, 0);
            let mut mx = E::neg_infinity();
            for (j, pj) in p.iter_mut().enumerate().take(keys) {
                *pj = dot(q, row(j, 1)) * scale;
                mx = mx.max(*pj);
            }
            let mut sum = E::zero();
            for pj in p.iter_mut().take(keys) {
                *pj = (*pj - mx).exp();
                sum = sum + *pj;
            }
            for pj in p.iter_mut().take(keys) {
                *pj = *pj / sum;
            }
            for pj in p.iter_mut().skip(keys) {
                *pj = E::zero();
            }
            // SAFETY: head h's columns of row (bi, i) are owned by this task.
            let o = unsafe { po.slice((bi * t + i) * c + h * hs, hs) };
            o.fill(E::zero());
            for (j, &pj) in p.iter().enumerate().take(keys) {
                for (ov, &vv) in o.iter_mut().zip(row(j, 2)) {
                    *ov = *ov + pj * vv;
                }
            }
        }
    });
}

/// Adds into dqkv [b, t, 3c]. Per query i: dp_j = ⟨dout_i, v_j⟩, ds_j = p_j·(dp_j − Σ p·dp),
/// dq_i += scale·Σ ds_j k_j, dk_j += scale·ds_j q_i, dv_j += p_j dout_i. dp is recomputed in a
/// second pass instead of stored, so the backward needs no scratch memory.
pub(crate) fn backward<E: Elem>(pool: &Pool, dqkv: &mut [E], dout: &[E], qkv: &[E], probs: &[E], d: Attn) {
    let (t, nh, hs) = (d.t, d.nh, d.hs);
    let c = nh * hs;
    let scale = E::from_f64(1.0 / libm::sqrt(hs as f64));
    let pd = SyncPtr::new(dqkv);
    pool.run(d.b * nh, t * t * hs * 4, |task| {
        let (bi, h) = (task / nh, task % nh);
        let at = |i: usize, which: usize| (bi * t + i) * 3 * c + which * c + h * hs;
        for i in 0..t {
            let p = &probs[((bi * nh + h) * t + i) * t..][..t];
            let keys = if d.causal { i + 1 } else { t };
            let dy = &dout[(bi * t + i) * c + h * hs..][..hs];
            let mut pdp = E::zero();
            for (j, &pj) in p.iter().enumerate().take(keys) {
                pdp = pdp + pj * dot(dy, &qkv[at(j, 2)..at(j, 2) + hs]);
            }
            for (j, &pj) in p.iter().enumerate().take(keys) {
                let ds = pj * (dot(dy, &qkv[at(j, 2)..at(j, 2) + hs]) - pdp) * scale;
                // SAFETY: head h's columns of batch item bi are owned by this task; the three
                // slices are distinct (q, k, v sections, or rows i and j of different sections).
                unsafe {
                    let dq = pd.slice(at(i, 0), hs);
                    for (x, &kv) in dq.iter_mut().zip(&qkv[at(j, 1)..at(j, 1) + hs]) {
                        *x = *x + ds * kv;
                    }
                    let dk = pd.slice(at(j, 1), hs);
                    for (x, &qv) in dk.iter_mut().zip(&qkv[at(i, 0)..at(i, 0) + hs]) {
                        *x = *x + ds * qv;
                    }
                    let dv = pd.slice(at(j, 2), hs);
                    for (x, &g) in dv.iter_mut().zip(dy) {
                        *x = *x + pj * g;
                    }
                }
            }
        }
    });
}
