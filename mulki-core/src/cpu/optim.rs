//! Updates without a gradient: AdamW (as `torch.optim.AdamW`'s single-tensor path), axpby
//! (ensembles, interpolation), and the detached per-sample teacher weights of METHOD.md stage 3.
use super::act::map_elems;
use super::pool::Pool;
use crate::backend::{AdamW, Rows};
use crate::elem::Elem;

pub(crate) fn axpby<E: Elem>(pool: &Pool, y: &mut [E], x: &[E], a: f64, b: f64) {
    let (a, b) = (E::from_f64(a), E::from_f64(b));
    map_elems(pool, y, 3, |i, v| *v = a * x[i] + b * *v);
}

/// Same operation order as PyTorch: decay, moments, then
/// `p −= (lr/bc1)·m / (√v/√bc2 + eps)`.
pub(crate) fn adamw<E: Elem>(pool: &Pool, p: &mut [E], g: &[E], m: &mut [E], v: &mut [E], hp: AdamW) {
    let bc1 = 1.0 - libm::pow(hp.beta1, hp.step as f64);
    let bc2_sqrt = libm::sqrt(1.0 - libm::pow(hp.beta2, hp.step as f64));
    let decay = E::from_f64(1.0 - hp.lr * hp.weight_decay);
    let (b1, b2) = (E::from_f64(hp.beta1), E::from_f64(hp.beta2));
    let step_size = E::from_f64(hp.lr / bc1);
    let (bc2s, eps) = (E::from_f64(bc2_sqrt), E::from_f64(hp.eps));
    let (pm, pv) = (super::pool::SyncPtr::new(m), super::pool::SyncPtr::new(v));
    map_elems(pool, p, 12, |i, pi| {
        // SAFETY: element i of m and v belongs to the task that owns element i of p.
        let (mi, vi) = unsafe { (&mut pm.slice(i, 1)[0], &mut pv.slice(i, 1)[0]) };
        let gi = g[i];
        *pi = *pi * decay;
        *mi = b1 * *mi + (E::one() - b1) * gi;
        *vi = b2 * *vi + (E::one() - b2) * gi * gi;
        *pi = *pi - step_size * *mi / (vi.sqrt() / bc2s + eps);
    });
}

/// `alpha[:, i] = softmax_k(exp(−nll[k, i])/τ)`: q = exp(−CE) is the teacher's probability of
/// the true class.
pub(crate) fn confidence_weights<E: Elem>(alpha: &mut [E], nll: &[E], tau: f64, teachers: usize, b: usize) {
    for i in 0..b {
        let logit = |k: usize| libm::exp(-nll[k * b + i].to_f64()) / tau;
        let mx = (0..teachers).map(logit).fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = (0..teachers).map(|k| libm::exp(logit(k) - mx)).sum();
        for k in 0..teachers {
            alpha[k * b + i] = E::from_f64(libm::exp(logit(k) - mx) / sum);
        }
    }
}

/// `alpha[1, i] = σ(scale·(√dist2[i] − threshold))`, `alpha[0, i] = 1 − alpha[1, i]`.
pub(crate) fn discrepancy_weights<E: Elem>(alpha: &mut [E], dist2: &[E], scale: f64, threshold: f64, b: usize) {
    for i in 0..b {
        let x = scale * (libm::sqrt(dist2[i].to_f64().max(0.0)) - threshold);
        let p = 1.0 / (1.0 + libm::exp(-x));
        alpha[b + i] = E::from_f64(p);
        alpha[i] = E::from_f64(1.0 - p);
    }
}

/// `π_c = normalize(m·π_c + (1−m)·sums_c/counts_c)` where `counts_c > 0`.
pub(crate) fn prototype_ema<E: Elem>(pool: &Pool, protos: &mut [E], sums: &[E], counts: &[E], m: f64, d: Rows) {
    let c = d.c;
    let (m, eps) = (E::from_f64(m), E::from_f64(d.eps));
    let pp = super::pool::SyncPtr::new(protos);
    pool.rows(d.rows, 4 * c, |rows| {
        for r in rows {
            if counts[r] <= E::zero() {
                continue;
            }
            // SAFETY: rows are disjoint.
            let p = unsafe { pp.slice(r * c, c) };
            let inv = E::one() / counts[r];
            for (x, &s) in p.iter_mut().zip(&sums[r * c..(r + 1) * c]) {
                *x = m * *x + (E::one() - m) * s * inv;
            }
            let norm = p.iter().fold(E::zero(), |acc, &x| acc + x * x).sqrt().max(eps);
            for x in p.iter_mut() {
                *x = *x / norm;
            }
        }
    });
}
