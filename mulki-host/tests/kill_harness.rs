//! The kill-and-resume harness (`scripts/kill-harness.sh`): its set-up (the generated image
//! folders, tiny CLIP and run config of `common`) and a short run of it in CI: an uninterrupted
//! reference run, then runs killed by SIGKILL at random moments and resumed (the resumes killed
//! again at random or let finish), and one run aborted at each in-save crash point
//! (`MULKI_CRASH_AT`), each resumed to the reference's accuracy matrix and final weights.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Steps per task and the checkpoint interval of the harness's run: a run takes a few seconds,
/// with periodic checkpoints, a rotation (step 1 deleted after step 3) and a task end per task.
const STEPS: usize = 4;
const EVERY: usize = 1;

/// Writes the run set-up into `dir`: `task*/`, `reference/`, `model/` and `run.toml`.
fn write_setup(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    common::write_datasets(dir);
    common::write_small_model(&dir.join("model"));
    let cfg = common::config_file(dir, "mulki", STEPS, EVERY);
    let run_toml = dir.join("run.toml");
    // One thread: results never depend on it, and the harness runs next to other work.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&run_toml, format!("threads = 1\n{text}")).unwrap();
    std::fs::remove_file(cfg).unwrap();
    run_toml
}

/// Called by `scripts/kill-harness.sh` (ignored in `cargo test`): writes the set-up into
/// `$MULKI_HARNESS_DIR`.
#[test]
#[ignore = "the set-up step of scripts/kill-harness.sh"]
fn write_harness_setup() {
    let dir = std::env::var_os("MULKI_HARNESS_DIR").expect("MULKI_HARNESS_DIR names the set-up folder");
    let cfg = write_setup(Path::new(&dir));
    println!("set-up written: {}", cfg.display());
}

/// The short harness: 5 random SIGKILLs (each resumed, resumes killed again at random) and
/// every crash point, through the same script as the full run.
#[test]
fn kill_harness_short() {
    let root = common::tmp("kill-harness");
    write_setup(&root.join("setup"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kill-harness.sh");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs() % 32768);
    let out = Command::new("bash")
        .arg(&script)
        .args(["--kills", "5", "--seed", &seed.to_string()])
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_mulki"))
        .arg("--setup")
        .arg(root.join("setup"))
        .arg("--work")
        .arg(root.join("work"))
        .output()
        .expect("run scripts/kill-harness.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kill harness failed (seed {seed}):\n{stdout}\n{stderr}");
    let summary = stdout.lines().find(|l| l.starts_with("kills: ")).unwrap_or_default();
    let count = |key: &str| -> usize {
        summary.split(key).nth(1).and_then(|s| s.split(',').next()).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    assert!(count("kills: ") >= 5, "summary: {summary}\n{stdout}");
    assert_eq!(count("crash points: "), 8, "summary: {summary}");
    assert!(summary.ends_with("all resumed runs identical: yes"), "summary: {summary}");
}
