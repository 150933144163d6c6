//! The ZSCL baseline's reference-set distillation, as ZSCL's code computes it:
//! `Z_S = s·r̂_S·ĉᵀ` (student images on reference images x_r, teacher Z's caption features ĉ),
//! `Z_Z = s·r̂_Z·ĉᵀ`; `L_img = −T²·mean_rows Σ softmax(Z_Z/T)·log_softmax(Z_S/T)` (soft-target
//! CE, whose gradient is the KL's) and `L_txt` the same on the transposed matrices. Only the
//! student's image tower gets a gradient. Dims legend: `r` reference images, `n` captions.
use crate::arena::{head, Scratch};
use crate::backend::{Backend, Buf, Rows};
use crate::error::Error;
use crate::layers::similarity::Similarity;
use crate::loss::features::Normalized;
use crate::loss::relations::LogSoftmaxSim;
use crate::loss::tally::Tally;

/// Values of the last forward.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ZsclValues {
    pub img: f64,
    pub txt: f64,
}

pub struct Zscl {
    sc: Scratch,
    p: usize,
    temperature: f64,
    weight: f64,
    s: Normalized,
    z: Normalized,
    c: Normalized,
    /// Student log-probabilities and teacher probabilities, image rows then caption rows.
    lq_img: LogSoftmaxSim,
    lq_txt: LogSoftmaxSim,
    zz: Buf,
    p_img: Buf,
    p_txt: Buf,
    ce_img: Buf,
    ce_txt: Buf,
    /// Σ ce_img, Σ ce_txt of the last forward.
    tally: Tally,
    last: (usize, usize),
}

/// Slots of a [`Zscl`] tally.
pub const ZSCL_SLOTS: usize = 2;

impl Zscl {
    /// Workspace for `max_r` reference images and `max_n` captions of width `p`; `weight` is
    /// λ_ZSCL and `temperature` T.
    pub fn new<B: Backend>(
        be: &mut B, max_r: usize, max_n: usize, p: usize, temperature: f64, weight: f64,
    ) -> Result<Self, Error> {
        let tally = Tally::new(be, ZSCL_SLOTS, max_r.max(max_n))?;
        let (sc, mut z) = Scratch::new(be, |pl| Zscl {
            sc: Scratch { vals: 0, grads: 0, len: 0 },
            p,
            temperature,
            weight,
            s: Normalized::plan(pl, max_r, p),
            z: Normalized::plan(pl, max_r, p),
            c: Normalized::plan(pl, max_n, p),
            lq_img: LogSoftmaxSim::plan(pl, max_r, max_n),
            lq_txt: LogSoftmaxSim::plan(pl, max_n, max_r),
            zz: pl.take(max_r * max_n),
            p_img: pl.take(max_r * max_n),
            p_txt: pl.take(max_r * max_n),
            ce_img: pl.take(max_r),
            ce_txt: pl.take(max_n),
            tally,
            last: (0, 0),
        })?;
        z.sc = sc;
        Ok(z)
    }

    /// Student `student` [r, p] and teacher `teacher` [r, p] raw image features of the reference
    /// batch, teacher caption features `captions` [n, p] (raw), at scale `s`. The values stay on
    /// the device: [`Zscl::read`] or [`Zscl::values`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, student: Buf, teacher: Buf, captions: Buf, r: usize, n: usize, s: f64,
    ) -> Result<(), Error> {
        let (p, scale) = (self.p, s / self.temperature);
        let rs = self.s.forward(be, student, r)?;
        let rz = self.z.forward(be, teacher, r)?;
        let c = self.c.forward(be, captions, n)?;
        let (zz, p_img, p_txt) = (head(self.zz, r * n), head(self.p_img, r * n), head(self.p_txt, n * r));
        Similarity { m: r, n, c: p, scale }.forward(be, zz, rz, c)?;
        be.softmax_forward(p_img, zz, Rows { rows: r, c: n, eps: 0.0 })?;
        Similarity { m: n, n: r, c: p, scale }.forward(be, zz, c, rz)?;
        be.softmax_forward(p_txt, zz, Rows { rows: n, c: r, eps: 0.0 })?;
        let lq_img = self.lq_img.forward(be, rs, c, r, n, p, scale)?;
        let lq_txt = self.lq_txt.forward(be, c, rs, n, r, p, scale)?;
        let (ce_img, ce_txt) = (head(self.ce_img, r), head(self.ce_txt, n));
        be.row_dot_forward(ce_img, p_img, lq_img, Rows { rows: r, c: n, eps: 0.0 })?;
        be.row_dot_forward(ce_txt, p_txt, lq_txt, Rows { rows: n, c: r, eps: 0.0 })?;
        self.tally.sum(be, 0, ce_img, None)?;
        self.tally.sum(be, 1, ce_txt, None)?;
        self.last = (r, n);
        Ok(())
    }

    /// The tally the last forward wrote.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The last forward's values from its tally's slots as read.
    pub fn values(&self, sums: &[f64]) -> ZsclValues {
        let (r, n) = self.last;
        let t2 = self.temperature * self.temperature;
        ZsclValues { img: -t2 * sums[0] / r.max(1) as f64, txt: -t2 * sums[1] / n.max(1) as f64 }
    }

    /// The last forward's values (waits for the device).
    pub fn read<B: Backend>(&self, be: &mut B) -> Result<ZsclValues, Error> {
        Ok(self.values(&self.tally.read(be)?))
    }

    /// Adds `λ·d(L_img + L_txt)/d(student)` into `dstudent` [r, p].
    pub fn backward<B: Backend>(&mut self, be: &mut B, dstudent: Buf) -> Result<(), Error> {
        let (r, n) = self.last;
        let sc = self.sc;
        sc.zero_grads(be)?;
        let t2 = self.temperature * self.temperature;
        let (rs, c) = (self.s.hat(), self.c.hat());
        let (ce_img, ce_txt) = (head(self.ce_img, r), head(self.ce_txt, n));
        be.fill(sc.d(ce_img), -self.weight * t2 / r as f64)?;
        be.fill(sc.d(ce_txt), -self.weight * t2 / n as f64)?;
        let (p_img, p_txt) = (head(self.p_img, r * n), head(self.p_txt, n * r));
        let (lq_img, lq_txt) = (self.lq_img.lp(), self.lq_txt.lp());
        be.row_dot_backward(None, Some(sc.d(lq_img)), sc.d(ce_img), p_img, lq_img, Rows { rows: r, c: n, eps: 0.0 })?;
        be.row_dot_backward(None, Some(sc.d(lq_txt)), sc.d(ce_txt), p_txt, lq_txt, Rows { rows: n, c: r, eps: 0.0 })?;
        self.lq_img.backward(be, &sc, rs, c, true, false)?;
        self.lq_txt.backward(be, &sc, c, rs, false, true)?;
        self.s.backward(be, &sc, dstudent)
    }
}
