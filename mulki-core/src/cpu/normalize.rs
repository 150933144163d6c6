//! Row L2-normalisation (`F.normalize(x, dim=-1, eps)`), the row dot product and the row KL
//! divergence: the row primitives the similarity logits and the distillation losses are built
//! from. Dims legend: `rows` × `c`.
use super::pool::{Pool, SyncPtr};
use crate::backend::Rows;
use crate::elem::Elem;

fn dot<E: Elem>(a: &[E], b: &[E]) -> E {
    a.iter().zip(b).fold(E::zero(), |s, (&x, &y)| s + x * y)
}

/// `out = x / max(‖x‖, eps)`; saves the unclamped ‖x‖.
pub(crate) fn l2_forward<E: Elem>(pool: &Pool, out: &mut [E], norm: &mut [E], inp: &[E], d: Rows) {
    let c = d.c;
    let eps = E::from_f64(d.eps);
    let (po, pn) = (SyncPtr::new(out), SyncPtr::new(norm));
    pool.rows(d.rows, 3 * c, |rows| {
        for r in rows {
            let x = &inp[r * c..(r + 1) * c];
            let n = dot(x, x).sqrt();
            let denom = n.max(eps);
            // SAFETY: rows are disjoint.
            let (o, nr) = unsafe { (po.slice(r * c, c), pn.slice(r, 1)) };
            for (o, &v) in o.iter_mut().zip(x) {
                *o = v / denom;
            }
            nr[0] = n;
        }
    });
}

/// `dinp += (dy − y·⟨y, dy⟩)/‖x‖`, or `dy/eps` where the clamp is active (its gradient is 0).
pub(crate) fn l2_backward<E: Elem>(pool: &Pool, dinp: &mut [E], dout: &[E], out: &[E], norm: &[E], d: Rows) {
    let c = d.c;
    let eps = E::from_f64(d.eps);
    let pd = SyncPtr::new(dinp);
    pool.rows(d.rows, 4 * c, |rows| {
        for r in rows {
            let (y, dy) = (&out[r * c..(r + 1) * c], &dout[r * c..(r + 1) * c]);
            // SAFETY: rows are disjoint.
            let dx = unsafe { pd.slice(r * c, c) };
            if norm[r] > eps {
                let yd = dot(y, dy);
                for i in 0..c {
                    dx[i] = dx[i] + (dy[i] - y[i] * yd) / norm[r];
                }
            } else {
                for i in 0..c {
                    dx[i] = dx[i] + dy[i] / eps;
                }
            }
        }
    });
}

pub(crate) fn dot_forward<E: Elem>(pool: &Pool, out: &mut [E], a: &[E], b: &[E], d: Rows) {
    let c = d.c;
    let po = SyncPtr::new(out);
    pool.rows(d.rows, 2 * c, |rows| {
        // SAFETY: rows are disjoint.
        let o = unsafe { po.slice(rows.start, rows.len()) };
        for (j, r) in rows.enumerate() {
            o[j] = dot(&a[r * c..(r + 1) * c], &b[r * c..(r + 1) * c]);
        }
    });
}

/// `dst[r] += dout[r]·src[r]`: one side of the row dot's gradient.
pub(crate) fn dot_backward_side<E: Elem>(pool: &Pool, dst: &mut [E], dout: &[E], src: &[E], d: Rows) {
    let c = d.c;
    let pd = SyncPtr::new(dst);
    pool.rows(d.rows, 2 * c, |rows| {
        for r in rows {
            // SAFETY: rows are disjoint.
            let o = unsafe { pd.slice(r * c, c) };
            for (x, &s) in o.iter_mut().zip(&src[r * c..(r + 1) * c]) {
                *x = *x + dout[r] * s;
            }
        }
    });
}

/// `out[r] = Σ exp(lp)·(lp − lq)`; entries where p = 0 contribute 0 (as `0·log 0 = 0`).
pub(crate) fn kl_forward<E: Elem>(pool: &Pool, out: &mut [E], lp: &[E], lq: &[E], d: Rows) {
    let c = d.c;
    let po = SyncPtr::new(out);
    pool.rows(d.rows, 3 * c, |rows| {
        // SAFETY: rows are disjoint.
        let o = unsafe { po.slice(rows.start, rows.len()) };
        for (j, r) in rows.enumerate() {
            let (p, q) = (&lp[r * c..(r + 1) * c], &lq[r * c..(r + 1) * c]);
            o[j] = p.iter().zip(q).fold(E::zero(), |s, (&a, &b)| {
                let pa = a.exp();
                if pa == E::zero() {
                    s
                } else {
                    s + pa * (a - b)
                }
            });
        }
    });
}

/// `dlq += −dout·exp(lp)` (`teacher == false`) or `dlp += dout·exp(lp)·(lp − lq + 1)`.
pub(crate) fn kl_backward_side<E: Elem>(
    pool: &Pool, dst: &mut [E], dout: &[E], lp: &[E], lq: &[E], teacher: bool, d: Rows,
) {
    let c = d.c;
    let pd = SyncPtr::new(dst);
    pool.rows(d.rows, 3 * c, |rows| {
        for r in rows {
            // SAFETY: rows are disjoint.
            let g = unsafe { pd.slice(r * c, c) };
            for i in 0..c {
                let (a, b) = (lp[r * c + i], lq[r * c + i]);
                let pa = a.exp();
                g[i] = g[i] + if teacher { dout[r] * pa * (a - b + E::one()) } else { -dout[r] * pa };
            }
        }
    });
}
