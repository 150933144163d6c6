//! CLIP's image–text objective on L2-normalised features: `z = s·v·wᵀ` (HF
//! `logits_per_image`), the symmetric contrastive loss ½[CE(z, diag) + CE(zᵀ, diag)] and a
//! label-smoothed CE(z, y) against class texts (METHOD.md's base loss L_CE), each weighted.
//! Dims legend: `b` images, `n` texts (pairs or classes), `p` projection width.
use alloc::vec::Vec;

use crate::arena::{head, Planner};
use crate::backend::{ArenaId, Backend, Buf, Ce, IdxBuf, Rows};
use crate::elem::Elem;
use crate::error::Error;
use crate::layers::similarity::Similarity;

/// `F.normalize`'s default eps.
pub const NORMALIZE_EPS: f64 = 1e-12;

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

/// The loss's values after `forward`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Values {
    pub contrastive: f64,
    pub labelled: f64,
    pub total: f64,
}

/// Workspace of the loss, planned for at most `max_b` images and `max_n` texts.
pub struct Contrastive {
    max_b: usize,
    max_n: usize,
    p: usize,
    grads: ArenaId,
    idx: IdxBuf,
    vn: Buf,
    v_norm: Buf,
    wn: Buf,
    w_norm: Buf,
    z: Buf,
    zt: Buf,
    lse_i: Buf,
    lse_t: Buf,
    lse_y: Buf,
    loss_i: Buf,
    loss_t: Buf,
    loss_y: Buf,
    scratch: Buf,
    host_e: Vec<u32>,
    last: Option<(usize, usize, f64, Terms)>,
}

impl Contrastive {
    pub fn new<B: Backend>(
        be: &mut B,
        max_b: usize,
        max_n: usize,
        p: usize,
    ) -> Result<Self, Error> {
        let plan = |pl: &mut Planner| {
            let m = max_b.max(max_n);
            [
                pl.take(max_b * p),
                pl.take(max_b),
                pl.take(max_n * p),
                pl.take(max_n),
                pl.take(max_b * max_n),
                pl.take(max_b * max_n),
                pl.take(max_b),
                pl.take(max_n),
                pl.take(max_b),
                pl.take(max_b),
                pl.take(max_n),
                pl.take(max_b),
                pl.take(m),
            ]
        };
        let mut sizing = Planner::new(ArenaId::MAX);
        plan(&mut sizing);
        let acts = be.alloc(sizing.used())?;
        let grads = be.alloc(sizing.used())?;
        let idx_arena = be.alloc_idx(2 * max_b.max(max_n))?;
        let [vn, v_norm, wn, w_norm, z, zt, lse_i, lse_t, lse_y, loss_i, loss_t, loss_y, scratch] =
            plan(&mut Planner::new(acts));
        let m = max_b.max(max_n);
        let diag: Vec<u32> = (0..m as u32).collect();
        be.write_idx(
            IdxBuf {
                arena: idx_arena,
                offset: 0,
                len: m,
            },
            &diag,
        )?;
        Ok(Contrastive {
            max_b,
            max_n,
            p,
            grads,
            idx: IdxBuf {
                arena: idx_arena,
                offset: 0,
                len: 2 * m,
            },
            vn,
            v_norm,
            wn,
            w_norm,
            z,
            zt,
            lse_i,
            lse_t,
            lse_y,
            loss_i,
            loss_t,
            loss_y,
            scratch,
            host_e: Vec::with_capacity(m),
            last: None,
        })
    }

    /// The logits z [b, n] of the last forward.
    pub fn logits(&self) -> Buf {
        let (b, n) = self.last.map_or((0, 0), |l| (l.0, l.1));
        head(self.z, b * n)
    }

    /// The normalised image and text features of the last forward.
    pub fn normalized(&self) -> (Buf, Buf) {
        let (b, n) = self.last.map_or((0, 0), |l| (l.0, l.1));
        (head(self.vn, b * self.p), head(self.wn, n * self.p))
    }

