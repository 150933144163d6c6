//! The continual-learning loop of METHOD.md over a backend: per task, a fresh optimiser and
//! schedule, prototypes from θ_0, teacher text features cached once, steps with the
//! configured loss, prototype EMA, weight ensemble and connection, then evaluation of every
//! dataset (a new row of the accuracy matrix). Everything the loop needs to continue exactly is
//! in [`RunState`] plus the flat buffers it names; checkpoints are written by the caller.
//!
//! A step never waits for the device. Its loss values, ‖g‖² and a health value (finite only
//! when all of them are) are gathered on the device into one report; the AdamW update and the
//! prototype EMA are skipped there when the health is not finite. The report is copied to the
//! host asynchronously and read ("settled") during the next step, once that step's forward and
//! backward are queued behind it, or by [`Trainer::settle`] before a checkpoint or the end of a
//! task. Settling applies what only the host decides: the ensemble merge (the weights have not
//! moved since), the optimiser's step count, the logs.
use anyhow::{bail, Context, Result};
use mulki_core::backend::{Backend, Buf, IdxBuf, Rows};
use mulki_core::clip::{Capacity, Clip, ClipConfig};
use mulki_core::loss::connections::{connection_loss, interpolate, merge_due, Ensemble};
use mulki_core::loss::mulki::{Features, LossValues, MulkiLoss, MULKI_SLOTS};
use mulki_core::loss::zscl::{Zscl, ZSCL_SLOTS};
use mulki_core::method::{Anchor, MethodConfig, Teachers};
use mulki_core::optim::{default_warmup, lr_at, AdamWConfig, Optimizer};
use mulki_core::Elem;
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::source::{Batch, DataSource, Split};
use super::text::{class_features, normalize_rows, read_f64, Prompts};
use crate::report::TaskLog;

/// Where the run is, and what it has measured: with the flat buffers (θ, AdamW moments, θ̄, Π,
/// θ_{t−1}) this is everything an exact resume needs. Data order and augmentation are
/// functions of (seed, task, step), so no RNG state is stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub config_hash: String,
    /// The task in progress (or the next one when `task_done`).
    pub task: usize,
    /// Optimiser steps finished in `task`.
    pub step: usize,
    pub task_done: bool,
    pub ensemble_members: usize,
    pub optimizer_steps: u64,
    /// Accuracy rows: zero-shot, then one per finished task.
    pub rows: Vec<Vec<f64>>,
    pub logs: Vec<TaskLog>,
    /// Non-finite batches skipped so far (`--skip-nonfinite`).
    pub skipped_nonfinite: usize,
    /// Running sums for the task log: α per teacher and the loss of the last step.
    pub alpha_sum: Vec<f64>,
    pub alpha_histogram: Vec<u64>,
    pub last_loss: f64,
}

/// Per-step values for progress and logs.
#[derive(Clone, Debug, Default)]
pub struct StepReport {
    pub task: usize,
    pub step: usize,
    pub steps: usize,
    pub lr: f64,
    pub loss: LossValues,
    pub zscl: f64,
    pub connection: f64,
    pub images: usize,
}

/// What a settled step gives: its values, or where it was not finite (nothing was applied).
pub type Settled = std::result::Result<StepReport, NonFinite>;

/// Where a step's values lie in the report: per micro-batch the loss tally, then ZSCL's
/// tally, ‖g‖², Σ(θ − θ_{t−1})² of L_C and ‖g‖² with L_C's gradient added (0 without L_C),
/// and the health `Σ 0·x` over all of them (0, or NaN when any is not finite).
#[derive(Clone, Copy, Debug)]
struct ReportLayout {
    micro_batches: usize,
}

impl ReportLayout {
    fn zscl(&self) -> usize {
        self.micro_batches * MULKI_SLOTS
    }
    fn grad_sq(&self) -> usize {
        self.zscl() + ZSCL_SLOTS
    }
    fn connection(&self) -> usize {
        self.grad_sq() + 1
    }
    fn connected_grad_sq(&self) -> usize {
        self.connection() + 1
    }
    fn health(&self) -> usize {
        self.connected_grad_sq() + 1
    }
    fn len(&self) -> usize {
        self.health() + 1
    }
}

