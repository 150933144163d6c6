//! Image–class-text logits `z = s·v̂·ŵᵀ` (HF `logits_per_image`) and the two losses on them:
//! METHOD.md's base loss L_CE = CE_ε(z, y) (mean over the batch), and CLIP's symmetric
//! contrastive loss ½[CE(z, diag) + CE(zᵀ, diag)] for paired batches (pretraining, tests).
//! Dims legend: `b` images, `n` texts (classes or captions), `p` feature width.
use crate::arena::{head, Planner, Scratch};
use crate::backend::{Backend, Buf, Ce, IdxBuf};
use crate::error::Error;
use crate::layers::similarity::Similarity;
use crate::loss::tally::Tally;

/// What the loss adds up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Terms {
    /// Weight of ½[CE(z, diag) + CE(zᵀ, diag)]; needs `b == n`.
    pub contrastive: f64,
    /// Weight of CE_ε(z, labels).
    pub labelled: f64,
    /// ε of the labelled term.
    pub smoothing: f64,
}

/// Values of the last forward (unweighted means).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Values {
    pub contrastive: f64,
    pub labelled: f64,
    /// `contrastive·w_c + labelled·w_l`.
    pub total: f64,
}

/// Workspace for at most `max_b` images and `max_n` texts.
pub struct ImageText {
    max_b: usize,
    max_n: usize,
    p: usize,
    /// `[0, 1, …]` for the diagonal targets, then the labels.
    idx: IdxBuf,
    z: Buf,
    zt: Buf,
    lse_i: Buf,
    lse_t: Buf,
    lse_y: Buf,
    loss_i: Buf,
    loss_t: Buf,
    loss_y: Buf,
    /// Σ loss_i, Σ loss_t, Σ loss_y of the last forward.
    tally: Tally,
    last: Option<(usize, usize, f64, Terms)>,
}

/// Slots of an [`ImageText`] tally.
pub const IMAGE_TEXT_SLOTS: usize = 3;

/// `Σ a[i]·w[i]` (or `Σ a[i]` without weights), read to the host in f64 in fixed chunks, so
/// no allocation happens.
pub fn host_sum<B: Backend>(be: &mut B, a: Buf, w: Option<Buf>) -> Result<f64, Error> {
    use crate::elem::Elem;
    let (mut x, mut y) = ([B::E::default(); 64], [<B::E as num_traits::One>::one(); 64]);
    let (mut sum, mut off) = (0.0, 0);
    while off < a.len {
        let n = (a.len - off).min(64);
        be.read(a.slice(off, n), &mut x[..n])?;
        if let Some(w) = w {
            be.read(w.slice(off, n), &mut y[..n])?;
        }
        sum += x[..n].iter().zip(&y[..n]).map(|(a, b)| a.to_f64() * b.to_f64()).sum::<f64>();
        off += n;
    }
    Ok(sum)
}

impl ImageText {
    /// The index buffer `plan` needs: the diagonal targets `[0, 1, …]`, then room for labels.
    pub fn alloc_idx<B: Backend>(be: &mut B, max_b: usize, max_n: usize) -> Result<IdxBuf, Error> {
        let m = max_b.max(max_n);
        let idx = IdxBuf { arena: be.alloc_idx(2 * m)?, offset: 0, len: 2 * m };
        let diag: alloc::vec::Vec<u32> = (0..m as u32).collect();
        be.write_idx(IdxBuf { len: m, ..idx }, &diag)?;
        Ok(idx)
    }

    /// Plans the workspace; `idx` comes from `alloc_idx` with the same sizes, `tally` has
    /// [`IMAGE_TEXT_SLOTS`] slots of `max(max_b, max_n)` elements.
    pub fn plan(p: &mut Planner, idx: IdxBuf, tally: Tally, max_b: usize, max_n: usize, width: usize) -> Self {
        ImageText {
            max_b,
            max_n,
            p: width,
            idx,
            z: p.take(max_b * max_n),
            zt: p.take(max_b * max_n),
            lse_i: p.take(max_b),
            lse_t: p.take(max_n),
            lse_y: p.take(max_b),
            loss_i: p.take(max_b),
            loss_t: p.take(max_n),
            loss_y: p.take(max_b),
            tally,
            last: None,
        }
    }

    fn diag(&self, n: usize) -> IdxBuf {
        IdxBuf { len: n, ..self.idx }
    }
    fn labels(&self, n: usize) -> IdxBuf {
        IdxBuf { offset: self.idx.offset + self.idx.len / 2, len: n, ..self.idx }
    }

    /// The logits z [b, n] of the last forward.
    pub fn logits(&self) -> Buf {
        let (b, n) = self.last.map_or((0, 0), |l| (l.0, l.1));
        head(self.z, b * n)
    }

