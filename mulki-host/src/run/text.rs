//! Class prompts: tokenised once per task ("a photo of a {}." with each class name), and the
//! class-text features built from them: raw features of one template (what training uses, with
//! or without gradient), or METHOD.md's template ensemble for evaluation (normalise each
//! prompt's feature, average per class, normalise again).
use mulki_core::backend::{Backend, Buf};
use mulki_core::clip::Clip;
use mulki_core::Elem;

use crate::tokenizer::Tokenize;

/// Token ids of `rows` prompts, each cut to `t` tokens (the longest prompt: causal attention
/// means trailing padding never reaches the EOT token, so cutting it changes nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct Prompts {
    pub ids: Vec<u32>,
    pub rows: usize,
    pub t: usize,
}

impl Prompts {
    /// Rows ordered class-major: row `c·templates + j` is template j filled with class c.
    pub fn new(tok: &dyn Tokenize, classes: &[String], templates: &[String], context: usize) -> Prompts {
        let texts: Vec<String> =
            classes.iter().flat_map(|c| templates.iter().map(move |t| t.replacen("{}", c, 1))).collect();
        let full = tok.tokenize_rows(&texts, context);
        let pad = tok.pad_id();
        let rows = texts.len();
        let t = full
            .chunks(context.max(1))
            .map(|row| row.iter().rposition(|&x| x != pad).map_or(1, |i| i + 1))
            .max()
            .unwrap_or(1);
        let ids = full.chunks(context.max(1)).flat_map(|row| row[..t].iter().copied()).collect();
        Prompts { ids, rows, t }
    }

    /// Ids of rows `[start, start + n)`.
    pub fn slice(&self, start: usize, n: usize) -> &[u32] {
        &self.ids[start * self.t..(start + n) * self.t]
    }
}

/// Reads a buffer to the host as f64.
pub fn read_f64<B: Backend>(be: &mut B, buf: Buf) -> Result<Vec<f64>, mulki_core::Error> {
    let mut v = vec![B::E::default(); buf.len];
    be.read(buf, &mut v)?;
    Ok(v.iter().map(|x| x.to_f64()).collect())
}

/// Normalises rows of width `p` in place (`F.normalize`, eps 1e-12).
pub fn normalize_rows(v: &mut [f64], p: usize) {
    for row in v.chunks_mut(p.max(1)) {
        let n = row.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= n);
    }
}

/// Class features [classes, p] on the host: every prompt encoded in chunks the model's text
/// capacity allows, normalised, averaged over each class's `templates` prompts and normalised
/// again (with one template this is the normalised feature itself).
pub fn class_features<B: Backend>(
    be: &mut B, model: &mut Clip, prompts: &Prompts, templates: usize, capacity: usize,
) -> Result<Vec<f64>, mulki_core::Error> {
    let p = model.config.projection_dim;
    let mut feats = Vec::with_capacity(prompts.rows * p);
    let mut start = 0;
    while start < prompts.rows {
        let n = (prompts.rows - start).min(capacity.max(1));
        let out = model.encode_text(be, prompts.slice(start, n), n, prompts.t)?;
        feats.extend(read_f64(be, out)?);
        start += n;
    }
    normalize_rows(&mut feats, p);
    let classes = prompts.rows / templates.max(1);
    let mut out = vec![0.0; classes * p];
    for (c, row) in out.chunks_mut(p).enumerate() {
        for j in 0..templates {
            let f = &feats[(c * templates + j) * p..(c * templates + j + 1) * p];
            row.iter_mut().zip(f).for_each(|(o, x)| *o += x);
        }
    }
    normalize_rows(&mut out, p);
    Ok(out)
}
