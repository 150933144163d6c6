//! METHOD.md stage 2, Adding New Ideas: relation distributions as log-softmaxes of scaled
//! similarities, R^V (image ↔ prototypes), R^X (image ↔ class text), R^T (class text ↔
//! prototypes), and the per-teacher terms compared against the student's: row KLs and the
//! feature cosines. Dims legend: `b` images, `k` classes, `p` feature width.
use crate::arena::{head, Planner, Scratch};
use crate::backend::{Backend, Buf, Rows};
use crate::error::Error;
use crate::layers::similarity::Similarity;

/// `lp = log_softmax(scale·a·bᵀ)` over rows of a [m, p] against b [n, p].
#[derive(Clone, Copy, Debug)]
pub struct LogSoftmaxSim {
    z: Buf,
    lp: Buf,
    dims: (usize, usize, usize, f64),
}

impl LogSoftmaxSim {
    pub fn plan(pl: &mut Planner, max_m: usize, max_n: usize) -> Self {
        LogSoftmaxSim { z: pl.take(max_m * max_n), lp: pl.take(max_m * max_n), dims: (0, 0, 0, 0.0) }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, a: Buf, b: Buf, m: usize, n: usize, p: usize, scale: f64,
    ) -> Result<Buf, Error> {
        self.dims = (m, n, p, scale);
        Similarity { m, n, c: p, scale }.forward(be, self.z(), a, b)?;
        be.log_softmax_forward(self.lp(), self.z(), Rows { rows: m, c: n, eps: 0.0 })?;
        Ok(self.lp())
    }

    fn z(&self) -> Buf {
        head(self.z, self.dims.0 * self.dims.1)
    }

    /// The log-probabilities of the last forward.
    pub fn lp(&self) -> Buf {
        head(self.lp, self.dims.0 * self.dims.1)
    }

    /// From `sc.d(lp())` into `sc.d(a)` and `sc.d(b)` (either skipped: a detached side).
    pub fn backward<B: Backend>(
        &self, be: &mut B, sc: &Scratch, a: Buf, b: Buf, grad_a: bool, grad_b: bool,
    ) -> Result<(), Error> {
        self.backward_with_scale(be, sc, a, b, grad_a, grad_b, None)
    }

    /// `backward`, also adding ∂/∂log(scale) into `dlog_scale` (a one-element buffer and a
    /// one-element scratch): CLIP's learnable `logit_scale` in pretraining.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_with_scale<B: Backend>(
        &self, be: &mut B, sc: &Scratch, a: Buf, b: Buf, grad_a: bool, grad_b: bool, dlog_scale: Option<(Buf, Buf)>,
    ) -> Result<(), Error> {
        let (m, n, p, scale) = self.dims;
        be.log_softmax_backward(sc.d(self.z()), sc.d(self.lp()), self.lp(), Rows { rows: m, c: n, eps: 0.0 })?;
        let sim = Similarity { m, n, c: p, scale };
        sim.backward(be, grad_a.then(|| sc.d(a)), grad_b.then(|| sc.d(b)), dlog_scale, sc.d(self.z()), self.z(), a, b)
    }
}

/// R^V, R^X, R^T of one model (student or teacher), at scale s/T.
#[derive(Clone, Copy, Debug)]
pub struct Relations {
    pub v: LogSoftmaxSim,
    pub x: LogSoftmaxSim,
    pub t: LogSoftmaxSim,
}

impl Relations {
    pub fn plan(pl: &mut Planner, max_b: usize, max_k: usize) -> Self {
        Relations {
            v: LogSoftmaxSim::plan(pl, max_b, max_k),
            x: LogSoftmaxSim::plan(pl, max_b, max_k),
            t: LogSoftmaxSim::plan(pl, max_k, max_k),
        }
    }

    /// From one model's normalised image features `vn` [b, p], class texts `wn` [k, p] and the
    /// shared prototypes [k, p].
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, vn: Buf, wn: Buf, protos: Buf, b: usize, k: usize, p: usize, scale: f64,
    ) -> Result<(), Error> {
        self.v.forward(be, vn, protos, b, k, p, scale)?;
        self.x.forward(be, vn, wn, b, k, p, scale)?;
        self.t.forward(be, wn, protos, k, k, p, scale)?;
        Ok(())
    }

    /// The student's backward: prototypes carry no gradient.
    pub fn backward<B: Backend>(&self, be: &mut B, sc: &Scratch, vn: Buf, wn: Buf, protos: Buf) -> Result<(), Error> {
        self.v.backward(be, sc, vn, protos, true, false)?;
        self.x.backward(be, sc, vn, wn, true, true)?;
        self.t.backward(be, sc, wn, protos, true, false)
    }
}

