//! Row softmax and log-softmax (`torch.softmax` / `torch.log_softmax` over the last axis), both
//! max-subtracted so that logits at scale 100 neither overflow nor lose their small entries.
//! Dims legend: `rows` × `c`.
use super::pool::{Pool, SyncPtr};
use crate::backend::Rows;
use crate::elem::Elem;

/// log Σ exp(x), computed as max + log Σ exp(x − max). An all −∞ row gives −∞.
pub(crate) fn log_sum_exp<E: Elem>(x: &[E]) -> E {
    let mx = x.iter().fold(E::neg_infinity(), |m, &v| m.max(v));
    if mx == E::neg_infinity() {
        return mx;
    }
    mx + x.iter().fold(E::zero(), |s, &v| s + (v - mx).exp()).ln()
}

/// Applies `f(out_row, in_row)` to each row in parallel.
pub(crate) fn map_rows<E: Elem>(pool: &Pool, out: &mut [E], inp: &[E], d: Rows, f: impl Fn(&mut [E], &[E]) + Sync) {
    let c = d.c;
    let po = SyncPtr::new(out);
    pool.rows(d.rows, 4 * c, |rows| {
        for r in rows {
            // SAFETY: rows are disjoint.
            let o = unsafe { po.slice(r * c, c) };
            f(o, &inp[r * c..(r + 1) * c]);
        }
    });
}

pub(crate) fn softmax_forward<E: Elem>(pool: &Pool, out: &mut [E], inp: &[E], d: Rows) {
    map_rows(pool, out, inp, d, |o, x| {
        let lse = log_sum_exp(x);
        for (o, &v) in o.iter_mut().zip(x) {
            *o = (v - lse).exp();
        }
    });
}

/// Applies `f(dinp_row, dout_row, out_row)` to each row in parallel (the backwards).
fn map_grad_rows<E: Elem>(
    pool: &Pool, dinp: &mut [E], dout: &[E], out: &[E], d: Rows, f: impl Fn(&mut [E], &[E], &[E]) + Sync,
) {
    let c = d.c;
    let pd = SyncPtr::new(dinp);
    pool.rows(d.rows, 4 * c, |rows| {
        for r in rows {
            // SAFETY: rows are disjoint.
            let dx = unsafe { pd.slice(r * c, c) };
            f(dx, &dout[r * c..(r + 1) * c], &out[r * c..(r + 1) * c]);
        }
    });
}

/// `dinp += y ⊙ (dy − ⟨dy, y⟩)`.
pub(crate) fn softmax_backward<E: Elem>(pool: &Pool, dinp: &mut [E], dout: &[E], out: &[E], d: Rows) {
    map_grad_rows(pool, dinp, dout, out, d, |dx, dy, y| {
        let dot = y.iter().zip(dy).fold(E::zero(), |s, (&a, &b)| s + a * b);
        for i in 0..dx.len() {
            dx[i] = dx[i] + y[i] * (dy[i] - dot);
        }
    });
}

pub(crate) fn log_softmax_forward<E: Elem>(pool: &Pool, out: &mut [E], inp: &[E], d: Rows) {
    map_rows(pool, out, inp, d, |o, x| {
        let lse = log_sum_exp(x);
        for (o, &v) in o.iter_mut().zip(x) {
            *o = v - lse;
        }
    });
}

/// `dinp += dy − exp(out)·Σ dy`.
pub(crate) fn log_softmax_backward<E: Elem>(pool: &Pool, dinp: &mut [E], dout: &[E], out: &[E], d: Rows) {
    map_grad_rows(pool, dinp, dout, out, d, |dx, dy, y| {
        let sum = dy.iter().fold(E::zero(), |s, &v| s + v);
        for i in 0..dx.len() {
            dx[i] = dx[i] + dy[i] - y[i].exp() * sum;
        }
    });
}
