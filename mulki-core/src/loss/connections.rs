//! METHOD.md stage 4, Making Connections, as operations on flat parameter buffers: the
//! within-task weight ensemble (equal-weight members), the L2 connection to θ_{t−1} and the
//! end-of-task interpolation (also WiSE-FT's).
use crate::backend::{Backend, Buf, Rows};
use crate::error::Error;

/// Whether the ensemble merges after step `k` (1-based) of `n` with interval `i`: after step
/// 1, 1+I, 1+2I, …, and after step N.
pub fn merge_due(k: usize, n: usize, i: usize) -> bool {
    k == n || (k >= 1 && (k - 1).is_multiple_of(i.max(1)))
}

/// θ̄ and its member count.
#[derive(Clone, Copy, Debug)]
pub struct Ensemble {
    avg: Buf,
    members: usize,
}

impl Ensemble {
    /// Starts a task: θ̄ = θ (the task-start weights), one member. `avg` has θ's layout.
    pub fn start<B: Backend>(be: &mut B, avg: Buf, params: Buf) -> Result<Self, Error> {
        be.copy(avg, params)?;
        Ok(Ensemble { avg, members: 1 })
    }

    /// Resumes an ensemble whose θ̄ is already in `avg`.
    pub fn resume(avg: Buf, members: usize) -> Self {
        Ensemble { avg, members }
    }

    /// θ̄ ← (n·θ̄ + θ)/(n+1), n ← n+1.
    pub fn merge<B: Backend>(&mut self, be: &mut B, params: Buf) -> Result<(), Error> {
        let n = self.members as f64;
        be.axpby(self.avg, params, 1.0 / (n + 1.0), n / (n + 1.0))?;
        self.members += 1;
        Ok(())
    }

    pub fn members(&self) -> usize {
        self.members
    }

    pub fn weights(&self) -> Buf {
        self.avg
    }
}

/// L_C = λ·Σ(θ − anchor)²: adds `2λ(θ − anchor)` into `grads` and leaves Σ(θ − anchor)² in
/// the one-element `out`, on the device (L_C is λ times it). `diff` (θ's length) is scratch.
pub fn connection_loss<B: Backend>(
    be: &mut B, params: Buf, anchor: Buf, grads: Buf, diff: Buf, out: Buf, lambda: f64,
) -> Result<(), Error> {
    be.copy(diff, params)?;
    be.axpby(diff, anchor, -1.0, 1.0)?;
    be.row_dot_forward(out, diff, diff, Rows { rows: 1, c: diff.len, eps: 0.0 })?;
    be.axpby(grads, diff, 2.0 * lambda, 1.0)
}

/// End of task: θ_t = γ·θ̄ + (1−γ)·anchor, in place in `avg`.
pub fn interpolate<B: Backend>(be: &mut B, avg: Buf, anchor: Buf, gamma: f64) -> Result<(), Error> {
    if gamma == 1.0 {
        return Ok(());
    }
    be.axpby(avg, anchor, 1.0 - gamma, gamma)
}