/// One teacher's raw terms against the student: per sample KL(R^{V,k}‖R^{V,S}),
/// KL(R^{X,k}‖R^{X,S}) and ⟨v̂^S, v̂^k⟩; per class KL(R^{T,k}‖R^{T,S}) and ⟨ŵ^S, ŵ^k⟩.
#[derive(Clone, Copy, Debug)]
pub struct TeacherTerms {
    pub kl_v: Buf,
    pub kl_x: Buf,
    pub dot_v: Buf,
    pub kl_t: Buf,
    pub dot_w: Buf,
    dims: (usize, usize, usize),
}

impl TeacherTerms {
    pub fn plan(pl: &mut Planner, max_b: usize, max_k: usize) -> Self {
        TeacherTerms {
            kl_v: pl.take(max_b),
            kl_x: pl.take(max_b),
            dot_v: pl.take(max_b),
            kl_t: pl.take(max_k),
            dot_w: pl.take(max_k),
            dims: (0, 0, 0),
        }
    }

    /// The per-sample buffers [b] and per-class buffers [k] of the last forward:
    /// (kl_v, kl_x, dot_v, kl_t, dot_w).
    pub fn bufs(&self) -> [Buf; 5] {
        let (b, k, _) = self.dims;
        [head(self.kl_v, b), head(self.kl_x, b), head(self.dot_v, b), head(self.kl_t, k), head(self.dot_w, k)]
    }

    /// `relations == false` leaves the KL buffers at 0 (`mulki-no-rel`).
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, student: &Relations, teacher: &Relations, vn_s: Buf, wn_s: Buf, vn_k: Buf, wn_k: Buf,
        relations: bool, b: usize, k: usize, p: usize,
    ) -> Result<(), Error> {
        self.dims = (b, k, p);
        let [kl_v, kl_x, dot_v, kl_t, dot_w] = self.bufs();
        let (rb, rk) = (Rows { rows: b, c: k, eps: 0.0 }, Rows { rows: k, c: k, eps: 0.0 });
        if relations {
            be.row_kl_forward(kl_v, teacher.v.lp(), student.v.lp(), rb)?;
            be.row_kl_forward(kl_x, teacher.x.lp(), student.x.lp(), rb)?;
            be.row_kl_forward(kl_t, teacher.t.lp(), student.t.lp(), rk)?;
        } else {
            for x in [kl_v, kl_x, kl_t] {
                be.fill(x, 0.0)?;
            }
        }
        be.row_dot_forward(dot_v, vn_s, vn_k, Rows { rows: b, c: p, eps: 0.0 })?;
        be.row_dot_forward(dot_w, wn_s, wn_k, Rows { rows: k, c: p, eps: 0.0 })
    }

    /// From the coefficients already in `sc.d(bufs())` into the student's `sc.d(lp)` and
    /// `sc.d(vn_s)`, `sc.d(wn_s)`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<B: Backend>(
        &self, be: &mut B, sc: &Scratch, student: &Relations, teacher: &Relations, vn_s: Buf, wn_s: Buf, vn_k: Buf,
        wn_k: Buf, relations: bool,
    ) -> Result<(), Error> {
        let (b, k, p) = self.dims;
        let [kl_v, kl_x, dot_v, kl_t, dot_w] = self.bufs();
        let (rb, rk) = (Rows { rows: b, c: k, eps: 0.0 }, Rows { rows: k, c: k, eps: 0.0 });
        if relations {
            let (ts, ss) = ([teacher.v, teacher.x, teacher.t], [student.v, student.x, student.t]);
            for ((kl, rows), (t, s)) in [(kl_v, rb), (kl_x, rb), (kl_t, rk)].into_iter().zip(ts.iter().zip(&ss)) {
                be.row_kl_backward(None, Some(sc.d(s.lp())), sc.d(kl), t.lp(), s.lp(), rows)?;
            }
        }
        be.row_dot_backward(Some(sc.d(vn_s)), None, sc.d(dot_v), vn_s, vn_k, Rows { rows: b, c: p, eps: 0.0 })?;
        be.row_dot_backward(Some(sc.d(wn_s)), None, sc.d(dot_w), wn_s, wn_k, Rows { rows: k, c: p, eps: 0.0 })
    }
}