/// A step whose update is queued but whose report the host has not read.
#[derive(Clone, Copy, Debug)]
struct Pending {
    task: usize,
    step: usize,
    lr: f64,
    /// The ensemble merges after this step (when it was applied).
    merge: bool,
}

/// Per-task constants: prompts and sizes.
struct TaskPrompts {
    classes: usize,
    train: Prompts,
    eval: Prompts,
    eval_templates: usize,
}

pub struct Trainer<B: Backend> {
    pub be: B,
    pub cfg: RunConfig,
    pub method: MethodConfig,
    pub student: Clip,
    /// The original model θ_0 (teacher Z, anchor of WiSE-FT).
    z: Clip,
    /// The model after the previous task θ_{t−1} (teacher P, anchor of L_C).
    p: Clip,
    s: f64,
    pub loss: MulkiLoss,
    zscl: Option<Zscl>,
    opt: Optimizer,
    ensemble: Ensemble,
    /// Scratch of the parameter layout (L_C's difference) and one element.
    diff: Buf,
    one: Buf,
    /// The step's values on the device (see [`ReportLayout`]), zeros as long as its values
    /// (the health's weights), the host copy, and the step not yet settled.
    report: Buf,
    report_layout: ReportLayout,
    zeros: Buf,
    staged: Vec<B::E>,
    pending: Option<Pending>,
    /// Teacher class-text features of the current task (raw), Z then P.
    wz: Buf,
    wp: Buf,
    /// Teacher Z's features of every reference caption (ZSCL), computed once per run, and the
    /// rows of the current reference batch gathered from them.
    captions: Buf,
    caption_prompts: Prompts,
    captions_cached: bool,
    ref_captions: Buf,
    caption_rows: IdxBuf,
    ref_student: Buf,
    ref_teacher: Buf,
    /// The step's normalised student image features and labels, for the prototype EMA.
    ema_feats: Buf,
    ema_labels: Vec<u32>,
    counts: Vec<u32>,
    prompts: Vec<TaskPrompts>,
    micro: usize,
    pub state: RunState,
}

/// A fresh zeroed buffer of `len` elements (allocated when the run is built, never in a step).
fn alloc<B: Backend>(be: &mut B, len: usize) -> Result<Buf> {
    let a = be.alloc(len)?;
    Ok(Buf { arena: a, offset: 0, len })
}

