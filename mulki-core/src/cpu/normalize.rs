//! Row L2-normalisation (`F.normalize(x, dim=-1, eps)`) and the row dot product, the two row
//! primitives the similarity logits and feature losses are built from. Dims legend: `rows` × `c`.
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
pub(crate) fn l2_backward<E: Elem>(
    pool: &Pool,
    dinp: &mut [E],
    dout: &[E],
    out: &[E],
    norm: &[E],
    d: Rows,
) {
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
pub(crate) fn dot_backward_side<E: Elem>(
    pool: &Pool,
    dst: &mut [E],
    dout: &[E],
    src: &[E],
    d: Rows,
) {
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
