//! `mulki eval --checkpoint` and `mulki zero-shot`: one accuracy row over a config's tasks.
use anyhow::{bail, Result};

use crate::cli::EvalArgs;
use crate::run::config::RunConfig;
use crate::run::session;

pub fn run(args: &EvalArgs, zero_shot: bool) -> Result<()> {
    let mut cfg = RunConfig::load(&args.config)?;
    if let Some(t) = args.threads {
        cfg.threads = t;
    }
    if let Some(d) = &args.device {
        cfg.device = d.clone();
    }
    let model = match (&args.checkpoint, zero_shot) {
        (Some(_), true) => bail!("zero-shot evaluates the config's model; use `mulki eval --checkpoint` for another"),
        (Some(dir), false) => dir.clone(),
        (None, true) => cfg.model.source.clone(),
        (None, false) => bail!("eval needs --checkpoint DIR (or use `mulki zero-shot`)"),
    };
    let names: Vec<String> = cfg.tasks.iter().map(|t| t.name.clone()).collect();
    let row = session::evaluate(cfg, &model, args.skip_bad_images)?;
    println!("accuracy (%) of {}:", model.display());
    for (n, a) in names.iter().zip(&row) {
        println!("  {n:<24} {a:6.2}");
    }
    println!("  {:<24} {:6.2}", "mean", row.iter().sum::<f64>() / row.len().max(1) as f64);
    Ok(())
}