impl<B: Backend> Trainer<B> {
    /// Builds every buffer of the run from θ_0's config and weights.
    pub fn new(
        mut be: B, cfg: RunConfig, clip_cfg: &ClipConfig, theta0: &[B::E], tokenizer: &dyn crate::tokenizer::Tokenize,
        captions: &[String],
    ) -> Result<Self> {
        let method = cfg.method().map_err(anyhow::Error::msg)?;
        let micro = cfg.train.batch_size / cfg.train.grad_accumulation.max(1);
        let kmax = cfg.tasks.iter().map(|t| t.classes.len()).max().unwrap_or(1);
        let refs = cfg.reference.as_ref().map_or(0, |r| r.batch_size);
        let images = micro.max(cfg.train.eval_batch_size).max(refs);
        let cap = Capacity { images, texts: kmax };
        let mut student = Clip::new(&mut be, clip_cfg, cap)?;
        let mut z = Clip::new_frozen(&mut be, clip_cfg, cap)?;
        let mut p = Clip::new_frozen(&mut be, clip_cfg, cap)?;
        for m in [&mut student, &mut z, &mut p] {
            be.write(m.params(), theta0)?;
        }
        let ls = read_f64(&mut be, z.logit_scale())?;
        let s = ls.first().copied().unwrap_or(0.0).exp();
        let pd = clip_cfg.projection_dim;
        // Sized for the whole step's batch: the prototype EMA reads every micro-batch at once.
        let loss = MulkiLoss::new(&mut be, &method, cfg.train.batch_size.max(micro), kmax, pd)?;
        let zscl = if method.lambda_zscl != 0.0 {
            Some(Zscl::new(&mut be, refs, refs, pd, method.zscl_temperature, method.lambda_zscl)?)
        } else {
            None
        };
        let opt = Optimizer::new(
            &mut be,
            student.layout.len,
            AdamWConfig { weight_decay: cfg.train.weight_decay, ..AdamWConfig::default() },
        )?;
        let avg = alloc(&mut be, student.layout.len)?;
        let ensemble = Ensemble::start(&mut be, avg, student.params())?;
        let diff = alloc(&mut be, student.layout.len)?;
        let one = alloc(&mut be, 1)?;
        let report_layout = ReportLayout { micro_batches: cfg.train.grad_accumulation.max(1) };
        // Zeroed: slots a run never writes (no ZSCL, no L_C, one teacher) stay 0.
        let report = alloc(&mut be, report_layout.len())?;
        let zeros = alloc(&mut be, report_layout.health())?;
        let (wz, wp) = (alloc(&mut be, kmax * pd)?, alloc(&mut be, kmax * pd)?);
        let ctx = clip_cfg.text_config.max_position_embeddings;
        let caption_prompts = Prompts::new(tokenizer, captions, &["{}".to_string()], ctx);
        let captions = alloc(&mut be, caption_prompts.rows.max(1) * pd)?;
        let ref_captions = alloc(&mut be, refs.max(1) * pd)?;
        let caption_rows = IdxBuf { arena: be.alloc_idx(refs.max(1))?, offset: 0, len: refs.max(1) };
        let (ref_student, ref_teacher) = (alloc(&mut be, refs.max(1) * pd)?, alloc(&mut be, refs.max(1) * pd)?);
        let ema_feats = alloc(&mut be, cfg.train.batch_size.max(micro) * pd)?;
        let prompts = cfg
            .tasks
            .iter()
            .map(|t| TaskPrompts {
                classes: t.classes.len(),
                train: Prompts::new(tokenizer, &t.classes, &t.train_templates, ctx),
                eval: Prompts::new(tokenizer, &t.classes, &t.eval_templates, ctx),
                eval_templates: t.eval_templates.len(),
            })
            .collect();
        let state = RunState { config_hash: cfg.hash(), ..RunState::default() };
        Ok(Trainer {
            be,
            cfg,
            method,
            student,
            z,
            p,
            s,
            loss,
            zscl,
            opt,
            ensemble,
            diff,
            one,
            report,
            report_layout,
            zeros,
            staged: vec![B::E::default(); report_layout.len()],
            pending: None,
            wz,
            wp,
            captions,
            caption_prompts,
            captions_cached: false,
            ref_captions,
            caption_rows,
            ref_student,
            ref_teacher,
            ema_feats,
            ema_labels: Vec::new(),
            counts: vec![0; kmax],
            prompts,
            micro,
            state,
        })
    }

    /// exp(logit_scale) of θ_0.
    pub fn scale(&self) -> f64 {
        self.s
    }

    fn trainable(&self) -> (Buf, Buf) {
        let r = self.student.layout.trainable();
        (self.student.params().slice(r.start, r.len()), self.student.grads().slice(r.start, r.len()))
    }

    /// KD teachers in task `t`: none, Z, or Z and P (on the first task P = θ_0 = Z: one).
    fn kd_teachers(&self, t: usize) -> usize {
        match (self.method.lambda_kd != 0.0, self.method.teachers) {
            (false, _) | (_, Teachers::None) => 0,
            (_, Teachers::Original) => 1,
            (_, Teachers::Dual) => {
                if t == 0 {
                    1
                } else {
                    2
                }
            }
        }
    }

