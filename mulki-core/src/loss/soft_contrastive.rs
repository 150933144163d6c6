//! CLIP's contrastive loss with soft targets, for pretraining on captions that can describe
//! several images: `½[mean_i CE(P_i, softmax(z_i)) + mean_j CE(Q_j, softmax(zᵀ_j))]`, z = s·v̂·ŵᵀ,
//! with P (image → text) and Q (text → image) row-stochastic target matrices. With P = Q = I it
//! is CLIP's loss. Gradients reach both towers and `logit_scale`.
use crate::arena::{head, Scratch};
use crate::backend::{Backend, Buf, Rows};
use crate::error::Error;
use crate::loss::base::host_sum;
use crate::loss::features::Normalized;
use crate::loss::relations::LogSoftmaxSim;

pub struct SoftContrastive {
    sc: Scratch,
    p: usize,
    v: Normalized,
    w: Normalized,
    img: LogSoftmaxSim,
    txt: LogSoftmaxSim,
    targets_i: Buf,
    targets_t: Buf,
    ce_i: Buf,
    ce_t: Buf,
    tmp: Buf,
    b: usize,
}

impl SoftContrastive {
    /// Workspace for at most `max_b` pairs of width `p`.
    pub fn new<B: Backend>(be: &mut B, max_b: usize, p: usize) -> Result<Self, Error> {
        let (sc, mut l) = Scratch::new(be, |pl| SoftContrastive {
            sc: Scratch { vals: 0, grads: 0, len: 0 },
            p,
            v: Normalized::plan(pl, max_b, p),
            w: Normalized::plan(pl, max_b, p),
            img: LogSoftmaxSim::plan(pl, max_b, max_b),
            txt: LogSoftmaxSim::plan(pl, max_b, max_b),
            targets_i: pl.take(max_b * max_b),
            targets_t: pl.take(max_b * max_b),
            ce_i: pl.take(max_b),
            ce_t: pl.take(max_b),
            tmp: pl.take(1),
            b: 0,
        })?;
        l.sc = sc;
        Ok(l)
    }

    /// Loss of `b` raw image features `v` against their `b` raw caption features `w` at scale
    /// `s`; `targets_i`, `targets_t` are [b, b] row-stochastic.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, v: Buf, w: Buf, b: usize, s: f64, targets_i: &[B::E], targets_t: &[B::E],
    ) -> Result<f64, Error> {
        let p = self.p;
        self.b = b;
        let (ti, tt) = (head(self.targets_i, b * b), head(self.targets_t, b * b));
        be.write(ti, targets_i)?;
        be.write(tt, targets_t)?;
        let vn = self.v.forward(be, v, b)?;
        let wn = self.w.forward(be, w, b)?;
        let lq_i = self.img.forward(be, vn, wn, b, b, p, s)?;
        let lq_t = self.txt.forward(be, wn, vn, b, b, p, s)?;
        let rows = Rows { rows: b, c: b, eps: 0.0 };
        be.row_dot_forward(head(self.ce_i, b), ti, lq_i, rows)?;
        be.row_dot_forward(head(self.ce_t, b), tt, lq_t, rows)?;
        let sum = host_sum(be, head(self.ce_i, b), None)? + host_sum(be, head(self.ce_t, b), None)?;
        Ok(-0.5 * sum / b as f64)
    }

    /// Adds the gradient of the last forward into `dv`, `dw` and the one-element
    /// `dlogit_scale`.
    pub fn backward<B: Backend>(&mut self, be: &mut B, dv: Buf, dw: Buf, dlogit_scale: Buf) -> Result<(), Error> {
        let (b, sc) = (self.b, self.sc);
        sc.zero_grads(be)?;
        let rows = Rows { rows: b, c: b, eps: 0.0 };
        let (ti, tt) = (head(self.targets_i, b * b), head(self.targets_t, b * b));
        for (ce, t, lq) in [(self.ce_i, ti, self.img.lp()), (self.ce_t, tt, self.txt.lp())] {
            be.fill(sc.d(head(ce, b)), -0.5 / b as f64)?;
            be.row_dot_backward(None, Some(sc.d(lq)), sc.d(head(ce, b)), t, lq, rows)?;
        }
        let (vn, wn) = (self.v.hat(), self.w.hat());
        let dls = Some((dlogit_scale, self.tmp));
        self.img.backward_with_scale(be, &sc, vn, wn, true, true, dls)?;
        self.txt.backward_with_scale(be, &sc, wn, vn, true, true, dls)?;
        self.v.backward(be, &sc, dv)?;
        self.w.backward(be, &sc, dw)
    }
}
