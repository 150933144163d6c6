//! Label-smoothed cross-entropy per row (`F.cross_entropy(..., label_smoothing=ε,
//! reduction='none')`), from log-sum-exp, never from probabilities. Dims legend: `rows` × `nc`.
use super::pool::{Pool, SyncPtr};
use super::softmax::log_sum_exp;
use crate::backend::Ce;
use crate::elem::Elem;

/// `loss[r] = lse − (1−ε)·z[y] − ε/nc·Σ z`; saves lse.
pub(crate) fn forward<E: Elem>(pool: &Pool, loss: &mut [E], lse: &mut [E], logits: &[E], targets: &[u32], d: Ce) {
    let nc = d.nc;
    let eps = E::from_f64(d.smoothing);
    let (pl, ps) = (SyncPtr::new(loss), SyncPtr::new(lse));
    pool.rows(d.rows, 3 * nc, |rows| {
        for r in rows {
            let z = &logits[r * nc..(r + 1) * nc];
            let l = log_sum_exp(z);
            let sum = z.iter().fold(E::zero(), |s, &v| s + v);
            // SAFETY: rows are disjoint.
            let (lo, ls) = unsafe { (pl.slice(r, 1), ps.slice(r, 1)) };
            let mut v = l - (E::one() - eps) * z[targets[r] as usize];
            if d.smoothing != 0.0 {
                v = v - eps / E::from_f64(nc as f64) * sum;
            }
            lo[0] = v;
            ls[0] = l;
        }
    });
}

/// `dlogits[r] += dloss[r]·(softmax(z) − ((1−ε)·onehot + ε/nc))`.
pub(crate) fn backward<E: Elem>(
    pool: &Pool, dlogits: &mut [E], dloss: &[E], logits: &[E], lse: &[E], targets: &[u32], d: Ce,
) {
    let nc = d.nc;
    let eps = E::from_f64(d.smoothing);
    let uniform = eps / E::from_f64(nc as f64);
    let pd = SyncPtr::new(dlogits);
    pool.rows(d.rows, 3 * nc, |rows| {
        for r in rows {
            // SAFETY: rows are disjoint.
            let dz = unsafe { pd.slice(r * nc, nc) };
            let z = &logits[r * nc..(r + 1) * nc];
            for (j, x) in dz.iter_mut().enumerate() {
                let mut target = uniform;
                if j == targets[r] as usize {
                    target = target + E::one() - eps;
                }
                *x = *x + dloss[r] * ((z[j] - lse[r]).exp() - target);
            }
        }
    });
}
