//! Elementwise updates over flat buffers: AdamW (as `torch.optim.AdamW`'s single-tensor path)
//! and axpby (ensembles, interpolation). No gradients.
use super::act::map_elems;
use super::pool::Pool;
use crate::backend::AdamW;
use crate::elem::Elem;

pub(crate) fn axpby<E: Elem>(pool: &Pool, y: &mut [E], x: &[E], a: f64, b: f64) {
    let (a, b) = (E::from_f64(a), E::from_f64(b));
    map_elems(pool, y, 3, |i, v| *v = a * x[i] + b * *v);
}

/// Same operation order as PyTorch: decay, moments, then
/// `p −= (lr/bc1)·m / (√v/√bc2 + eps)`.
pub(crate) fn adamw<E: Elem>(
    pool: &Pool,
    p: &mut [E],
    g: &[E],
    m: &mut [E],
    v: &mut [E],
    hp: AdamW,
) {
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
