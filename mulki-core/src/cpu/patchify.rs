//! im2col for HF's patch embedding (`Conv2d(kernel = stride = patch, bias = False)`): images
//! become rows of patches so the conv is one GEMM with the weight viewed as [c, ch·p·p].
//! Dims legend: `b` images, `ch` channels, `side` pixels, `p` patch, `g = side/p`.
use super::pool::{Pool, SyncPtr};
use crate::backend::Patches;
use crate::elem::Elem;

/// Calls `f(row_elem, pixel_index)` for every element of patch row `r` in the conv weight's
/// (channel, y, x) order.
fn for_patch(d: Patches, r: usize, mut f: impl FnMut(usize, usize)) {
    let (g, p, side) = (d.grid(), d.patch, d.side);
    let (bi, pi) = (r / (g * g), r % (g * g));
    let (py, px) = (pi / g, pi % g);
    let mut e = 0;
    for ch in 0..d.channels {
        for y in 0..p {
            let base = ((bi * d.channels + ch) * side + py * p + y) * side + px * p;
            for x in 0..p {
                f(e, base + x);
                e += 1;
            }
        }
    }
}

pub(crate) fn forward<E: Elem>(pool: &Pool, out: &mut [E], pixels: &[E], d: Patches) {
    let pd = d.patch_dim();
    let po = SyncPtr::new(out);
    pool.rows(d.b * d.per_image(), pd, |rows| {
        for r in rows {
            // SAFETY: rows are disjoint.
            let o = unsafe { po.slice(r * pd, pd) };
            for_patch(d, r, |e, px| o[e] = pixels[px]);
        }
    });
}

/// `dpixels += fold(dout)`; patches do not overlap, so rows write disjoint pixels.
pub(crate) fn backward<E: Elem>(pool: &Pool, dpixels: &mut [E], dout: &[E], d: Patches) {
    let pd = d.patch_dim();
    let pp = SyncPtr::new(dpixels);
    pool.rows(d.b * d.per_image(), pd, |rows| {
        for r in rows {
            for_patch(d, r, |e, px| {
                // SAFETY: each pixel belongs to exactly one patch row.
                let x = unsafe { &mut pp.slice(px, 1)[0] };
                *x = *x + dout[r * pd + e];
            });
        }
    });
}