    /// Accuracy (percent) of the student on every task's test split: one matrix row.
    pub fn evaluate(&mut self, data: &mut dyn DataSource) -> Result<Vec<f64>> {
        let pd = self.student.config.projection_dim;
        let cap = self.cfg.train.eval_batch_size;
        let mut classifiers = Vec::new();
        for tp in &self.prompts {
            classifiers.push(class_features(&mut self.be, &mut self.student, &tp.eval, tp.eval_templates, tp.classes)?);
        }
        let agnostic = self.cfg.train.task_agnostic;
        let all: Vec<f64> = classifiers.iter().flatten().copied().collect();
        let offsets: Vec<usize> = classifiers
            .iter()
            .scan(0, |o, c| {
                let start = *o;
                *o += c.len() / pd;
                Some(start)
            })
            .collect();
        let mut row = Vec::new();
        for (j, cls) in classifiers.iter().enumerate() {
            let (w, offset) = if agnostic { (&all, offsets[j]) } else { (cls, 0) };
            let n = data.len(j, Split::Test);
            if n == 0 {
                bail!("task {} ({}): the test split is empty", j, self.cfg.tasks[j].name);
            }
            let mut correct = 0usize;
            let mut start = 0;
            while start < n {
                let b = (n - start).min(cap);
                let batch = data.ordered(j, Split::Test, start, b)?;
                let mut v = self.image_features(&batch, b)?;
                normalize_rows(&mut v, pd);
                for (i, f) in v.chunks(pd).enumerate() {
                    let pred = argmax_dot(f, w, pd);
                    if pred == offset + batch.labels[i] as usize {
                        correct += 1;
                    }
                }
                start += b;
            }
            row.push(100.0 * correct as f64 / n as f64);
        }
        Ok(row)
    }

    fn image_features(&mut self, batch: &Batch, b: usize) -> Result<Vec<f64>> {
        let px = to_elems::<B::E>(&batch.pixels);
        self.be.write(self.student.pixels(b)?, &px)?;
        let v = self.student.encode_image(&mut self.be, b)?;
        Ok(read_f64(&mut self.be, v)?)
    }

    /// Starts task `t`: fresh optimiser, ensemble from the task-start weights, prototypes from
    /// θ_0's features of the training images (eval transform), teacher text features.
    pub fn begin_task(&mut self, t: usize, data: &mut dyn DataSource, fresh: bool) -> Result<()> {
        let k = self.prompts[t].classes;
        let ids = &self.prompts[t].train;
        let wz = self.z.encode_text(&mut self.be, ids.slice(0, ids.rows), ids.rows, ids.t)?;
        self.be.copy(self.wz.slice(0, wz.len), wz)?;
        let wp = self.p.encode_text(&mut self.be, ids.slice(0, ids.rows), ids.rows, ids.t)?;
        self.be.copy(self.wp.slice(0, wp.len), wp)?;
        if self.zscl.is_some() && !self.captions_cached {
            self.cache_captions()?;
        }
        if !fresh {
            return Ok(());
        }
        self.opt.reset(&mut self.be)?;
        self.ensemble = Ensemble::start(&mut self.be, self.ensemble.weights(), self.student.params())?;
        self.state.ensemble_members = 1;
        self.state.alpha_sum.clear();
        self.state.alpha_histogram = vec![0; 10];
        self.loss.prototypes.begin(&mut self.be, k)?;
        if self.method.uses_prototypes() {
            self.init_prototypes(t, data)?;
        }
        Ok(())
    }

    fn cache_captions(&mut self) -> Result<()> {
        let pd = self.z.config.projection_dim;
        let (cp, cap) = (&self.caption_prompts, self.prompts.iter().map(|t| t.classes).max().unwrap_or(1));
        if cp.rows == 0 {
            bail!("the reference set has no captions");
        }
        let mut start = 0;
        while start < cp.rows {
            let n = (cp.rows - start).min(cap);
            let out = self.z.encode_text(&mut self.be, cp.slice(start, n), n, cp.t)?;
            self.be.copy(self.captions.slice(start * pd, n * pd), out)?;
            start += n;
        }
        self.captions_cached = true;
        Ok(())
    }

