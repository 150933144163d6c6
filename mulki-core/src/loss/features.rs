//! L2-normalised feature blocks (`F.normalize(x, dim=-1)`, eps 1e-12), the input of every loss:
//! losses read the normalised rows and add their gradients into `d(hat)`; `backward` carries
//! them to the raw features.
use crate::arena::{head, Planner, Scratch};
use crate::backend::{Backend, Buf, Rows};
use crate::error::Error;

/// `F.normalize`'s default eps.
pub const NORMALIZE_EPS: f64 = 1e-12;

/// Up to `max_n` rows of width `c`, normalised.
#[derive(Clone, Copy, Debug)]
pub struct Normalized {
    hat: Buf,
    norm: Buf,
    c: usize,
    /// Rows of the last `forward`.
    n: usize,
}

impl Normalized {
    pub fn plan(p: &mut Planner, max_n: usize, c: usize) -> Self {
        Normalized { hat: p.take(max_n * c), norm: p.take(max_n), c, n: 0 }
    }

    fn rows(&self, n: usize) -> Rows {
        Rows { rows: n, c: self.c, eps: NORMALIZE_EPS }
    }

    /// Normalises `n` raw rows `x`.
    pub fn forward<B: Backend>(&mut self, be: &mut B, x: Buf, n: usize) -> Result<Buf, Error> {
        if n * self.c > self.hat.len {
            return Err(Error::Capacity { what: "feature rows", max: self.hat.len / self.c.max(1), got: n });
        }
        self.n = n;
        be.l2_normalize_forward(self.hat(), head(self.norm, n), x, self.rows(n))?;
        Ok(self.hat())
    }

    /// The normalised rows of the last `forward`.
    pub fn hat(&self) -> Buf {
        head(self.hat, self.n * self.c)
    }

    /// Adds d(raw) into `dx` from the gradient gathered in `s.d(hat())`.
    pub fn backward<B: Backend>(&self, be: &mut B, s: &Scratch, dx: Buf) -> Result<(), Error> {
        be.l2_normalize_backward(dx, s.d(self.hat()), self.hat(), head(self.norm, self.n), self.rows(self.n))
    }
}
