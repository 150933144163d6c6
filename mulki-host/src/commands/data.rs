//! `mulki data check --config X`: every dataset's layout, classes and split sizes.
use anyhow::{bail, Result};

use crate::cli::DataCheckArgs;
use crate::data;
use crate::run::config::RunConfig;

pub fn check(args: &DataCheckArgs) -> Result<()> {
    let cfg = RunConfig::load(&args.config)?;
    let mut bad = 0;
    for (i, task) in cfg.tasks.iter().enumerate() {
        match data::check(task) {
            Ok(report) => {
                println!("task {} ({}): {report}", i + 1, task.name);
                if !report.is_clean() {
                    bad += 1;
                }
            }
            Err(e) => {
                println!("task {} ({}): {e}", i + 1, task.name);
                bad += 1;
            }
        }
    }
    if bad > 0 {
        bail!("{bad} of {} datasets have problems (listed above)", cfg.tasks.len());
    }
    Ok(())
}
