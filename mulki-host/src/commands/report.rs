//! `mulki report DIR...`: regenerates reports from accuracy.csv and puts runs side by side.
use std::path::Path;

use anyhow::{anyhow, Context, Result};

use crate::cli::ReportArgs;
use crate::report;
use crate::run::config::RunConfig;

pub fn run(args: &ReportArgs) -> Result<()> {
    let mut runs = Vec::new();
    for dir in &args.dirs {
        let r = report::read_run(dir)?;
        if args.rewrite {
            report::write_reports(dir, &r)?;
        }
        // A zero-shot run has only its zero-shot row on disk; side by side it is read as a
        // method whose every row is that row, as `mulki demo` shows it.
        runs.push(if trains(dir)? { r } else { r.untrained() });
    }
    let (md, _csv) = report::compare(&runs);
    println!("{md}");
    Ok(())
}

/// Whether the run in `dir` trains (not for the zero-shot preset), by its run.json; a run
/// without one is taken to train.
fn trains(dir: &Path) -> Result<bool> {
    let Some(info) = report::read_run_json(dir)? else { return Ok(true) };
    let path = dir.join(report::RUN_JSON);
    let cfg: RunConfig = serde_json::from_value(info.config).with_context(|| format!("{}: config", path.display()))?;
    Ok(cfg.method().map_err(|e| anyhow!("{}: config: {e}", path.display()))?.train)
}
