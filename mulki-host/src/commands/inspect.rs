//! `mulki inspect CHECKPOINT`: the manifest, config, task, step and metrics of a checkpoint.
use anyhow::{Context, Result};

use crate::checkpoint;
use crate::cli::InspectArgs;
use crate::run::session::CheckpointState;

pub fn run(args: &InspectArgs) -> Result<()> {
    let dir = if args.checkpoint.join(checkpoint::MANIFEST_FILE).is_file() {
        args.checkpoint.clone()
    } else {
        let (found, warnings) = checkpoint::find_latest(&args.checkpoint, None)?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        found.with_context(|| format!("{}: no complete checkpoint", args.checkpoint.display()))?.dir
    };
    let manifest = checkpoint::verify(&dir)?;
    let state: CheckpointState =
        checkpoint::decode_header(&checkpoint::load_file(&dir, "state.postcard")?, &dir.join("state.postcard"))?;
    let run = &state.run()?;
    println!("checkpoint {}", dir.display());
    println!(
        "kind {:?}, task {}, step {}, config hash {}",
        manifest.kind,
        manifest.task + 1,
        manifest.step,
        manifest.config_hash
    );
    for (name, f) in &manifest.files {
        println!("  {name}: {} bytes, sha256 {}", f.bytes, f.sha256);
    }
    println!(
        "optimizer steps {}, ensemble members {}, tasks finished {}",
        run.optimizer_steps,
        run.ensemble_members,
        run.rows.len().saturating_sub(1)
    );
    if let Some(m) = mulki_core::metrics::metrics(&run.rows) {
        let f = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.2}"));
        println!("Transfer {}  Avg {:.2}  Last {:.2}  BWT {}", f(m.transfer), m.avg, m.last, f(m.bwt));
    }
    println!("config: {}", state.config_json);
    Ok(())
}