    fn init_prototypes(&mut self, t: usize, data: &mut dyn DataSource) -> Result<()> {
        let n = data.len(t, Split::TrainEval);
        let k = self.prompts[t].classes;
        let cap = self.micro;
        let limit = self.method.proto_max_per_class;
        self.counts[..k].fill(0);
        let pd = self.z.config.projection_dim;
        let mut start = 0;
        while start < n {
            let b = (n - start).min(cap);
            let batch = data.ordered(t, Split::TrainEval, start, b)?;
            start += b;
            // Keep at most `proto_max_per_class` images per class, in file order.
            let keep: Vec<usize> = (0..b)
                .filter(|&i| {
                    let y = batch.labels[i] as usize;
                    y < k && limit.is_none_or(|l| (self.counts[y] as usize) < l) && {
                        self.counts[y] += 1;
                        true
                    }
                })
                .collect();
            if keep.is_empty() {
                continue;
            }
            let px = to_elems::<B::E>(&batch.pixels);
            self.be.write(self.z.pixels(b)?, &px)?;
            let v = self.z.encode_image(&mut self.be, b)?;
            let mut feats = read_f64(&mut self.be, v)?;
            normalize_rows(&mut feats, pd);
            let kept: Vec<B::E> =
                keep.iter().flat_map(|&i| feats[i * pd..(i + 1) * pd].iter().map(|&x| B::E::from_f64(x))).collect();
            let labels: Vec<u32> = keep.iter().map(|&i| batch.labels[i]).collect();
            // The EMA feature buffer is free outside steps: it holds the kept features here.
            let vn = self.ema_feats.slice(0, kept.len());
            self.be.write(vn, &kept)?;
            let mut scratch_counts = vec![0u32; k];
            self.loss.prototypes.accumulate(&mut self.be, vn, &labels, &mut scratch_counts)?;
        }
        self.loss.prototypes.finish_init(&mut self.be)?;
        Ok(())
    }

    /// Queues optimiser step `k` (1-based) of task `t`, without waiting for the device, and
    /// settles the step before it (see the module docs): returns that step's outcome, if one
    /// was pending.
    pub fn step(&mut self, t: usize, k: usize, data: &mut dyn DataSource) -> Result<Option<Settled>> {
        let n_steps = self.cfg.iterations(t);
        let tp_classes = self.prompts[t].classes;
        let acc = self.cfg.train.grad_accumulation.max(1);
        let b = self.micro;
        let pd = self.student.config.projection_dim;
        let n_kd = self.kd_teachers(t);
        let lwf_on = self.method.lambda_lwf != 0.0;
        let lay = self.report_layout;
        self.student.zero_grad(&mut self.be)?;
        self.ema_labels.clear();
        for m in 0..acc {
            let batch = data.train_batch(t, k, m, b)?;
            let px = to_elems::<B::E>(&batch.pixels);
            self.be.write(self.student.pixels(b)?, &px)?;
            let v = self.student.encode_image(&mut self.be, b)?;
            let ids = &self.prompts[t].train;
            let w = self.student.encode_text(&mut self.be, ids.slice(0, ids.rows), ids.rows, ids.t)?;
            let wz = self.wz.slice(0, tp_classes * pd);
            let wp = self.wp.slice(0, tp_classes * pd);
            let mut kd = Vec::with_capacity(2);
            if n_kd > 0 || lwf_on {
                // The same images: a device copy of the student's input, not a second upload.
                self.be.copy(self.z.pixels(b)?, self.student.pixels(b)?)?;
                let vz = self.z.encode_image(&mut self.be, b)?;
                kd.push(Features { v: vz, w: wz });
            }
            let needs_p = n_kd == 2 || (lwf_on && t > 0);
            if needs_p {
                self.be.copy(self.p.pixels(b)?, self.student.pixels(b)?)?;
                let vp = self.p.encode_image(&mut self.be, b)?;
                kd.push(Features { v: vp, w: wp });
            }
            let lwf = if lwf_on { kd.last().copied() } else { None };
            let student = Features { v, w };
            self.loss.forward(&mut self.be, student, &kd[..n_kd], lwf, &batch.labels, b, tp_classes, self.s)?;
            self.be.copy(self.report.slice(m * MULKI_SLOTS, MULKI_SLOTS), self.loss.tally().slots())?;
            let (dv, dw) = (self.student.image_dout(), self.student.text_dout());
            self.loss.backward(&mut self.be, dv, dw)?;
            if acc > 1 {
                self.be.scale(dv, 1.0 / acc as f64)?;
                self.be.scale(dw, 1.0 / acc as f64)?;
            }
            self.student.backward_image(&mut self.be)?;
            self.student.backward_text(&mut self.be)?;
            self.be.copy(self.ema_feats.slice(m * b * pd, b * pd), self.loss.student_images())?;
            self.ema_labels.extend_from_slice(&batch.labels);
        }
        if self.zscl.is_some() {
            self.zscl_step(t, k, data)?;
        }
        // A finite loss can still leave non-finite gradients (an overflow in a backward pass, or
        // L_C's 2·λ_C·(θ − θ_{t−1}) with a huge λ_C); applied, they would make the weights NaN.
        // ‖g‖² is taken before and after L_C, so a report names which one overflowed.
        let (params, grads) = self.trainable();
        let whole = |len| Rows { rows: 1, c: len, eps: 0.0 };
        self.be.row_dot_forward(self.report.slice(lay.grad_sq(), 1), grads, grads, whole(grads.len))?;
        if self.method.lambda_c != 0.0 {
            let (all_params, all_grads) = (self.student.params(), self.student.grads());
            let out = self.report.slice(lay.connection(), 1);
            let lambda = self.method.lambda_c;
            connection_loss(&mut self.be, all_params, self.p.params(), all_grads, self.diff, out, lambda)?;
            let after = self.report.slice(lay.connected_grad_sq(), 1);
            self.be.row_dot_forward(after, grads, grads, whole(grads.len))?;
        }
        let (health, values) = (self.report.slice(lay.health(), 1), self.report.slice(0, lay.health()));
        self.be.row_dot_forward(health, values, self.zeros, whole(values.len))?;
        // The step before this one: its report arrived while this step's work was queued.
        let settled = self.settle()?;
        let warm = self.cfg.train.warmup.unwrap_or_else(|| default_warmup(n_steps));
        let lr = lr_at(self.cfg.lr(t), k, n_steps, warm);
        self.opt.guarded_step(&mut self.be, params, grads, lr, Some(health))?;
        if self.method.uses_prototypes() && self.method.proto_momentum < 1.0 {
            let all = self.ema_feats.slice(0, self.ema_labels.len() * pd);
            let m = self.method.proto_momentum;
            self.loss.prototypes.ema(&mut self.be, all, &self.ema_labels, m, &mut self.counts, Some(health))?;
        }
        self.be.stage(self.report)?;
        let merge = self.method.ensemble && merge_due(k, n_steps, self.method.interval(n_steps));
        self.pending = Some(Pending { task: t, step: k, lr, merge });
        Ok(settled)
    }

