//! The method's loss on one batch, METHOD.md's total without the parameter-space connection:
//! `L = L_CE + λ_EI·L_EI + λ_KD·L_KD + λ_LwF·L_LwF`, with
//! - L_CE = CE_ε(s·v̂·Ŵᵀ, y) (base),
//! - L_EI = ½[CE(s·Π·Ŵᵀ, diag) + CE(s·Ŵ·Πᵀ, diag)] (stage 1; Π detached),
//! - L_KD = mean_i Σ_k α_i^k ℓ^k(i) + Σ_k ᾱ^k ℓ_T^k (stages 2–3),
//! - L_LwF = T²·mean_i KL(softmax(s·v̂^P·Ŵ^Pᵀ/T) ‖ softmax(s·v̂·Ŵᵀ/T)) (the LwF baseline).
//!
//! L_C (stage 4) acts on the flat parameter buffers: see `loss::connections`.
//! Dims legend: `b` images, `k` classes, `p` feature width.
use alloc::vec::Vec;

use crate::arena::{head, Scratch};
use crate::backend::{Backend, Bcast, Buf, Ce, IdxBuf, Rows, WeightRule};
use crate::error::Error;
use crate::layers::similarity::Similarity;
use crate::loss::base::{ImageText, Terms, IMAGE_TEXT_SLOTS};
use crate::loss::features::Normalized;
use crate::loss::prototypes::Prototypes;
use crate::loss::relations::{LogSoftmaxSim, Relations, TeacherTerms};
use crate::loss::tally::Tally;
use crate::method::{MethodConfig, WeightRuleName};

/// Raw (unnormalised) features of one model on the batch: images [b, p], class texts [k, p].
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub v: Buf,
    pub w: Buf,
}

/// Values of the last forward, unweighted, plus what the report logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossValues {
    pub ce: f64,
    pub ei: f64,
    pub kd: f64,
    pub lwf: f64,
    pub total: f64,
    /// Batch mean of α per KD teacher (Z, then P).
    pub alpha_mean: Vec<f64>,
}

/// Per-teacher workspace.
#[derive(Clone, Copy, Debug)]
struct Teacher {
    v: Normalized,
    w: Normalized,
    rel: Relations,
    terms: TeacherTerms,
    /// s·v̂^k·Ŵ^kᵀ and its CE on the true class (−log q^k).
    conf_z: Buf,
    conf_lse: Buf,
}

/// Tally layout: the base loss's slots, L_EI's, Σ KL of LwF, then per KD teacher
/// [`TEACHER_SLOTS`] sums (Σα, Σα·kl_v, Σα·kl_x, Σα·dot_v, Σ kl_t, Σ dot_w).
const BASE_SLOT: usize = 0;
const EI_SLOT: usize = IMAGE_TEXT_SLOTS;
const LWF_SLOT: usize = 2 * IMAGE_TEXT_SLOTS;
const TEACHER_SLOT: usize = LWF_SLOT + 1;
const TEACHER_SLOTS: usize = 6;
/// Slots of a [`MulkiLoss`] tally.
pub const MULKI_SLOTS: usize = TEACHER_SLOT + 2 * TEACHER_SLOTS;

/// The loss workspace for at most `max_b` images, `max_k` classes and two teachers.
pub struct MulkiLoss {
    cfg: MethodConfig,
    sc: Scratch,
    p: usize,
    labels: IdxBuf,
    v: Normalized,
    w: Normalized,
    base: ImageText,
    ei: ImageText,
    pub prototypes: Prototypes,
    rel: Relations,
    teachers: [Teacher; 2],
    /// α [2, b] and the statistic its rule reads ([2, b] −log q, or ‖v̂^Z − v̂^P‖² [b]).
    alpha: Buf,
    stat: Buf,
    diff: Buf,
    /// 1/b per sample (ᾱ = ⟨α, 1/b⟩) and ᾱ broadcast over classes.
    inv_b: Buf,
    abar: Buf,
    abar_k: Buf,
    lwf_s: LogSoftmaxSim,
    lwf_p: LogSoftmaxSim,
    lwf_kl: Buf,
    /// The sums of the values, laid out as the `*_SLOT` constants say.
    tally: Tally,
    /// (b, k, s, number of KD teachers, LwF on) of the last forward.
    last: Option<(usize, usize, f64, usize, bool)>,
}

