//! LayerNorm over the last axis (HF `nn.LayerNorm`). Dims legend: `rows` × `c`.
use super::pool::{Pool, SyncPtr};
use super::vmath::{sum_zip, sum_zip3};
use crate::backend::Rows;
use crate::elem::Elem;

/// `out = (x − mean)·rstd·w + b`; saves mean and rstd = 1/√(var + eps) (biased variance).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward<E: Elem>(
    pool: &Pool, out: &mut [E], mean: &mut [E], rstd: &mut [E], inp: &[E], w: &[E], b: &[E], d: Rows,
) {
    let c = d.c;
    let (po, pm, pr) = (SyncPtr::new(out), SyncPtr::new(mean), SyncPtr::new(rstd));
    let (cn, eps) = (E::from_f64(c as f64), E::from_f64(d.eps));
    pool.rows(d.rows, 4 * c, |rows| {
        // SAFETY: row chunks are disjoint.
        let (out, mean, rstd) = unsafe {
            (
                po.slice(rows.start * c, rows.len() * c),
                pm.slice(rows.start, rows.len()),
                pr.slice(rows.start, rows.len()),
            )
        };
        for (j, r) in rows.enumerate() {
            let x = &inp[r * c..(r + 1) * c];
            let mu = sum_zip(x, x, |v, _| v) / cn;
            // Two-pass variance: no cancellation for rows with a large mean.
            let var = sum_zip(x, x, |v, _| (v - mu) * (v - mu)) / cn;
            let rs = E::one() / (var + eps).sqrt();
            for (i, o) in out[j * c..(j + 1) * c].iter_mut().enumerate() {
                *o = (x[i] - mu) * rs * w[i] + b[i];
            }
            mean[j] = mu;
            rstd[j] = rs;
        }
    });
}

/// Adds the gradients of `forward` into dinp (row-parallel) and dweight, dbias (column-parallel,
/// summing rows in order so the thread count does not change the result).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<E: Elem>(
    pool: &Pool, dinp: &mut [E], dw: &mut [E], db: &mut [E], dout: &[E], inp: &[E], w: &[E], mean: &[E], rstd: &[E],
    d: Rows,
) {
    let c = d.c;
    let cn = E::from_f64(c as f64);
    let pi = SyncPtr::new(dinp);
    pool.rows(d.rows, 6 * c, |rows| {
        // SAFETY: row chunks are disjoint.
        let dinp = unsafe { pi.slice(rows.start * c, rows.len() * c) };
        for (j, r) in rows.enumerate() {
            let (x, dy) = (&inp[r * c..(r + 1) * c], &dout[r * c..(r + 1) * c]);
            let (mu, rs) = (mean[r], rstd[r]);
            // dxhat = dy·w; dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat))
            let s1 = sum_zip(dy, w, |g, wi| g * wi);
            let s2 = sum_zip3(dy, w, x, |g, wi, xi| g * wi * (xi - mu) * rs);
            let (m1, m2) = (s1 / cn, s2 / cn);
            for (i, dx) in dinp[j * c..(j + 1) * c].iter_mut().enumerate() {
                let xhat = (x[i] - mu) * rs;
                *dx = *dx + rs * (dy[i] * w[i] - m1 - xhat * m2);
            }
        }
    });
    let (pw, pb) = (SyncPtr::new(dw), SyncPtr::new(db));
    pool.cols(c, 3 * d.rows, |cols| {
        // SAFETY: column chunks are disjoint.
        let (dw, db) = unsafe { (pw.slice(cols.start, cols.len()), pb.slice(cols.start, cols.len())) };
        for r in 0..d.rows {
            let (mu, rs) = (mean[r], rstd[r]);
            for (j, i) in cols.clone().enumerate() {
                let dy = dout[r * c + i];
                dw[j] = dw[j] + dy * (inp[r * c + i] - mu) * rs;
                db[j] = db[j] + dy;
            }
        }
    });
}