    /// Fails when a step is still in flight: what follows (a checkpoint, the end of a task)
    /// must see applied steps only, so the caller settles first.
    pub fn settled(&self) -> Result<()> {
        match self.pending {
            Some(p) => bail!("task {}, step {} is still in flight: settle it first", p.task + 1, p.step),
            None => Ok(()),
        }
    }

    /// Waits for the report of the step in flight, if any, and settles it: a step that was not
    /// finite (its update was skipped on the device) is returned as [`NonFinite`] and not
    /// counted by the optimiser; an applied one merges into the ensemble when due. The values
    /// are decoded with the loss's current sizes, which are the same throughout a task.
    pub fn settle(&mut self) -> Result<Option<Settled>> {
        let Some(p) = self.pending.take() else { return Ok(None) };
        self.be.collect(&mut self.staged)?;
        let sums: Vec<f64> = self.staged.iter().map(|x| x.to_f64()).collect();
        let lay = self.report_layout;
        let acc = lay.micro_batches;
        let mut total = LossValues::default();
        let mut first_bad = None;
        for m in 0..acc {
            let out = self.loss.values(&sums[m * MULKI_SLOTS..]);
            if !out.total.is_finite() && first_bad.is_none() {
                first_bad = Some(nonfinite_term(&out));
            }
            accumulate(&mut total, &out, acc);
        }
        let zscl = match &self.zscl {
            Some(z) => {
                let v = z.values(&sums[lay.zscl()..]);
                self.method.lambda_zscl * (v.img + v.txt)
            }
            None => 0.0,
        };
        let connection = self.method.lambda_c * sums[lay.connection()];
        let later = [
            ("zscl", zscl),
            ("gradient", sums[lay.grad_sq()]),
            ("connection", connection),
            ("connection", sums[lay.connected_grad_sq()]),
        ];
        self.state.step = p.step;
        // The health decided on the device whether the update was applied; the decoded values
        // only name the term.
        if !sums[lay.health()].is_finite() {
            let named = first_bad.or_else(|| later.iter().find(|(_, x)| !x.is_finite()).map(|(n, _)| *n));
            let term = named.unwrap_or("total");
            self.opt.uncount();
            self.state.optimizer_steps = self.opt.steps();
            return Ok(Some(Err(NonFinite { task: p.task, step: p.step, term })));
        }
        if p.merge {
            self.ensemble.merge(&mut self.be, self.student.params())?;
            self.state.ensemble_members = self.ensemble.members();
        }
        self.track_alpha(&total);
        self.state.optimizer_steps = self.opt.steps();
        self.state.last_loss = total.total + zscl + connection;
        Ok(Some(Ok(StepReport {
            task: p.task,
            step: p.step,
            steps: self.cfg.iterations(p.task),
            lr: p.lr,
            loss: total,
            zscl,
            connection,
            images: self.micro * acc,
        })))
    }

