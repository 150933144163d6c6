//! `mulki report DIR...`: regenerates reports from accuracy.csv and puts runs side by side.
use anyhow::Result;

use crate::cli::ReportArgs;
use crate::report;

pub fn run(args: &ReportArgs) -> Result<()> {
    let mut runs = Vec::new();
    for dir in &args.dirs {
        let r = report::read_run(dir)?;
        if args.rewrite {
            report::write_reports(dir, &r)?;
        }
        runs.push(r);
    }
    let (md, _csv) = report::compare(&runs);
    println!("{md}");
    Ok(())
}
