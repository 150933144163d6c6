//! Shared test helpers: fixture reader, tolerances, backend macro.

pub mod fd;
pub mod fixture;

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

/// Deterministic pseudo-random numbers for tests (SplitMix64), so no RNG crate is needed and
/// every failure reproduces from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    pub fn normals(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.normal()).collect()
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
