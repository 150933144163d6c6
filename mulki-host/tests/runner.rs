//! End to end: small generated image folders (3 tasks), a tiny random CLIP with the CLIP BPE
//! vocabulary, every preset for a few steps; the accuracy matrix, metrics and reports. Also
//! exact resume after a stop at several steps.
mod common;

use std::path::Path;

use common::{config, final_weights, read_csv, setup};
use mulki_core::method::PRESETS;
use mulki_host::run::session::{self, Outcome, SessionOptions};

fn opts() -> SessionOptions {
    SessionOptions { quiet: true, ..SessionOptions::default() }
}

#[test]
fn every_preset_runs_end_to_end_and_reports() {
    let root = setup("presets");
    for preset in PRESETS {
        let cfg = config(&root, preset, 3, 0);
        let dir = root.join("runs").join(preset);
        assert_eq!(session::run(cfg, &dir, &opts(), None).unwrap(), Outcome::Finished, "{preset}");
        let rows = read_csv(&dir);
        let expect_rows = if preset == "zero-shot" { 1 } else { 4 };
        assert_eq!(rows.len(), expect_rows, "{preset}: accuracy rows");
        assert!(rows.iter().all(|r| r.len() == 3 && r.iter().all(|a| (0.0..=100.0).contains(a))));
        for f in ["metrics.json", "report.md", "heatmap.svg", "run.json", "log.jsonl"] {
            assert!(dir.join(f).is_file(), "{preset}: {f} missing");
        }
        if rows.len() == 4 {
            // Metrics against a hand computation from the CSV (2-decimal values).
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
            let transfer = (rows[1][1] + (rows[1][2] + rows[2][2]) / 2.0) / 2.0;
            let avg = rows[1..].iter().flatten().sum::<f64>() / 9.0;
            let last = rows[3].iter().sum::<f64>() / 3.0;
            let bwt = ((rows[3][0] - rows[1][0]) + (rows[3][1] - rows[2][1])) / 2.0;
            for (k, v) in [("transfer", transfer), ("avg", avg), ("last", last), ("bwt", bwt)] {
                let got = m[k].as_f64().unwrap();
                assert!((got - v).abs() < 0.02, "{preset}: {k} = {got}, by hand {v}");
            }
            // A task-end checkpoint per task.
            for t in 0..3 {
                assert!(
                    mulki_host::checkpoint::task_end(&dir, t).is_some(),
                    "{preset}: no task-end checkpoint for task {t}"
                );
            }
        }
    }
    // `mulki report` reads the zero-shot run (one row on disk) as the demo shows it: every row
    // the zero-shot row, so its metrics are defined (BWT 0) instead of "0/3 n/a".
    let runs = ["zero-shot", "ft"].map(|p| root.join("runs").join(p).to_string_lossy().into_owned());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mulki")).arg("report").args(&runs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8_lossy(&out.stdout);
    let line =
        md.lines().find(|l| l.starts_with("| zero-shot |")).unwrap_or_else(|| panic!("no zero-shot line:\n{md}"));
    assert!(line.contains("| 3/3 |") && !line.contains("n/a") && line.ends_with("| 0.00 |"), "{line}\n{md}");
    assert_eq!(read_csv(&root.join("runs/zero-shot")).len(), 1, "report changed the run's files");
}

#[test]
fn a_stopped_run_resumes_to_the_same_weights_and_matrix() {
    let root = setup("resume");
    let full = root.join("runs/full");
    assert_eq!(session::run(config(&root, "mulki", 4, 1), &full, &opts(), None).unwrap(), Outcome::Finished);
    // Stop after a periodic checkpoint by deleting everything newer, inside the ensemble window
    // (task 1, step 2) and at a task boundary (end of task 0), then resume.
    for (task, step) in [(1usize, 2usize), (0, 4), (2, 1)] {
        let dir = root.join(format!("runs/cut-{task}-{step}"));
        copy_dir(&full, &dir);
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(t) = name.strip_prefix("task-").and_then(|t| t.parse::<usize>().ok()) {
                for s in std::fs::read_dir(entry.path()).unwrap().flatten() {
                    let sname = s.file_name().to_string_lossy().into_owned();
                    let st: usize = sname.trim_start_matches("step-").parse().unwrap_or(0);
                    if t > task || (t == task && st > step) {
                        std::fs::remove_dir_all(s.path()).unwrap();
                    }
                }
            }
        }
        let mut cfg = config(&root, "mulki", 4, 1);
        cfg.threads = 1 + task % 2;
        assert_eq!(session::run(cfg, &dir, &opts(), None).unwrap(), Outcome::Finished);
        assert_eq!(read_csv(&dir), read_csv(&full), "matrix after resuming at task {task}, step {step}");
        assert!(final_weights(&dir) == final_weights(&full), "weights after resuming at task {task}, step {step}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}

#[test]
fn task_agnostic_evaluation_classifies_among_every_task_s_classes() {
    let root = setup("agnostic");
    let mut cfg = config(&root, "ft", 2, 0);
    let aware_dir = root.join("runs/aware");
    assert_eq!(session::run(cfg.clone(), &aware_dir, &opts(), None).unwrap(), Outcome::Finished);
    cfg.train.task_agnostic = true;
    let dir = root.join("runs/agnostic");
    assert_eq!(session::run(cfg, &dir, &opts(), None).unwrap(), Outcome::Finished);
    let (aware, agnostic) = (read_csv(&aware_dir), read_csv(&dir));
    assert_eq!(agnostic.len(), 4);
    // Six classes compete instead of two: never easier than task-aware on the same weights.
    for (a, g) in aware.iter().flatten().zip(agnostic.iter().flatten()) {
        assert!(g <= a, "task-agnostic {g} above task-aware {a}");
    }
}
