//! Row gather and scatter-add (`F.embedding` and its gradient), the broadcast add used for
//! biases and position embeddings, and HF `CLIPVisionEmbeddings`' class-token assembly.
//! Dims legend: `b` batch, `t` tokens, `c` width.
use super::pool::{Pool, SyncPtr};
use crate::backend::Bcast;
use crate::elem::Elem;

/// `out[i] = table[ids[i]]`; ids are already checked against the table.
pub(crate) fn gather<E: Elem>(pool: &Pool, out: &mut [E], table: &[E], ids: &[u32], c: usize) {
    let po = SyncPtr::new(out);
    pool.rows(ids.len(), c, |rows| {
        for r in rows {
            let src = ids[r] as usize * c;
            // SAFETY: rows are disjoint.
            unsafe { po.slice(r * c, c) }.copy_from_slice(&table[src..src + c]);
        }
    });
}

/// `dtable[ids[i]] += dout[i]`, each column block summing rows in order (deterministic).
pub(crate) fn scatter_add<E: Elem>(pool: &Pool, dtable: &mut [E], dout: &[E], ids: &[u32], c: usize) {
    let pt = SyncPtr::new(dtable);
    pool.cols(c, ids.len(), |cols| {
        for (r, &id) in ids.iter().enumerate() {
            let base = id as usize * c;
            // SAFETY: this task owns these columns of every table row.
            let dst = unsafe { pt.slice(base + cols.start, cols.len()) };
            for (x, &g) in dst.iter_mut().zip(&dout[r * c + cols.start..r * c + cols.end]) {
                *x = *x + g;
            }
        }
    });
}

/// `out[o, r] += add[r]`.
pub(crate) fn broadcast_add<E: Elem>(pool: &Pool, out: &mut [E], add: &[E], d: Bcast) {
    let inner = d.inner * d.c;
    let po = SyncPtr::new(out);
    pool.rows(d.outer, inner, |rows| {
        for o in rows {
            // SAFETY: outer blocks are disjoint.
            let dst = unsafe { po.slice(o * inner, inner) };
            for (x, &a) in dst.iter_mut().zip(add) {
                *x = *x + a;
            }
        }
    });
}

/// `dadd[q] += Σ_o dout[o, q]` over the flattened [inner·c] axis, summing o in order.
pub(crate) fn broadcast_add_backward<E: Elem>(pool: &Pool, dadd: &mut [E], dout: &[E], d: Bcast) {
    let inner = d.inner * d.c;
    let pa = SyncPtr::new(dadd);
    pool.cols(inner, d.outer, |cols| {
        // SAFETY: column chunks are disjoint.
        let dst = unsafe { pa.slice(cols.start, cols.len()) };
        for o in 0..d.outer {
            for (x, &g) in dst.iter_mut().zip(&dout[o * inner + cols.start..o * inner + cols.end]) {
                *x = *x + g;
            }
        }
    });
}

/// `out[bi] = [class_emb; patch_out[bi]] + pos`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn vision_embed<E: Elem>(
    pool: &Pool, out: &mut [E], patch_out: &[E], class_emb: &[E], pos: &[E], b: usize, t: usize, c: usize,
) {
    let po = SyncPtr::new(out);
    pool.rows(b * t, c, |rows| {
        for r in rows {
            let (bi, i) = (r / t, r % t);
            let src = if i == 0 { class_emb } else { &patch_out[(bi * (t - 1) + i - 1) * c..][..c] };
            // SAFETY: rows are disjoint.
            let dst = unsafe { po.slice(r * c, c) };
            for ((x, &s), &p) in dst.iter_mut().zip(src).zip(&pos[i * c..(i + 1) * c]) {
                *x = s + p;
            }
        }
    });
}

/// Gradient of `vision_embed`: dpatch_out += dout[:, 1:]; dclass_emb += Σ_b dout[:, 0];
/// dpos += Σ_b dout.
#[allow(clippy::too_many_arguments)]
pub(crate) fn vision_embed_backward<E: Elem>(
    pool: &Pool, dpatch_out: &mut [E], dclass: &mut [E], dpos: &mut [E], dout: &[E], b: usize, t: usize, c: usize,
) {
    let pp = SyncPtr::new(dpatch_out);
    pool.rows(b * (t - 1), c, |rows| {
        for r in rows {
            let (bi, i) = (r / (t - 1), r % (t - 1) + 1);
            // SAFETY: rows are disjoint.
            let dst = unsafe { pp.slice(r * c, c) };
            for (x, &g) in dst.iter_mut().zip(&dout[(bi * t + i) * c..][..c]) {
                *x = *x + g;
            }
        }
    });
    broadcast_add_backward(pool, dpos, dout, Bcast { outer: b, inner: t, c });
    for bi in 0..b {
        for (x, &g) in dclass.iter_mut().zip(&dout[bi * t * c..][..c]) {
            *x = *x + g;
        }
    }
}
