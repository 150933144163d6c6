//! METHOD.md stage 1, Eliciting Ideas: the prototype matrix Π [k, p] (training state), its
//! initialisation from the original model's image features (class means of normalised
//! features, normalised), and its EMA after every step. L_EI itself is [`ImageText`]'s
//! symmetric term on (Π, W), built in `loss::mulki`.
//!
//! A class with no image keeps a zero prototype (its relations are then uniform); the runner
//! warns about such classes.
//!
//! [`ImageText`]: crate::loss::base::ImageText
use crate::arena::{head, Planner};
use crate::backend::{Backend, Buf, IdxBuf, Rows};
use crate::error::Error;
use crate::loss::features::NORMALIZE_EPS;

/// Π and the buffers its updates use.
#[derive(Clone, Copy, Debug)]
pub struct Prototypes {
    protos: Buf,
    sums: Buf,
    counts: Buf,
    labels: IdxBuf,
    p: usize,
    k: usize,
}

impl Prototypes {
    /// `labels` must hold at least `max_b` indices.
    pub fn plan(pl: &mut Planner, labels: IdxBuf, max_k: usize, p: usize) -> Self {
        Prototypes { protos: pl.take(max_k * p), sums: pl.take(max_k * p), counts: pl.take(max_k), labels, p, k: 0 }
    }

    /// Π of the current task [k, p].
    pub fn protos(&self) -> Buf {
        head(self.protos, self.k * self.p)
    }

    /// Classes of the current task.
    pub fn classes(&self) -> usize {
        self.k
    }

    /// Starts a task with `k` classes: zeroes the class sums and counts.
    pub fn begin<B: Backend>(&mut self, be: &mut B, k: usize) -> Result<(), Error> {
        if k * self.p > self.protos.len {
            return Err(Error::Capacity { what: "classes", max: self.protos.len / self.p.max(1), got: k });
        }
        self.k = k;
        be.fill(head(self.sums, k * self.p), 0.0)?;
        be.fill(head(self.counts, k), 0.0)
    }

    /// Adds `b` normalised features `vn` [b, p] with their labels to the class sums (a
    /// scatter-add by label) and the counts.
    fn add<B: Backend>(&mut self, be: &mut B, vn: Buf, labels: &[u32], counts: &mut [u32]) -> Result<(), Error> {
        if let Some(&bad) = labels.iter().find(|&&y| y as usize >= self.k) {
            return Err(Error::Index { what: "class label", index: bad as usize, bound: self.k });
        }
        let ids = IdxBuf { len: labels.len(), ..self.labels };
        be.write_idx(ids, labels)?;
        be.embedding_backward(head(self.sums, self.k * self.p), vn, ids, self.p)?;
        for &y in labels {
            counts[y as usize] += 1;
        }
        Ok(())
    }

    /// Initialisation, one batch at a time: normalised teacher features `vn` [b, p] (the
    /// evaluation transform, no augmentation) and their labels. `counts` (length k, zeroed by
    /// the caller) tracks images per class, so the caller can cap them (`proto_max_per_class`).
    pub fn accumulate<B: Backend>(
        &mut self, be: &mut B, vn: Buf, labels: &[u32], counts: &mut [u32],
    ) -> Result<(), Error> {
        self.add(be, vn, labels, counts)
    }

    /// Ends initialisation: π_c = normalize(mean_c) = normalize(sum_c) (a positive scale does
    /// not change the direction).
    pub fn finish_init<B: Backend>(&mut self, be: &mut B) -> Result<(), Error> {
        let (k, p) = (self.k, self.p);
        // The row norms land in the counts scratch, which is not needed after this.
        be.l2_normalize_forward(
            self.protos(),
            head(self.counts, k),
            head(self.sums, k * p),
            Rows { rows: k, c: p, eps: NORMALIZE_EPS },
        )
    }

    /// The EMA after an optimiser step, from the step's own normalised student features `vn`
    /// [b, p] (detached): for each class c in the batch,
    /// `π_c ← normalize(m·π_c + (1−m)·mean_{y_i=c} v̂_i)`; absent classes keep π_c. `counts`
    /// is caller scratch of length ≥ k. Skipped on the device when the one-element `guard` is
    /// not finite (the step was not applied).
    pub fn ema<B: Backend>(
        &mut self, be: &mut B, vn: Buf, labels: &[u32], momentum: f64, counts: &mut [u32], guard: Option<Buf>,
    ) -> Result<(), Error> {
        let (k, p) = (self.k, self.p);
        be.fill(head(self.sums, k * p), 0.0)?;
        counts[..k].fill(0);
        self.add(be, vn, labels, counts)?;
        write_counts(be, head(self.counts, k), &counts[..k])?;
        be.prototype_ema(
            self.protos(),
            head(self.sums, k * p),
            head(self.counts, k),
            momentum,
            Rows { rows: k, c: p, eps: NORMALIZE_EPS },
            guard,
        )
    }
}

/// Host counts → element buffer, in fixed chunks (no allocation).
fn write_counts<B: Backend>(be: &mut B, dst: Buf, counts: &[u32]) -> Result<(), Error> {
    use crate::elem::Elem;
    let mut tmp = [B::E::default(); 64];
    for (i, chunk) in counts.chunks(64).enumerate() {
        for (t, &c) in tmp.iter_mut().zip(chunk) {
            *t = B::E::from_f64(c as f64);
        }
        be.write(dst.slice(i * 64, chunk.len()), &tmp[..chunk.len()])?;
    }
    Ok(())
}
