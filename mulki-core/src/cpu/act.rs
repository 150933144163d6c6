//! The MLP activations of HF CLIP: `quick_gelu` (x·σ(1.702x)) and exact erf `gelu`.
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

pub(crate) fn forward<E: Elem>(pool: &Pool, out: &mut [E], inp: &[E], act: HiddenAct) {
    map_elems(pool, out, 20, |i, o| *o = value(act, inp[i]));
}

pub(crate) fn backward<E: Elem>(pool: &Pool, dinp: &mut [E], dout: &[E], inp: &[E], act: HiddenAct) {
    map_elems(pool, dinp, 30, |i, d| *d = *d + dout[i] * derivative(act, inp[i]));
}