    /// ZSCL's reference-batch term: adds its gradient, and its tally to the report.
    fn zscl_step(&mut self, t: usize, k: usize, data: &mut dyn DataSource) -> Result<()> {
        let r = self.cfg.reference.as_ref().map_or(0, |r| r.batch_size);
        let batch = data.reference_batch(t, k, r)?;
        let px = to_elems::<B::E>(&batch.pixels);
        let pd = self.student.config.projection_dim;
        self.be.write(self.student.pixels(r)?, &px)?;
        self.be.copy(self.z.pixels(r)?, self.student.pixels(r)?)?;
        let rz = self.z.encode_image(&mut self.be, r)?;
        self.be.copy(self.ref_teacher.slice(0, r * pd), rz)?;
        let rs = self.student.encode_image(&mut self.be, r)?;
        self.be.copy(self.ref_student.slice(0, r * pd), rs)?;
        let rows = IdxBuf { len: r, ..self.caption_rows };
        self.be.write_idx(rows, &batch.labels)?;
        let caps = self.ref_captions.slice(0, r * pd);
        self.be.embedding_forward(caps, self.captions, rows, pd)?;
        let zscl = self.zscl.as_mut().context("zscl workspace")?;
        zscl.forward(
            &mut self.be,
            self.ref_student.slice(0, r * pd),
            self.ref_teacher.slice(0, r * pd),
            caps,
            r,
            r,
            self.s,
        )?;
        self.student.zero_act_grads(&mut self.be)?;
        zscl.backward(&mut self.be, self.student.image_dout())?;
        self.student.backward_image(&mut self.be)?;
        let slots = self.report.slice(self.report_layout.zscl(), ZSCL_SLOTS);
        Ok(self.be.copy(slots, zscl.tally().slots())?)
    }

    fn track_alpha(&mut self, out: &LossValues) {
        if self.state.alpha_sum.len() < out.alpha_mean.len() {
            self.state.alpha_sum.resize(out.alpha_mean.len(), 0.0);
        }
        for (s, a) in self.state.alpha_sum.iter_mut().zip(&out.alpha_mean) {
            *s += a;
        }
        if let Some(&a) = out.alpha_mean.first() {
            let bin = ((a * 10.0) as usize).min(9);
            if self.state.alpha_histogram.len() == 10 {
                self.state.alpha_histogram[bin] += 1;
            }
        }
    }

