//! `mulki train`: resolves the run config (file, then flags), picks the run directory, and runs
//! or resumes it; a signal ends it with a committed checkpoint and exit code 130/143.
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::cli::TrainArgs;
use crate::run::config::RunConfig;
use crate::run::session::{self, Outcome, SessionOptions, Signals};

/// The run directory: `--resume`, `--output`, the config's `output_dir`, or
/// `runs/<config stem>`.
fn run_dir(args: &TrainArgs, cfg: &RunConfig) -> PathBuf {
    args.resume.clone().or_else(|| args.output.clone()).or_else(|| cfg.output_dir.clone()).unwrap_or_else(|| {
        let stem = args.config.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
        PathBuf::from("runs").join(stem)
    })
}

/// Exit code of the run (0, or 130/143 after a signal).
pub fn run(args: &TrainArgs) -> Result<i32> {
    let mut cfg = RunConfig::load(&args.config)?;
    if let Some(t) = args.threads {
        cfg.threads = t;
    }
    if let Some(d) = &args.device {
        cfg.device = d.clone();
    }
    if args.task_agnostic {
        cfg.train.task_agnostic = true;
    }
    crate::run::device::Device::parse(&cfg.device)?;
    let dir = run_dir(args, &cfg);
    if args.resume.is_some() && !dir.is_dir() {
        bail!("--resume {}: no such run directory", dir.display());
    }
    let opts = SessionOptions {
        quiet: args.quiet,
        force: args.force,
        skip_bad_images: args.skip_bad_images,
        skip_nonfinite: args.skip_nonfinite,
        zero_shot_row: None,
    };
    let signals = Signals::install()?;
    match session::run(cfg, &dir, &opts, Some(&signals))? {
        Outcome::Finished => {
            if !args.quiet {
                eprintln!("done: reports in {}", dir.display());
            }
            Ok(0)
        }
        Outcome::Interrupted(code) => Ok(code),
    }
}
