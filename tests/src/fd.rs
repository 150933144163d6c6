//! Central finite differences in f64 on the CPU backend: every hand-written backward is checked
//! against `(f(x+h) − f(x−h))/2h` of the scalar `Σ out ⊙ dout` for a random `dout`.
use mulki_core::backend::{Backend, Buf};
use mulki_core::cpu::CpuBackend;

use crate::normals;

pub type Be = CpuBackend<f64>;

/// Recomputes the op's saved values from `inputs` and adds the gradients into `dinputs`:
/// `(be, inputs, dinputs, dout)`.
pub type BackwardFn<'a> = &'a dyn Fn(&mut Be, &[Buf], &[Buf], Buf);

/// An op under test: `forward(be, inputs) -> out`, and `backward(be, inputs, dinputs, dout)`
/// which recomputes whatever the op saves and adds the input gradients into `dinputs`.
pub struct FdCase<'a> {
    pub name: &'a str,
    pub inputs: Vec<Vec<f64>>,
    /// Which inputs to differentiate (integer-like or constant inputs are skipped).
    pub check: Vec<bool>,
    /// Step of the central difference (1e-5 unless the inputs live on a smaller scale).
    pub h: f64,
    pub forward: &'a dyn Fn(&mut Be, &[Buf]) -> Buf,
    pub backward: BackwardFn<'a>,
}

fn upload(be: &mut Be, data: &[Vec<f64>]) -> Vec<Buf> {
    data.iter()
        .map(|v| {
            let a = be.alloc(v.len()).unwrap();
            let b = Buf { arena: a, offset: 0, len: v.len() };
            be.write(b, v).unwrap();
            b
        })
        .collect()
}

fn objective(case: &FdCase, inputs: &[Vec<f64>], dout: &[f64]) -> f64 {
    let mut be = Be::new(1);
    let bufs = upload(&mut be, inputs);
    let out = (case.forward)(&mut be, &bufs);
    let mut y = vec![0.0; out.len];
    be.read(out, &mut y).unwrap();
    y.iter().zip(dout).map(|(a, b)| a * b).sum()
}

/// Checks every element of every checked input; panics naming the op, input, index and values.
/// The tolerance is relative to the largest analytic gradient of that input: central
/// differences with h = 1e-5 (on O(1) inputs) leave O(h²) ≈ 1e-10 truncation plus ~1e-11 rounding.
pub fn check(case: FdCase) {
    let mut be = Be::new(2);
    let bufs = upload(&mut be, &case.inputs);
    let out = (case.forward)(&mut be, &bufs);
    let dout = normals(0xFD, out.len);
    let dout_buf = upload(&mut be, std::slice::from_ref(&dout))[0];
    let zeros: Vec<Vec<f64>> = case.inputs.iter().map(|v| vec![0.0; v.len()]).collect();
    let dbufs = upload(&mut be, &zeros);
    (case.backward)(&mut be, &bufs, &dbufs, dout_buf);
    let h = case.h;
    for (k, (input, dbuf)) in case.inputs.iter().zip(&dbufs).enumerate() {
        if !case.check[k] {
            continue;
        }
        let mut analytic = vec![0.0; input.len()];
        be.read(*dbuf, &mut analytic).unwrap();
        let scale = analytic.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
        for i in 0..input.len() {
            let mut plus = case.inputs.clone();
            plus[k][i] += h;
            let mut minus = case.inputs.clone();
            minus[k][i] -= h;
            let numeric = (objective(&case, &plus, &dout) - objective(&case, &minus, &dout)) / (2.0 * h);
            let err = (numeric - analytic[i]).abs() / scale;
            assert!(
                err < 1e-6,
                "{}: d(input {k})[{i}]: analytic {} vs numeric {numeric} (relative error {err:e})",
                case.name,
                analytic[i]
            );
        }
    }
}

/// A fresh zeroed buffer of `len` elements.
pub fn scratch(be: &mut Be, len: usize) -> Buf {
    let a = be.alloc(len).unwrap();
    Buf { arena: a, offset: 0, len }
}

/// Adds a scalar loss's gradient into fresh buffers: `(be, inputs, dinputs)`.
pub type GradsFn<'a> = &'a dyn Fn(&mut Be, &[Buf], &[Buf]);

/// A scalar loss: `value(be, inputs)`, and `grads(be, inputs, dinputs)` which recomputes it and
/// adds its gradient into `dinputs` (fresh zeroed buffers, one per input). Every input is
/// checked with h = 1e-5.
pub fn check_scalar(name: &str, inputs: Vec<Vec<f64>>, value: &dyn Fn(&mut Be, &[Buf]) -> f64, grads: GradsFn) {
    let forward = |be: &mut Be, x: &[Buf]| {
        let v = value(be, x);
        let out = scratch(be, 1);
        be.write(out, &[v]).unwrap();
        out
    };
    let backward = |be: &mut Be, x: &[Buf], dx: &[Buf], dy: Buf| {
        let mut g = [0.0];
        be.read(dy, &mut g).unwrap();
        let tmp: Vec<Buf> = dx.iter().map(|d| scratch(be, d.len)).collect();
        grads(be, x, &tmp);
        for (d, t) in dx.iter().zip(&tmp) {
            be.axpby(*d, *t, g[0], 1.0).unwrap();
        }
    };
    check(FdCase { name, check: vec![true; inputs.len()], inputs, h: 1e-5, forward: &forward, backward: &backward });
}
