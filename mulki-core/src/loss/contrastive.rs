//! CLIP's image–text objective on raw features: normalisation plus [`ImageText`]'s terms, the
//! whole loss for pretraining, `mulki embed` and the model's parity tests.
use crate::arena::Scratch;
use crate::backend::{Backend, Buf};
use crate::error::Error;
use crate::loss::base::{ImageText, Terms, Values, IMAGE_TEXT_SLOTS};
use crate::loss::features::Normalized;
use crate::loss::tally::Tally;

pub struct Contrastive {
    sc: Scratch,
    v: Normalized,
    w: Normalized,
    logits: ImageText,
    tmp: Buf,
}

impl Contrastive {
    /// Workspace for at most `max_b` images and `max_n` texts of width `p`.
    pub fn new<B: Backend>(be: &mut B, max_b: usize, max_n: usize, p: usize) -> Result<Self, Error> {
        let idx = ImageText::alloc_idx(be, max_b, max_n)?;
        let tally = Tally::new(be, IMAGE_TEXT_SLOTS, max_b.max(max_n))?;
        let (sc, (v, w, logits, tmp)) = Scratch::new(be, |pl| {
            let v = Normalized::plan(pl, max_b, p);
            let w = Normalized::plan(pl, max_n, p);
            (v, w, ImageText::plan(pl, idx, tally, max_b, max_n, p), pl.take(1))
        })?;
        Ok(Contrastive { sc, v, w, logits, tmp })
    }

    /// The logits z [b, n] of the last forward.
    pub fn logits(&self) -> Buf {
        self.logits.logits()
    }

    /// The normalised image and text features of the last forward.
    pub fn normalized(&self) -> (Buf, Buf) {
        (self.v.hat(), self.w.hat())
    }

    /// Loss of raw image features `v` [b, p] against raw text features `w` [n, p] at scale `s`
    /// (read back: this loss serves pretraining, embeddings and tests, not the training step).
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self, be: &mut B, v: Buf, w: Buf, b: usize, n: usize, s: f64, labels: &[u32], terms: Terms,
    ) -> Result<Values, Error> {
        let vn = self.v.forward(be, v, b)?;
        let wn = self.w.forward(be, w, n)?;
        self.logits.forward(be, vn, wn, b, n, s, labels, terms)?;
        self.logits.read(be)
    }

    /// Adds the gradient of the last total into `dv`, `dw` (either may be skipped) and, when
    /// given, the one-element `dlogit_scale`.
    pub fn backward<B: Backend>(
        &mut self, be: &mut B, dv: Option<Buf>, dw: Option<Buf>, dlogit_scale: Option<Buf>,
    ) -> Result<(), Error> {
        self.sc.zero_grads(be)?;
        let (vn, wn) = (self.v.hat(), self.w.hat());
        self.logits.backward(be, &self.sc, vn, wn, dlogit_scale.map(|d| (d, self.tmp)))?;
        if let Some(dv) = dv {
            self.v.backward(be, &self.sc, dv)?;
        }
        if let Some(dw) = dw {
            self.w.backward(be, &self.sc, dw)?;
        }
        Ok(())
    }
}