impl MulkiLoss {
    pub fn new<B: Backend>(
        be: &mut B, cfg: &MethodConfig, max_b: usize, max_k: usize, p: usize,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        let base_idx = ImageText::alloc_idx(be, max_b, max_k)?;
        let ei_idx = ImageText::alloc_idx(be, max_k, max_k)?;
        let labels = IdxBuf { arena: be.alloc_idx(max_b.max(max_k))?, offset: 0, len: max_b.max(max_k) };
        let tally = Tally::new(be, MULKI_SLOTS, max_b.max(max_k))?;
        let teacher = |pl: &mut crate::arena::Planner| Teacher {
            v: Normalized::plan(pl, max_b, p),
            w: Normalized::plan(pl, max_k, p),
            rel: Relations::plan(pl, max_b, max_k),
            terms: TeacherTerms::plan(pl, max_b, max_k),
            conf_z: pl.take(max_b * max_k),
            conf_lse: pl.take(max_b),
        };
        let (sc, mut l) = Scratch::new(be, |pl| MulkiLoss {
            cfg: cfg.clone(),
            sc: Scratch { vals: 0, grads: 0, len: 0 },
            p,
            labels,
            v: Normalized::plan(pl, max_b, p),
            w: Normalized::plan(pl, max_k, p),
            base: ImageText::plan(pl, base_idx, tally.part(BASE_SLOT, IMAGE_TEXT_SLOTS), max_b, max_k, p),
            ei: ImageText::plan(pl, ei_idx, tally.part(EI_SLOT, IMAGE_TEXT_SLOTS), max_k, max_k, p),
            prototypes: Prototypes::plan(pl, labels, max_k, p),
            rel: Relations::plan(pl, max_b, max_k),
            teachers: [teacher(pl), teacher(pl)],
            alpha: pl.take(2 * max_b),
            stat: pl.take(2 * max_b),
            diff: pl.take(max_b * p),
            inv_b: pl.take(max_b),
            abar: pl.take(1),
            abar_k: pl.take(max_k),
            lwf_s: LogSoftmaxSim::plan(pl, max_b, max_k),
            lwf_p: LogSoftmaxSim::plan(pl, max_b, max_k),
            lwf_kl: pl.take(max_b),
            tally,
            last: None,
        })?;
        l.sc = sc;
        Ok(l)
    }

    pub fn config(&self) -> &MethodConfig {
        &self.cfg
    }

    /// α [teachers, b] of the last forward (teacher order Z, P).
    pub fn alpha(&self) -> Buf {
        let (b, n) = self.last.map_or((0, 0), |l| (l.0, l.3));
        head(self.alpha, n * b)
    }

    /// The student's normalised image features of the last forward (for the EMA and metrics).
    pub fn student_images(&self) -> Buf {
        self.v.hat()
    }

