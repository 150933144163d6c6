//! Scaled similarity logits `z = s·a·bᵀ` between two sets of (already normalised) features:
//! CLIP's `logits_per_image`, and the relation matrices of the method. Dims legend: a [m, c],
//! b [n, c], z [m, n].
use crate::backend::{Backend, Buf, Gemm, Rows};
use crate::error::Error;

#[derive(Clone, Copy, Debug)]
pub struct Similarity {
    pub m: usize,
    pub n: usize,
    pub c: usize,
    /// The scale s (for CLIP, `exp(logit_scale)`).
    pub scale: f64,
}

impl Similarity {
    /// Writes `z = s·a·bᵀ`.
    pub fn forward<B: Backend>(self, be: &mut B, z: Buf, a: Buf, b: Buf) -> Result<(), Error> {
        be.gemm(z, a, b, Gemm::new(self.m, self.n, self.c, false, true, self.scale, 0.0))
    }

    /// `da += s·dz·b`, `db += s·dzᵀ·a` (either skipped with `None`). When `dlog_scale` is given
    /// (a one-element buffer, with `scratch` one element too), adds `∂/∂log s = Σ dz ⊙ z`, the
    /// gradient of CLIP's `logit_scale` parameter.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<B: Backend>(
        self, be: &mut B, da: Option<Buf>, db: Option<Buf>, dlog_scale: Option<(Buf, Buf)>, dz: Buf, z: Buf, a: Buf,
        b: Buf,
    ) -> Result<(), Error> {
        if let Some(da) = da {
            be.gemm(da, dz, b, Gemm::new(self.m, self.c, self.n, false, false, self.scale, 1.0))?;
        }
        if let Some(db) = db {
            be.gemm(db, dz, a, Gemm::new(self.n, self.c, self.m, true, false, self.scale, 1.0))?;
        }
        if let Some((dls, scratch)) = dlog_scale {
            be.row_dot_forward(scratch, dz, z, Rows { rows: 1, c: self.m * self.n, eps: 0.0 })?;
            be.axpby(dls, scratch, 1.0, 1.0)?;
        }
        Ok(())
    }
}