    /// Ends task `t`: θ_t = γ·θ̄ + (1−γ)·anchor (θ̄ = the last step's weights without the
    /// ensemble), evaluated; P ← θ_t. Returns the new accuracy row.
    pub fn end_task(&mut self, t: usize, data: &mut dyn DataSource, wall_seconds: f64) -> Result<Vec<f64>> {
        self.settled()?;
        let params = self.student.params();
        if self.method.ensemble {
            self.be.copy(params, self.ensemble.weights())?;
        }
        if self.method.interpolation != 1.0 {
            let anchor = match self.method.anchor {
                Anchor::Previous => self.p.params(),
                Anchor::Original => self.z.params(),
            };
            interpolate(&mut self.be, params, anchor, self.method.interpolation)?;
        }
        let drift = {
            self.be.copy(self.diff, params)?;
            self.be.axpby(self.diff, self.p.params(), -1.0, 1.0)?;
            self.be.row_dot_forward(
                self.one,
                self.diff,
                self.diff,
                mulki_core::backend::Rows { rows: 1, c: self.diff.len, eps: 0.0 },
            )?;
            read_f64(&mut self.be, self.one)?.first().copied().unwrap_or(0.0).sqrt()
        };
        let row = self.evaluate(data)?;
        self.be.copy(self.p.params(), params)?;
        let steps = self.state.step.max(1) as f64;
        self.state.logs.push(TaskLog {
            name: self.cfg.tasks[t].name.clone(),
            alpha_mean: self.state.alpha_sum.iter().map(|s| s / steps).collect(),
            alpha_histogram: self.state.alpha_histogram.clone(),
            drift,
            wall_seconds,
            peak_memory_bytes: peak_memory_bytes(),
            device_memory_bytes: self.be.device_memory(),
            final_loss: self.state.last_loss,
        });
        self.state.rows.push(row.clone());
        self.state.task = t + 1;
        self.state.task_done = true;
        Ok(row)
    }

    /// The buffers a checkpoint holds, by name: θ (`params`), AdamW `m` and `v`, θ̄
    /// (`ensemble`), Π (`prototypes`), θ_{t−1} (`previous`).
    pub fn buffers(&self) -> Vec<(&'static str, Buf)> {
        let (m, v) = self.opt.moments();
        vec![
            ("params", self.student.params()),
            ("adam_m", m),
            ("adam_v", v),
            ("ensemble", self.ensemble.weights()),
            ("prototypes", self.loss.prototypes.protos()),
            ("previous", self.p.params()),
        ]
    }

    /// Restores the optimiser count, ensemble count and prototype count after the buffers
    /// were written back.
    pub fn restore(&mut self, state: RunState) -> Result<()> {
        self.opt.set_steps(state.optimizer_steps);
        self.ensemble = Ensemble::resume(self.ensemble.weights(), state.ensemble_members.max(1));
        self.state = state;
        Ok(())
    }
}

/// Values of a non-finite step, naming where it happened (the message counts tasks from 1, as
/// the progress lines and `mulki inspect` do).
#[derive(Debug, thiserror::Error)]
#[error("non-finite loss at task {}, step {step}, in term `{term}`: the step was not applied", task + 1)]
pub struct NonFinite {
    /// 0-based task index.
    pub task: usize,
    pub step: usize,
    pub term: &'static str,
}

fn nonfinite_term(v: &LossValues) -> &'static str {
    [("ce", v.ce), ("ei", v.ei), ("kd", v.kd), ("lwf", v.lwf)]
        .into_iter()
        .find(|(_, x)| !x.is_finite())
        .map_or("total", |(n, _)| n)
}

fn accumulate(total: &mut LossValues, out: &LossValues, acc: usize) {
    let w = 1.0 / acc as f64;
    total.ce += w * out.ce;
    total.ei += w * out.ei;
    total.kd += w * out.kd;
    total.lwf += w * out.lwf;
    total.total += w * out.total;
    if total.alpha_mean.len() < out.alpha_mean.len() {
        total.alpha_mean.resize(out.alpha_mean.len(), 0.0);
    }
    for (t, a) in total.alpha_mean.iter_mut().zip(&out.alpha_mean) {
        *t += w * a;
    }
}

fn argmax_dot(f: &[f64], w: &[f64], pd: usize) -> usize {
    let mut best = (f64::NEG_INFINITY, 0);
    for (c, row) in w.chunks(pd).enumerate() {
        let s: f64 = row.iter().zip(f).map(|(a, b)| a * b).sum();
        if s > best.0 {
            best = (s, c);
        }
    }
    best.1
}

fn to_elems<E: Elem>(v: &[f32]) -> Vec<E> {
    v.iter().map(|&x| E::from_f64(x as f64)).collect()
}

/// Peak resident memory of this process (Linux `VmHWM`), 0 where unknown.
pub fn peak_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