    /// Loss of normalised image features `vn` [b, p] against normalised texts `wn` [n, p] at
    /// scale `s`. `labels` (one per image, < n) are needed when `terms.labelled != 0`. The
    /// values stay on the device: [`ImageText::read`] or [`ImageText::values`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, vn: Buf, wn: Buf, b: usize, n: usize, s: f64, labels: &[u32], terms: Terms,
    ) -> Result<(), Error> {
        if b > self.max_b || n > self.max_n {
            return Err(Error::Capacity { what: "image-text batch", max: self.max_b.min(self.max_n), got: b.max(n) });
        }
        if terms.contrastive != 0.0 && b != n {
            return Err(Error::Capacity { what: "contrastive pairs (images must equal texts)", max: n, got: b });
        }
        let (z, zt) = (head(self.z, b * n), head(self.zt, n * b));
        Similarity { m: b, n, c: self.p, scale: s }.forward(be, z, vn, wn)?;
        if terms.contrastive != 0.0 {
            Similarity { m: n, n: b, c: self.p, scale: s }.forward(be, zt, wn, vn)?;
            let (li, lt) = (head(self.loss_i, b), head(self.loss_t, n));
            be.cross_entropy_forward(li, head(self.lse_i, b), z, self.diag(b), Ce { rows: b, nc: n, smoothing: 0.0 })?;
            be.cross_entropy_forward(lt, head(self.lse_t, n), zt, self.diag(n), Ce { rows: n, nc: b, smoothing: 0.0 })?;
            self.tally.sum(be, 0, li, None)?;
            self.tally.sum(be, 1, lt, None)?;
        }
        if terms.labelled != 0.0 {
            if labels.len() != b {
                return Err(Error::Capacity { what: "labels", max: b, got: labels.len() });
            }
            if let Some(&bad) = labels.iter().find(|&&y| y as usize >= n) {
                return Err(Error::Index { what: "class label", index: bad as usize, bound: n });
            }
            be.write_idx(self.labels(b), labels)?;
            let ly = head(self.loss_y, b);
            let ce = Ce { rows: b, nc: n, smoothing: terms.smoothing };
            be.cross_entropy_forward(ly, head(self.lse_y, b), z, self.labels(b), ce)?;
            self.tally.sum(be, 2, ly, None)?;
        }
        self.last = Some((b, n, s, terms));
        Ok(())
    }

    /// The tally the last forward wrote.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The last forward's values from its tally's slots as read (terms it did not compute are 0).
    pub fn values(&self, sums: &[f64]) -> Values {
        let Some((b, n, _, terms)) = self.last else { return Values::default() };
        let mut out = Values::default();
        if terms.contrastive != 0.0 {
            out.contrastive = 0.5 * (sums[0] / b as f64 + sums[1] / n as f64);
        }
        if terms.labelled != 0.0 {
            out.labelled = sums[2] / b as f64;
        }
        out.total = terms.contrastive * out.contrastive + terms.labelled * out.labelled;
        out
    }

    /// The last forward's values (waits for the device).
    pub fn read<B: Backend>(&self, be: &mut B) -> Result<Values, Error> {
        Ok(self.values(&self.tally.read(be)?))
    }

    /// Adds the gradient of the last total into `s.d(vn)`, `s.d(wn)` (the caller's normalised
    /// features, in scratch `sc`) and, when given, the one-element `dlogit_scale` (`tmp` is a
    /// one-element buffer).
    pub fn backward<B: Backend>(
        &self, be: &mut B, sc: &Scratch, vn: Buf, wn: Buf, dlogit_scale: Option<(Buf, Buf)>,
    ) -> Result<(), Error> {
        let (b, n, s, terms) = self.last.ok_or(Error::Buffer { op: "image-text backward", reason: "no forward" })?;
        let (z, zt) = (head(self.z, b * n), head(self.zt, n * b));
        if terms.contrastive != 0.0 {
            // d(mean)/d(loss_r) = weight/rows, halved for the symmetric average.
            let (li, lt) = (sc.d(head(self.loss_i, b)), sc.d(head(self.loss_t, n)));
            be.fill(li, 0.5 * terms.contrastive / b as f64)?;
            be.fill(lt, 0.5 * terms.contrastive / n as f64)?;
            be.cross_entropy_backward(
                sc.d(z),
                li,
                z,
                head(self.lse_i, b),
                self.diag(b),
                Ce { rows: b, nc: n, smoothing: 0.0 },
            )?;
            be.cross_entropy_backward(
                sc.d(zt),
                lt,
                zt,
                head(self.lse_t, n),
                self.diag(n),
                Ce { rows: n, nc: b, smoothing: 0.0 },
            )?;
            Similarity { m: n, n: b, c: self.p, scale: s }.backward(
                be,
                Some(sc.d(wn)),
                Some(sc.d(vn)),
                dlogit_scale,
                sc.d(zt),
                zt,
                wn,
                vn,
            )?;
        }
        if terms.labelled != 0.0 {
            let ly = sc.d(head(self.loss_y, b));
            be.fill(ly, terms.labelled / b as f64)?;
            let ce = Ce { rows: b, nc: n, smoothing: terms.smoothing };
            be.cross_entropy_backward(sc.d(z), ly, z, head(self.lse_y, b), self.labels(b), ce)?;
        }
        Similarity { m: b, n, c: self.p, scale: s }.backward(
            be,
            Some(sc.d(vn)),
            Some(sc.d(wn)),
            dlogit_scale,
            sc.d(z),
            z,
            vn,
            wn,
        )
    }
}
