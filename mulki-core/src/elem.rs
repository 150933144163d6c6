//! Element types the math runs in: f32 for training, f64 for finite-difference checks.
use core::fmt::Debug;
use num_traits::Float;

/// A floating-point element type.
pub trait Elem: Float + Copy + Default + Debug + Send + Sync + 'static {
    /// Lossy from f64 (rounds to nearest).
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    /// The error function (libm), for the exact GELU.
    fn erf(self) -> Self;
}

impl Elem for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Elem for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}
