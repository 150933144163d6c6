//! `mulki embed`: loads an HF CLIP folder, embeds the given images and texts, and prints the
//! normalised embeddings, the cosine similarities and CLIP's softmax over the texts per image.
use anyhow::{bail, Context, Result};
use mulki_core::backend::Backend;
use mulki_core::clip::{Capacity, Clip};
use mulki_core::cpu::CpuBackend;
use mulki_core::loss::base::Terms;
use mulki_core::loss::contrastive::Contrastive;

use crate::cli::EmbedArgs;
use crate::import::load_clip_dir;
use crate::tokenizer::Tokenizer;

fn read(be: &mut CpuBackend<f32>, buf: mulki_core::Buf) -> Result<Vec<f32>> {
    let mut v = vec![0f32; buf.len];
    be.read(buf, &mut v)?;
    Ok(v)
}

fn print_rows(kind: &str, names: &[String], rows: &[f32], p: usize, full: bool) {
    for (name, row) in names.iter().zip(rows.chunks(p.max(1))) {
        let shown = if full { row.len() } else { row.len().min(8) };
        let vals: Vec<String> = row[..shown].iter().map(|x| format!("{x:+.4}")).collect();
        let more = if shown < row.len() { format!(" … ({} values)", row.len()) } else { String::new() };
        println!("{kind} {name}: [{}]{more}", vals.join(", "));
    }
}

pub fn run(args: &EmbedArgs) -> Result<()> {
    if args.images.is_empty() && args.texts.is_empty() {
        bail!("nothing to embed: give at least one --image or --text");
    }
    let loaded = load_clip_dir(&args.model)?;
    if !loaded.skipped.is_empty() {
        eprintln!(
            "note: {} tensors in model.safetensors are not parameters and were skipped: {}",
            loaded.skipped.len(),
            loaded.skipped.join(", ")
        );
    }
    let cfg = loaded.config;
    let (ni, nt) = (args.images.len(), args.texts.len());
    let mut be = CpuBackend::<f32>::new(super::threads(args.threads));
    let mut clip = Clip::new(&mut be, &cfg, Capacity { images: ni.max(1), texts: nt.max(1) })?;
    be.write(clip.params(), &loaded.params)?;
    let p = cfg.projection_dim;
    let mut ls = [0f32];
    be.read(clip.logit_scale(), &mut ls)?;
    let s = (ls[0] as f64).exp();

    let side = cfg.vision_config.image_size;
    let mut pixels = Vec::with_capacity(ni * 3 * side * side);
    for path in &args.images {
        pixels.extend(crate::image::load_eval(path, side)?);
    }
    let v = if ni > 0 {
        be.write(clip.pixels(ni)?, &pixels)?;
        Some(clip.encode_image(&mut be, ni)?)
    } else {
        None
    };
    let w = if nt > 0 {
        let tok = match &args.bpe {
            Some(path) => Tokenizer::from_bpe_gz(path)?,
            None => Tokenizer::from_hf_dir(&args.model)?,
        };
        let ctx = cfg.text_config.max_position_embeddings;
        let mut ids = tok.tokenize_batch(&args.texts, ctx);
        // Causal attention: trailing padding never reaches the EOT token, so the batch is cut to
        // its longest sequence.
        let t = ids
            .chunks(ctx)
            .map(|s| s.iter().rposition(|&x| x != crate::tokenizer::PAD_ID).map_or(1, |i| i + 1))
            .max()
            .unwrap_or(1);
        ids = ids.chunks(ctx).flat_map(|s| s[..t].to_vec()).collect();
        Some(clip.encode_text(&mut be, &ids, nt, t).context("encoding texts")?)
    } else {
        None
    };

    let image_names: Vec<String> = args.images.iter().map(|p| p.display().to_string()).collect();
    let text_names: Vec<String> = args.texts.iter().map(|t| format!("{t:?}")).collect();
    let most = ni.max(nt).max(1);
    let mut loss = Contrastive::new(&mut be, most, most, p)?;
    let terms = Terms { contrastive: 0.0, labelled: 0.0, smoothing: 0.0 };
    match (v, w) {
        (Some(v), Some(w)) => {
            loss.forward(&mut be, v, w, ni, nt, s, &[], terms)?;
            let (vn, wn) = loss.normalized();
            print_rows("image", &image_names, &read(&mut be, vn)?, p, args.full);
            print_rows("text", &text_names, &read(&mut be, wn)?, p, args.full);
            let z = read(&mut be, loss.logits())?;
            println!(
                "\ncosine similarity (rows: images, columns: texts), and softmax over texts at logit scale {s:.2}:"
            );
            for (name, row) in image_names.iter().zip(z.chunks(nt)) {
                let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = row.iter().map(|x| (x - m).exp()).collect();
                let sum: f32 = e.iter().sum();
                let cells: Vec<String> = row
                    .iter()
                    .zip(&e)
                    .map(|(x, ex)| format!("{:+.4} ({:5.1}%)", *x as f64 / s, 100.0 * ex / sum))
                    .collect();
                println!("{name}: {}", cells.join("  "));
            }
        }
        (Some(v), None) => {
            loss.forward(&mut be, v, v, ni, ni, s, &[], terms)?;
            print_rows("image", &image_names, &read(&mut be, loss.normalized().0)?, p, args.full);
        }
        (None, Some(w)) => {
            loss.forward(&mut be, w, w, nt, nt, s, &[], terms)?;
            print_rows("text", &text_names, &read(&mut be, loss.normalized().0)?, p, args.full);
        }
        (None, None) => {}
    }
    Ok(())
}
