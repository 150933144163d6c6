//! Shared test helpers: fixture reader, tolerances, backend macro.

pub mod fd;
pub mod fixture;
pub mod scratch;

pub use mulki_core::rng::Rng;

/// `n` standard normals from the counter RNG seeded with `seed`.
pub fn normals(seed: u64, n: usize) -> Vec<f64> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.normal()).collect()
}

/// Largest `|a[i] - b[i]|` and the first index where it occurs. A NaN in either input (or an
/// infinite difference) is reported as NaN at the first such index, so comparisons against a
/// tolerance fail. Panics if the lengths differ; `(0.0, 0)` for empty inputs.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> (f64, usize) {
    assert_eq!(a.len(), b.len(), "max_abs_diff: lengths differ");
    let mut best = (0.0, 0);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = (x - y).abs();
        if !d.is_finite() {
            return (f64::NAN, i);
        }
        if d > best.0 {
            best = (d, i);
        }
    }
    best
}

/// Largest `|a[i]|` (NaN if any element is NaN); `0.0` for an empty slice.
pub fn max_abs(a: &[f64]) -> f64 {
    let mut m = 0.0f64;
    for x in a {
        if x.is_nan() {
            return f64::NAN;
        }
        m = m.max(x.abs());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_helpers() {
        assert_eq!(max_abs_diff(&[], &[]), (0.0, 0));
        assert_eq!(max_abs_diff(&[1.0, 2.0, 3.0], &[1.0, 2.5, 2.0]), (1.0, 2));
        assert_eq!(max_abs_diff(&[1.0, -4.0], &[1.0, -4.0]), (0.0, 0));
        let (d, i) = max_abs_diff(&[0.0, f64::NAN, 9.0], &[0.0, 0.0, 0.0]);
        assert!(d.is_nan() && i == 1);
        assert!(max_abs_diff(&[f64::INFINITY], &[f64::INFINITY]).0.is_nan());
        assert_eq!(max_abs(&[]), 0.0);
        assert_eq!(max_abs(&[0.5, -3.0, 2.0]), 3.0);
        assert!(max_abs(&[1.0, f64::NAN]).is_nan());
    }
}
