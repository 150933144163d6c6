//! `mulki pretrain`: contrastive pretraining of the synthetic world's tiny CLIP.
use anyhow::Result;

use crate::cli::PretrainArgs;
use crate::run::pretrain::{pretrain, PretrainConfig};
use crate::run::progress::Progress;

pub fn run(args: &PretrainArgs) -> Result<()> {
    let cfg = PretrainConfig {
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        warmup: args.warmup,
        seed: args.seed,
        tokenizer: args.tokenizer.clone(),
        pairs: args.pairs.clone(),
        ..PretrainConfig::default()
    };
    let threads = super::threads(args.threads);
    let mut command = format!(
        "mulki pretrain --out {} --steps {} --batch {} --lr {} --warmup {} --seed {}",
        args.out.display(),
        args.steps,
        args.batch,
        args.lr,
        args.warmup,
        args.seed
    );
    for (flag, path) in [("--tokenizer", &args.tokenizer), ("--pairs", &args.pairs)] {
        if let Some(p) = path {
            command += &format!(" {flag} {}", p.display());
        }
    }
    let mut progress = Progress::new(args.quiet, None)?;
    let rec = pretrain(&cfg, &args.out, threads, &command, &mut progress)?;
    if !args.quiet {
        eprintln!(
            "pretrained in {:.0} s: final loss {:.4}, logit scale {:.2} (s = {:.1}); weights in {}",
            rec.wall_seconds,
            rec.final_loss,
            rec.logit_scale,
            rec.logit_scale.exp(),
            args.out.display()
        );
    }
    Ok(())
}