    fn diag(&self, n: usize) -> IdxBuf {
        IdxBuf { len: n, ..self.idx }
    }
    fn labels(&self, n: usize) -> IdxBuf {
        IdxBuf {
            offset: self.idx.offset + self.idx.len / 2,
            len: n,
            ..self.idx
        }
    }

    /// Mean of a per-row loss buffer, summed on the host in f64.
    fn mean<B: Backend>(be: &mut B, buf: Buf) -> Result<f64, Error> {
        let mut tmp = [B::E::default(); 64];
        let mut sum = 0.0;
        let mut off = 0;
        while off < buf.len {
            let n = (buf.len - off).min(64);
            be.read(buf.slice(off, n), &mut tmp[..n])?;
            sum += tmp[..n].iter().map(|x| x.to_f64()).sum::<f64>();
            off += n;
        }
        Ok(sum / buf.len.max(1) as f64)
    }

    /// Computes the loss of image features `v` [b, p] against text features `w` [n, p], both
    /// unnormalised, at scale `s`. `labels` (one per image, < n) are needed when
    /// `terms.labelled != 0`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<B: Backend>(
        &mut self,
        be: &mut B,
        v: Buf,
        w: Buf,
        b: usize,
        n: usize,
        s: f64,
        labels: &[u32],
        terms: Terms,
    ) -> Result<Values, Error> {
        if b > self.max_b || n > self.max_n {
            return Err(Error::Capacity {
                what: "contrastive batch",
                max: self.max_b.min(self.max_n),
                got: b.max(n),
            });
        }
        if terms.contrastive != 0.0 && b != n {
            return Err(Error::Capacity {
                what: "contrastive pairs (images must equal texts)",
                max: n,
                got: b,
            });
        }
        let p = self.p;
        let (vn, wn, z, zt) = (
            head(self.vn, b * p),
            head(self.wn, n * p),
            head(self.z, b * n),
            head(self.zt, n * b),
        );
        be.l2_normalize_forward(
            vn,
            head(self.v_norm, b),
            v,
            Rows {
                rows: b,
                c: p,
                eps: NORMALIZE_EPS,
            },
        )?;
        be.l2_normalize_forward(
            wn,
            head(self.w_norm, n),
            w,
            Rows {
                rows: n,
                c: p,
                eps: NORMALIZE_EPS,
            },
        )?;
        Similarity {
            m: b,
            n,
            c: p,
            scale: s,
        }
        .forward(be, z, vn, wn)?;
        let mut out = Values::default();
        if terms.contrastive != 0.0 {
            Similarity {
                m: n,
                n: b,
                c: p,
                scale: s,
            }
            .forward(be, zt, wn, vn)?;
            let ce = Ce {
                rows: b,
                nc: n,
                smoothing: 0.0,
            };
            be.cross_entropy_forward(
                head(self.loss_i, b),
                head(self.lse_i, b),
                z,
                self.diag(b),
                ce,
            )?;
            be.cross_entropy_forward(
                head(self.loss_t, n),
                head(self.lse_t, n),
                zt,
                self.diag(n),
                Ce {
                    rows: n,
                    nc: b,
                    smoothing: 0.0,
                },
            )?;
            out.contrastive = 0.5
                * (Self::mean(be, head(self.loss_i, b))? + Self::mean(be, head(self.loss_t, n))?);
        }
        if terms.labelled != 0.0 {
            if labels.len() != b {
                return Err(Error::Capacity {
                    what: "labels",
                    max: b,
                    got: labels.len(),
                });
            }
            if let Some(&bad) = labels.iter().find(|&&y| y as usize >= n) {
                return Err(Error::Index {
                    what: "class label",
                    index: bad as usize,
                    bound: n,
                });
            }
            self.host_e.clear();
            self.host_e.extend_from_slice(labels);
            be.write_idx(self.labels(b), &self.host_e)?;
            let ce = Ce {
                rows: b,
                nc: n,
                smoothing: terms.smoothing,
            };
            be.cross_entropy_forward(
                head(self.loss_y, b),
                head(self.lse_y, b),
                z,
                self.labels(b),
                ce,
            )?;
            out.labelled = Self::mean(be, head(self.loss_y, b))?;
        }
        out.total = terms.contrastive * out.contrastive + terms.labelled * out.labelled;
        self.last = Some((b, n, s, terms));
        Ok(out)
    }

    /// Adds the gradient of the last `forward`'s total into `dv` [b, p], `dw` [n, p] (either may
    /// be skipped) and, when given, the one-element `dlogit_scale`.
    pub fn backward<B: Backend>(
        &mut self,
        be: &mut B,
        dv: Option<Buf>,
        dw: Option<Buf>,
        dlogit_scale: Option<Buf>,
    ) -> Result<(), Error> {
        let (b, n, s, terms) = self.last.ok_or(Error::Buffer {
            op: "contrastive backward",
            reason: "no forward",
        })?;
        let p = self.p;
        let g = |x: Buf, arena| x.in_arena(arena);
        let ga = self.grads;
        let (vn, wn, z, zt) = (
            head(self.vn, b * p),
            head(self.wn, n * p),
            head(self.z, b * n),
            head(self.zt, n * b),
        );
        be.fill(g(head(self.vn, b * p), ga), 0.0)?;
        be.fill(g(head(self.wn, n * p), ga), 0.0)?;
        be.fill(g(z, ga), 0.0)?;
        be.fill(g(zt, ga), 0.0)?;
        let scratch = head(self.scratch, 1);
        let dls = dlogit_scale.map(|d| (d, scratch));
        if terms.contrastive != 0.0 {
            // d(mean)/d(loss_r) = weight/rows, halved for the symmetric average.
            let (dli, dlt) = (g(head(self.loss_i, b), ga), g(head(self.loss_t, n), ga));
            be.fill(dli, 0.5 * terms.contrastive / b as f64)?;
            be.fill(dlt, 0.5 * terms.contrastive / n as f64)?;
            be.cross_entropy_backward(
                g(z, ga),
                dli,
                z,
                head(self.lse_i, b),
                self.diag(b),
                Ce {
                    rows: b,
                    nc: n,
                    smoothing: 0.0,
                },
            )?;
            be.cross_entropy_backward(
                g(zt, ga),
                dlt,
                zt,
                head(self.lse_t, n),
                self.diag(n),
                Ce {
                    rows: n,
                    nc: b,
                    smoothing: 0.0,
                },
            )?;
            Similarity {
                m: n,
                n: b,
                c: p,
                scale: s,
            }
            .backward(
                be,
                Some(g(wn, ga)),
                Some(g(vn, ga)),
                dls,
                g(zt, ga),
                zt,
                wn,
                vn,
            )?;
        }
        if terms.labelled != 0.0 {
            let dly = g(head(self.loss_y, b), ga);
            be.fill(dly, terms.labelled / b as f64)?;
            let ce = Ce {
                rows: b,
                nc: n,
                smoothing: terms.smoothing,
            };
            be.cross_entropy_backward(g(z, ga), dly, z, head(self.lse_y, b), self.labels(b), ce)?;
        }
        Similarity {
            m: b,
            n,
            c: p,
            scale: s,
        }
        .backward(
            be,
            Some(g(vn, ga)),
            Some(g(wn, ga)),
            dls,
            g(z, ga),
            z,
            vn,
            wn,
        )?;
        if let Some(dv) = dv {
            be.l2_normalize_backward(
                dv,
                g(vn, ga),
                vn,
                head(self.v_norm, b),
                Rows {
                    rows: b,
                    c: p,
                    eps: NORMALIZE_EPS,
                },
            )?;
        }
        if let Some(dw) = dw {
            be.l2_normalize_backward(
                dw,
                g(wn, ga),
                wn,
                head(self.w_norm, n),
                Rows {
                    rows: n,
                    c: p,
                    eps: NORMALIZE_EPS,
                },
            )?;
        }
        Ok(())
    }
}