    /// The loss of the student's raw features against `kd` teachers (none, Z, or Z then P) and,
    /// when `λ_LwF > 0`, the LwF teacher P. `s` is the frozen scale of θ_0. The values stay on
    /// the device, in [`MulkiLoss::tally`]: [`MulkiLoss::read`] or [`MulkiLoss::values`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, student: Features, kd: &[Features], lwf: Option<Features>, labels: &[u32], b: usize,
        k: usize, s: f64,
    ) -> Result<(), Error> {
        let (cfg, p) = (self.cfg.clone(), self.p);
        if kd.len() > 2 {
            return Err(Error::Capacity { what: "teachers", max: 2, got: kd.len() });
        }
        if self.prototypes.classes() != k && cfg.uses_prototypes() {
            return Err(Error::Capacity {
                what: "classes (prototypes were initialised for another count)",
                max: self.prototypes.classes(),
                got: k,
            });
        }
        let vn = self.v.forward(be, student.v, b)?;
        let wn = self.w.forward(be, student.w, k)?;
        let ce_terms = Terms { contrastive: 0.0, labelled: 1.0, smoothing: cfg.label_smoothing };
        self.base.forward(be, vn, wn, b, k, s, labels, ce_terms)?;
        if cfg.lambda_ei != 0.0 {
            let protos = self.prototypes.protos();
            let t = Terms { contrastive: cfg.lambda_ei, labelled: 0.0, smoothing: 0.0 };
            self.ei.forward(be, protos, wn, k, k, s, &[], t)?;
        }
        let n_kd = if cfg.lambda_kd != 0.0 { kd.len() } else { 0 };
        if n_kd > 0 {
            be.write_idx(IdxBuf { len: b, ..self.labels }, labels)?;
            self.kd_forward(be, &kd[..n_kd], b, k, s)?;
        }
        let lwf_on = cfg.lambda_lwf != 0.0;
        if lwf_on {
            let t = lwf.ok_or(Error::Config { field: "lambda_lwf", reason: "needs the previous model's features" })?;
            let (tv, tw) = (&mut self.teachers[1].v, &mut self.teachers[1].w);
            let (vp, wp) = (tv.forward(be, t.v, b)?, tw.forward(be, t.w, k)?);
            let scale = s / cfg.lwf_temperature;
            let lq = self.lwf_s.forward(be, vn, wn, b, k, p, scale)?;
            let lp = self.lwf_p.forward(be, vp, wp, b, k, p, scale)?;
            be.row_kl_forward(head(self.lwf_kl, b), lp, lq, Rows { rows: b, c: k, eps: 0.0 })?;
            self.tally.sum(be, LWF_SLOT, head(self.lwf_kl, b), None)?;
        }
        self.last = Some((b, k, s, n_kd, lwf_on));
        Ok(())
    }

    /// The tally the last forward wrote ([`MULKI_SLOTS`] slots).
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The last forward's values from its tally's slots as read.
    pub fn values(&self, sums: &[f64]) -> LossValues {
        let Some((b, k, _, n_kd, lwf_on)) = self.last else { return LossValues::default() };
        let cfg = &self.cfg;
        let mut out = LossValues { ce: self.base.values(&sums[BASE_SLOT..]).labelled, ..LossValues::default() };
        if cfg.lambda_ei != 0.0 {
            out.ei = self.ei.values(&sums[EI_SLOT..]).contrastive;
        }
        let (t2, beta, bf, kf) = (cfg.temperature * cfg.temperature, cfg.beta, b as f64, k as f64);
        for i in 0..n_kd {
            let [a_sum, kl_v, kl_x, dot_v, kl_t, dot_w] =
                core::array::from_fn(|j| sums[TEACHER_SLOT + i * TEACHER_SLOTS + j]);
            let per_sample = t2 * (kl_v + kl_x) + beta * (a_sum - dot_v);
            let abar = a_sum / bf;
            let per_class = t2 * kl_t / kf + beta * (1.0 - dot_w / kf);
            out.kd += per_sample / bf + abar * per_class;
            out.alpha_mean.push(abar);
        }
        if lwf_on {
            out.lwf = cfg.lwf_temperature * cfg.lwf_temperature * sums[LWF_SLOT] / bf;
        }
        out.total = out.ce + cfg.lambda_ei * out.ei + cfg.lambda_kd * out.kd + cfg.lambda_lwf * out.lwf;
        out
    }

    /// The last forward's values (waits for the device).
    pub fn read<B: Backend>(&self, be: &mut B) -> Result<LossValues, Error> {
        Ok(self.values(&self.tally.read(be)?))
    }

    /// Stages 2–3: relations, teacher terms, weights, and the sums of L_KD.
    fn kd_forward<B: Backend>(&mut self, be: &mut B, kd: &[Features], b: usize, k: usize, s: f64) -> Result<(), Error> {
        let (cfg, p) = (self.cfg.clone(), self.p);
        let (vn, wn, protos) = (self.v.hat(), self.w.hat(), self.prototypes.protos());
        let scale = s / cfg.temperature;
        if cfg.relations {
            self.rel.forward(be, vn, wn, protos, b, k, p, scale)?;
        }
        for (t, f) in self.teachers.iter_mut().zip(kd) {
            let (tv, tw) = (t.v.forward(be, f.v, b)?, t.w.forward(be, f.w, k)?);
            if cfg.relations {
                t.rel.forward(be, tv, tw, protos, b, k, p, scale)?;
            }
            t.terms.forward(be, &self.rel, &t.rel, vn, wn, tv, tw, cfg.relations, b, k, p)?;
        }
        let n = kd.len();
        let alpha = head(self.alpha, n * b);
        match (n, cfg.weight_rule) {
            (1, _) => be.fill(alpha, 1.0)?,
            (_, WeightRuleName::Equal) => be.fill(alpha, 1.0 / n as f64)?,
            (_, WeightRuleName::Confidence) => {
                for (i, t) in self.teachers.iter().enumerate().take(n) {
                    let z = head(t.conf_z, b * k);
                    Similarity { m: b, n: k, c: p, scale: s }.forward(be, z, t.v.hat(), t.w.hat())?;
                    let nll = self.stat.slice(i * b, b);
                    be.cross_entropy_forward(
                        nll,
                        head(t.conf_lse, b),
                        z,
                        IdxBuf { len: b, ..self.labels },
                        Ce { rows: b, nc: k, smoothing: 0.0 },
                    )?;
                }
                be.teacher_weights(alpha, head(self.stat, n * b), WeightRule::Confidence { tau: cfg.tau_w }, n, b)?;
            }
            (_, WeightRuleName::Discrepancy) => {
                let diff = head(self.diff, b * p);
                be.copy(diff, self.teachers[0].v.hat())?;
                be.axpby(diff, self.teachers[1].v.hat(), -1.0, 1.0)?;
                be.row_dot_forward(head(self.stat, b), diff, diff, Rows { rows: b, c: p, eps: 0.0 })?;
                let rule =
                    WeightRule::Discrepancy { scale: cfg.discrepancy_scale, threshold: cfg.discrepancy_threshold };
                be.teacher_weights(alpha, head(self.stat, b), rule, 2, b)?;
            }
        }
        for (i, t) in self.teachers.iter().enumerate().take(n) {
            let a = alpha.slice(i * b, b);
            let [kl_v, kl_x, dot_v, kl_t, dot_w] = t.terms.bufs();
            let first = TEACHER_SLOT + i * TEACHER_SLOTS;
            let sums = [(a, None), (kl_v, Some(a)), (kl_x, Some(a)), (dot_v, Some(a)), (kl_t, None), (dot_w, None)];
            for (j, (x, w)) in sums.into_iter().enumerate() {
                self.tally.sum(be, first + j, x, w)?;
            }
        }
        Ok(())
    }

    /// Adds the gradient of the last total into the student's `dv` [b, p] and `dw` [k, p].
    pub fn backward<B: Backend>(&mut self, be: &mut B, dv: Buf, dw: Buf) -> Result<(), Error> {
        let (b, k, _s, n_kd, lwf_on) = self.last.ok_or(Error::Buffer { op: "mulki backward", reason: "no forward" })?;
        let (cfg, sc) = (self.cfg.clone(), self.sc);
        sc.zero_grads(be)?;
        let (vn, wn) = (self.v.hat(), self.w.hat());
        self.base.backward(be, &sc, vn, wn, None)?;
        if cfg.lambda_ei != 0.0 {
            // Π's gradient lands in its own slot and is never used: Π is detached.
            self.ei.backward(be, &sc, self.prototypes.protos(), wn, None)?;
        }
        if n_kd > 0 {
            let (t2, beta, lam) = (cfg.temperature * cfg.temperature, cfg.beta, cfg.lambda_kd);
            be.fill(head(self.inv_b, b), 1.0 / b as f64)?;
            for (i, t) in self.teachers.iter().enumerate().take(n_kd) {
                let a = self.alpha.slice(i * b, b);
                let [kl_v, kl_x, dot_v, kl_t, dot_w] = t.terms.bufs();
                // d/d kl_v(i) = d/d kl_x(i) = λ·T²·α_i/b; d/d dot_v(i) = −λ·β·α_i/b.
                be.axpby(sc.d(kl_v), a, lam * t2 / b as f64, 0.0)?;
                be.axpby(sc.d(kl_x), a, lam * t2 / b as f64, 0.0)?;
                be.axpby(sc.d(dot_v), a, -lam * beta / b as f64, 0.0)?;
                // ᾱ = ⟨α, 1/b⟩, broadcast over the k classes: d/d kl_t(c) = λ·T²·ᾱ/k,
                // d/d dot_w(c) = −λ·β·ᾱ/k.
                be.row_dot_forward(self.abar, a, head(self.inv_b, b), Rows { rows: 1, c: b, eps: 0.0 })?;
                let abar_k = head(self.abar_k, k);
                be.fill(abar_k, 0.0)?;
                be.broadcast_add_forward(abar_k, self.abar, Bcast { outer: k, inner: 1, c: 1 })?;
                be.axpby(sc.d(kl_t), abar_k, lam * t2 / k as f64, 0.0)?;
                be.axpby(sc.d(dot_w), abar_k, -lam * beta / k as f64, 0.0)?;
                t.terms.backward(be, &sc, &self.rel, &t.rel, vn, wn, t.v.hat(), t.w.hat(), cfg.relations)?;
            }
            if cfg.relations {
                self.rel.backward(be, &sc, vn, wn, self.prototypes.protos())?;
            }
        }
        if lwf_on {
            let t2 = cfg.lwf_temperature * cfg.lwf_temperature;
            let kl = head(self.lwf_kl, b);
            be.fill(sc.d(kl), cfg.lambda_lwf * t2 / b as f64)?;
            let rows = Rows { rows: b, c: k, eps: 0.0 };
            be.row_kl_backward(None, Some(sc.d(self.lwf_s.lp())), sc.d(kl), self.lwf_p.lp(), self.lwf_s.lp(), rows)?;
            self.lwf_s.backward(be, &sc, vn, wn, true, true)?;
        }
        self.v.backward(be, &sc, dv)?;
        self.w.backward(be, &sc, dw)
    }
}
