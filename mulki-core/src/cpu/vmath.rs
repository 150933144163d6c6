//! A vectorisable f32 `exp` for the kernels that take many (attention's softmax, the MLP
//! activation): Cephes' `expf` (range reduction by ln 2 in two parts, degree-6 polynomial,
//! exponent bits for 2ⁿ), within 2 ulp of the correctly rounded result. Only multiplies and adds
//! in a fixed order, so every CPU gives the same bits. Inputs outside its range, and NaN, take
//! the scalar `exp` (overflow to ∞, underflow through the subnormals to 0).

use crate::elem::Elem;

/// Independent partial sums in [`sum_zip`]: a reduction in one accumulator is bound by the
/// add latency and does not vectorise.
const LANES: usize = 8;

/// `Σ_i f(a[i], b[i])` over `min(len)` elements in [`LANES`] partial sums (element i into sum
/// i mod LANES), combined in a fixed tree: the order depends only on the length.
#[inline(always)]
pub(crate) fn sum_zip<E: Elem>(a: &[E], b: &[E], f: impl Fn(E, E) -> E) -> E {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [E::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] = acc[l] + f(xa[l], xb[l]);
        }
    }
    for (l, (&x, &y)) in ra.iter().zip(rb).enumerate() {
        acc[l] = acc[l] + f(x, y);
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// [`sum_zip`] over three slices.
#[inline(always)]
pub(crate) fn sum_zip3<E: Elem>(a: &[E], b: &[E], c: &[E], f: impl Fn(E, E, E) -> E) -> E {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let mut acc = [E::zero(); LANES];
    let (ca, cb, cc) = (a.chunks_exact(LANES), b.chunks_exact(LANES), c.chunks_exact(LANES));
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((xa, xb), xc) in ca.zip(cb).zip(cc) {
        for l in 0..LANES {
            acc[l] = acc[l] + f(xa[l], xb[l], xc[l]);
        }
    }
    for (l, ((&x, &y), &z)) in ra.iter().zip(rb).zip(rc).enumerate() {
        acc[l] = acc[l] + f(x, y, z);
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// Elements per stack block: the block loops have a fixed trip count, which vectorises.
const BLOCK: usize = 64;
/// The polynomial's input range: 2ⁿ stays a normal float for n = round(x·log₂e) in it.
const LO: f32 = -87.0;
const HI: f32 = 88.0;

#[inline(always)]
fn exp_poly(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    // ln 2 = C1 + C2, C1 exact in few bits so n·C1 is exact.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.clamp(LO, HI);
    let t = x * LOG2E + SHIFTER;
    let n = t - SHIFTER;
    let ni = (t.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32);
    let r = x - n * C1 - n * C2;
    let z = r * r;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * z + r + 1.0;
    y * f32::from_bits((ni.wrapping_add(127) as u32) << 23)
}

/// `v[i] = exp(v[i])`.
pub(crate) fn exp_in_place_f32(v: &mut [f32]) {
    let mut chunks = v.chunks_exact_mut(BLOCK);
    for chunk in &mut chunks {
        let mut x = [0f32; BLOCK];
        x.copy_from_slice(chunk);
        for (o, &xi) in chunk.iter_mut().zip(x.iter()) {
            *o = exp_poly(xi);
        }
        fix_range(chunk, &x);
    }
    let rest = chunks.into_remainder();
    let mut x = [0f32; BLOCK];
    let x = &mut x[..rest.len()];
    x.copy_from_slice(rest);
    for (o, &xi) in rest.iter_mut().zip(x.iter()) {
        *o = exp_poly(xi);
    }
    fix_range(rest, x);
}

/// Outside [LO, HI] (or NaN) the scalar `exp`.
#[inline(always)]
fn fix_range(out: &mut [f32], x: &[f32]) {
    // A fold without early exit (unlike `any`) vectorises; NaN is outside the range.
    if x.iter().fold(false, |bad, &v| bad | !(LO..=HI).contains(&v)) {
        for (o, &v) in out.iter_mut().zip(x) {
            if !(LO..=HI).contains(&v) {
                *o = num_traits::Float::exp(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> i64 {
        (a.to_bits() as i64 - b.to_bits() as i64).abs()
    }

    #[test]
    fn within_two_ulp_of_the_f64_exp() {
        let mut worst = 0;
        let mut x = -87.0f32;
        let mut xs = alloc::vec::Vec::new();
        while x <= 88.0 {
            xs.push(x);
            x += 0.0037;
        }
        let mut v = xs.clone();
        exp_in_place_f32(&mut v);
        for (&x, &y) in xs.iter().zip(&v) {
            let want = libm::exp(x as f64) as f32;
            worst = worst.max(ulps(y, want));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
    }

    #[test]
    fn lane_sums_match_the_serial_sum() {
        for n in [0usize, 1, 7, 8, 9, 65, 96, 384] {
            let a: alloc::vec::Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let serial: f64 = a.iter().map(|v| v * 2.0).sum();
            let lanes = sum_zip(&a, &a, |x, _| x * 2.0);
            assert!((serial - lanes).abs() < 1e-12, "n {n}: {serial} vs {lanes}");
        }
    }

    #[test]
    fn edges_and_non_finite() {
        let mut v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 100.0, -100.0, -200.0, 0.0, 88.5, -87.5];
        exp_in_place_f32(&mut v);
        assert!(v[0].is_nan());
        assert_eq!(v[1], f32::INFINITY);
        assert_eq!(v[2], 0.0);
        assert_eq!(v[3], f32::INFINITY);
        assert!(ulps(v[4], libm::expf(-100.0)) <= 1);
        assert_eq!(v[5], 0.0);
        assert_eq!(v[6], 1.0);
        assert!(ulps(v[7], libm::expf(88.5)) <= 1);
        assert!(ulps(v[8], libm::expf(-87.5)) <= 1);
    }
}
