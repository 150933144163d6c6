//! `nn.Linear` (`y = x·Wᵀ + b`, W stored [out, in] as PyTorch does) over the GEMM kernel.
//! Dims legend: `rows` × `inp` → `rows` × `out`.
use crate::backend::{Backend, Bcast, Buf, Gemm};
use crate::error::Error;

#[derive(Clone, Copy, Debug)]
pub struct Linear {
    pub rows: usize,
    pub inp: usize,
    pub out: usize,
}

impl Linear {
    /// `y = x·Wᵀ + b`, or `y += x·Wᵀ + b` when `accumulate` (the residual stream).
    pub fn forward<B: Backend>(
        self, be: &mut B, y: Buf, x: Buf, w: Buf, b: Option<Buf>, accumulate: bool,
    ) -> Result<(), Error> {
        let beta = if accumulate { 1.0 } else { 0.0 };
        be.gemm(y, x, w, Gemm::new(self.rows, self.out, self.inp, false, true, 1.0, beta).low_precision())?;
        if let Some(b) = b {
            be.broadcast_add_forward(y, b, Bcast { outer: self.rows, inner: 1, c: self.out })?;
        }
        Ok(())
    }

    /// `dx += dy·W`, `dW += dyᵀ·x`, `db += Σ_rows dy`. `dx` is skipped when `None` (inputs).
    #[allow(clippy::too_many_arguments)]
    pub fn backward<B: Backend>(
        self, be: &mut B, dx: Option<Buf>, dw: Buf, db: Option<Buf>, dy: Buf, x: Buf, w: Buf,
    ) -> Result<(), Error> {
        if let Some(dx) = dx {
            be.gemm(dx, dy, w, Gemm::new(self.rows, self.inp, self.out, false, false, 1.0, 1.0).low_precision())?;
        }
        be.gemm(dw, dy, x, Gemm::new(self.out, self.inp, self.rows, true, false, 1.0, 1.0).low_precision())?;
        if let Some(db) = db {
            be.broadcast_add_backward(db, dy, Bcast { outer: self.rows, inner: 1, c: self.out })?;
        }
        Ok(())
    }
}
