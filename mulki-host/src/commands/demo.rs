//! `mulki demo`: runs the synthetic benchmark and prints the Transfer / Avg / Last / BWT table
//! (mean ± std over seeds), also written to `<out>/summary.md` and `summary.csv`.
use std::time::Instant;

use anyhow::Result;

use crate::cli::DemoArgs;
use crate::report;
use crate::run::demo::{run_demo, stream_size, write_shipped_model, SharedKnobs, DEMO_METHODS};

pub fn run(args: &DemoArgs) -> Result<()> {
    let methods: Vec<&str> =
        if args.methods.is_empty() { DEMO_METHODS.to_vec() } else { args.methods.iter().map(|s| s.as_str()).collect() };
    let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds.max(1)).collect();
    let start = Instant::now();
    let mut knobs = SharedKnobs::new(args.quick);
    knobs.steps = args.steps.unwrap_or(knobs.steps);
    knobs.lr = args.lr.unwrap_or(knobs.lr);
    let mut size = stream_size(args.quick);
    size.test = args.test_images.unwrap_or(size.test);
    let threads = super::threads(args.threads);
    let model = match &args.model {
        Some(dir) => dir.clone(),
        None => write_shipped_model(&args.out.join("synth-clip"))?,
    };
    let results = run_demo(&model, &args.out, &methods, &seeds, knobs, size, threads, args.quiet)?;
    let (md, csv) = report::compare_seeds(&results);
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("summary.md"), &md)?;
    std::fs::write(args.out.join("summary.csv"), &csv)?;
    println!("{md}");
    println!(
        "{} methods × {} seed(s){} in {:.0} s; reports in {}",
        methods.len(),
        seeds.len(),
        if args.quick { " (--quick)" } else { "" },
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
