//! The MLP activations of HF CLIP: `quick_gelu` (x·σ(1.702x)) and exact erf `gelu`.
use super::gemm::CpuElem;
use super::pool::{chunk_range, chunks, Pool, SyncPtr};
use crate::clip::config::HiddenAct;
use crate::elem::Elem;

const CHUNK: usize = 4096;

/// Runs `f(i)` for every element index in parallel fixed chunks over `out`.
pub(crate) fn map_elems<E: Elem>(pool: &Pool, out: &mut [E], work: usize, f: impl Fn(usize, &mut E) + Sync) {
    let n = out.len();
    let po = SyncPtr::new(out);
    pool.run(chunks(n, CHUNK), CHUNK * work, |i| {
        let r = chunk_range(i, n, CHUNK);
        // SAFETY: chunks are disjoint.
        let o = unsafe { po.slice(r.start, r.len()) };
        for (j, v) in o.iter_mut().enumerate() {
            f(r.start + j, v);
        }
    });
}

/// `out[i] = value` in the same fixed chunks (gradient arenas are large: several threads
/// write memory faster than one).
pub(crate) fn fill<E: Elem>(pool: &Pool, out: &mut [E], value: E) {
    map_chunks(pool, out, 1, |_, o| o.fill(value));
}

fn sigmoid<E: Elem>(x: E) -> E {
    E::one() / (E::one() + (-x).exp())
}

/// act(x).
pub(crate) fn value<E: Elem>(act: HiddenAct, x: E) -> E {
    match act {
        HiddenAct::QuickGelu => x * sigmoid(E::from_f64(1.702) * x),
        HiddenAct::Gelu => {
            E::from_f64(0.5) * x * (E::one() + (x * E::from_f64(core::f64::consts::FRAC_1_SQRT_2)).erf())
        }
    }
}

/// act'(x).
pub(crate) fn derivative<E: Elem>(act: HiddenAct, x: E) -> E {
    match act {
        HiddenAct::QuickGelu => {
            let a = E::from_f64(1.702);
            let s = sigmoid(a * x);
            s + a * x * s * (E::one() - s)
        }
        HiddenAct::Gelu => {
            let cdf = E::from_f64(0.5) * (E::one() + (x * E::from_f64(core::f64::consts::FRAC_1_SQRT_2)).erf());
            // φ(x) = exp(−x²/2)/√(2π)
            let pdf = (-(x * x) / E::from_f64(2.0)).exp() * E::from_f64(0.398_942_280_401_432_7);
            cdf + x * pdf
        }
    }
}

/// Runs `f(start, out_chunk)` over the same fixed chunks as [`map_elems`].
fn map_chunks<E: Elem>(pool: &Pool, out: &mut [E], work: usize, f: impl Fn(usize, &mut [E]) + Sync) {
    let n = out.len();
    let po = SyncPtr::new(out);
    pool.run(chunks(n, CHUNK), CHUNK * work, |i| {
        let r = chunk_range(i, n, CHUNK);
        // SAFETY: chunks are disjoint.
        f(r.start, unsafe { po.slice(r.start, r.len()) });
    });
}

/// Elements per block of the quick_gelu loops (exp of a whole block at once, vectorised).
const BLOCK: usize = 256;

/// For each block of `x` starting at element `at`, `e = exp(−1.702·x)` (σ(1.702x) = 1/(1 + e)),
/// then `f(at, out_block, x_block, e)`.
fn quick_gelu_blocks<E: CpuElem>(
    pool: &Pool, out: &mut [E], inp: &[E], work: usize, f: impl Fn(usize, &mut [E], &[E], &[E]) + Sync,
) {
    let a = E::from_f64(1.702);
    map_chunks(pool, out, work, |start, o| {
        let x = &inp[start..start + o.len()];
        let mut e = [E::zero(); BLOCK];
        for (j, (ob, xb)) in o.chunks_mut(BLOCK).zip(x.chunks(BLOCK)).enumerate() {
            let e = &mut e[..xb.len()];
            for (ev, &xv) in e.iter_mut().zip(xb) {
                *ev = -(a * xv);
            }
            E::exp_in_place(e);
            f(start + j * BLOCK, ob, xb, e);
        }
    });
}

pub(crate) fn forward<E: CpuElem>(pool: &Pool, out: &mut [E], inp: &[E], act: HiddenAct) {
    match act {
        HiddenAct::QuickGelu => quick_gelu_blocks(pool, out, inp, 8, |_, o, x, e| {
            for ((ov, &xv), &ev) in o.iter_mut().zip(x).zip(e) {
                *ov = xv * (E::one() / (E::one() + ev));
            }
        }),
        HiddenAct::Gelu => map_elems(pool, out, 20, |i, o| *o = value(act, inp[i])),
    }
}

pub(crate) fn backward<E: CpuElem>(pool: &Pool, dinp: &mut [E], dout: &[E], inp: &[E], act: HiddenAct) {
    match act {
        HiddenAct::QuickGelu => {
            let a = E::from_f64(1.702);
            quick_gelu_blocks(pool, dinp, inp, 10, |at, d, x, e| {
                let dy = &dout[at..at + x.len()];
                for (((dv, &xv), &ev), &g) in d.iter_mut().zip(x).zip(e).zip(dy) {
                    let s = E::one() / (E::one() + ev);
                    *dv = *dv + g * (s + a * xv * s * (E::one() - s));
                }
            })
        }
        HiddenAct::Gelu => map_elems(pool, dinp, 30, |i, d| *d = *d + dout[i] * derivative(act, inp[i])),
    }
}
