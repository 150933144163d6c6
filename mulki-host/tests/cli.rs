//! The `mulki` binary: every subcommand's help and one run of each, exit codes, and stopping a
//! run by SIGTERM (clean exit 143 with a checkpoint) or SIGKILL, then resuming to the result an
//! uninterrupted run gives.
mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{config_file, final_weights, setup};

fn mulki(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mulki")).args(args).output().expect("run mulki")
}

fn ok(args: &[&str]) -> String {
    let out = mulki(args);
    assert!(out.status.success(), "mulki {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_subcommand_has_help_with_its_defaults() {
    let top = ok(&["--help"]);
    for sub in
        ["train", "eval", "zero-shot", "demo", "pretrain", "config", "report", "inspect", "data", "embed", "bench"]
    {
        assert!(top.contains(sub), "top-level help lacks {sub}");
    }
    for sub in [
        &["train"][..],
        &["demo"],
        &["pretrain"],
        &["config"],
        &["report"],
        &["inspect"],
        &["data", "check"],
        &["embed"],
        &["bench", "cpu"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let help = ok(&args);
        assert!(help.contains("Usage"), "{sub:?}: {help}");
    }
    assert!(ok(&["demo", "--help"]).contains("default 150"));
    assert!(ok(&["pretrain", "--help"]).contains("default 4000"));
    // A usage error is exit code 2.
    assert_eq!(mulki(&["train"]).status.code(), Some(2));
}

#[test]
fn each_subcommand_runs_once() {
    let root = setup("cli");
    let cfg = config_file(&root, "mulki", 2, 1);
    let cfg = cfg.to_str().unwrap();
    let run = root.join("run");
    let run_s = run.to_str().unwrap();
    ok(&["train", "--config", cfg, "--output", run_s, "--quiet"]);
    assert!(run.join("report.md").is_file());
    assert!(ok(&["report", run_s]).contains("Transfer"));
    assert!(ok(&["inspect", run_s]).contains("task 3"));
    assert!(ok(&["config", "--print", "zscl"]).contains("preset = \"zscl\""));
    assert!(ok(&["zero-shot", "--config", cfg]).contains("mean"));
    let last = mulki_host::checkpoint::task_end(&run, 2).unwrap();
    assert!(ok(&["eval", "--config", cfg, "--checkpoint", last.to_str().unwrap()]).contains("mean"));
    // Resuming with another config is refused, naming the differing keys; --force overrides.
    let other = root.join("other.toml");
    std::fs::write(&other, std::fs::read_to_string(cfg).unwrap().replace("lr = 1e-3", "lr = 2e-3")).unwrap();
    let refused = mulki(&["train", "--config", other.to_str().unwrap(), "--output", run_s, "--quiet"]);
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(refused.status.code() == Some(3) && msg.contains("train.lr") && msg.contains("--force"), "{msg}");
    ok(&["train", "--config", other.to_str().unwrap(), "--output", run_s, "--quiet", "--force"]);
    assert!(ok(&["data", "check", "--config", cfg]).contains("task"));
    let model = root.join("model");
    let img = root.join("task0/test/red/0.png");
    let emb =
        ok(&["embed", "--model", model.to_str().unwrap(), "--image", img.to_str().unwrap(), "--text", "a red thing"]);
    assert!(emb.contains("cosine similarity"), "{emb}");
    let tiny = root.join("tiny");
    ok(&["pretrain", "--out", tiny.to_str().unwrap(), "--steps", "2", "--batch", "4", "--quiet"]);
    assert!(tiny.join("pretrain.json").is_file());
    let demo = root.join("demo");
    let out = ok(&[
        "demo",
        "--model",
        tiny.to_str().unwrap(),
        "--out",
        demo.to_str().unwrap(),
        "--steps",
        "2",
        "--test-images",
        "8",
        "--methods",
        "zero-shot,ft,mulki",
        "--quiet",
    ]);
    assert!(out.contains("| mulki |"), "{out}");
    assert!(ok(&[
        "bench",
        "cpu",
        "--no-torch",
        "--vit-batch",
        "1",
        "--iters",
        "1",
        "--tiny-batch",
        "4",
        "--gemm-n",
        "64"
    ])
    .contains("GEMM"));
    // Invalid input data: exit code 3, naming the file.
    let bad = mulki(&["train", "--config", root.join("missing.toml").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing.toml"));
}

/// Starts `mulki train`, waits until its first checkpoint exists (plus `extra`), signals it.
fn interrupted(cfg: &str, run: &Path, signal: &str, extra: Duration) -> std::process::ExitStatus {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mulki"))
        .args(["train", "--config", cfg, "--output", run.to_str().unwrap(), "--quiet"])
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !run.join("task-00").exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(extra);
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    child.wait().unwrap()
}

#[test]
fn sigterm_and_sigkill_stop_a_run_that_then_resumes_exactly() {
    let root = setup("signals");
    let cfg = config_file(&root, "mulki", 6, 2);
    let cfg = cfg.to_str().unwrap();
    let full = root.join("full");
    ok(&["train", "--config", cfg, "--output", full.to_str().unwrap(), "--quiet"]);

    let term = root.join("term");
    let status = interrupted(cfg, &term, "-TERM", Duration::from_millis(0));
    if status.success() {
        eprintln!("note: the run finished before SIGTERM arrived; only the resume is checked");
    } else {
        assert_eq!(status.code(), Some(143), "SIGTERM exit: {status:?}");
    }
    ok(&["train", "--config", cfg, "--output", term.to_str().unwrap(), "--quiet"]);
    assert!(final_weights(&term) == final_weights(&full), "weights after SIGTERM + resume");

    // Random moments after the first checkpoint (printed on failure), plus fixed early and late.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let random = 20 + u64::from(nanos % 500);
    for (i, delay) in [30u64, random, 400].iter().enumerate() {
        let kill = root.join(format!("kill-{i}"));
        let status = interrupted(cfg, &kill, "-KILL", Duration::from_millis(*delay));
        assert!(status.success() || status.signal() == Some(9), "SIGKILL exit: {status:?}");
        ok(&["train", "--config", cfg, "--output", kill.to_str().unwrap(), "--quiet"]);
        assert!(final_weights(&kill) == final_weights(&full), "weights after SIGKILL at +{delay} ms + resume");
        assert_eq!(
            std::fs::read_to_string(kill.join("accuracy.csv")).unwrap(),
            std::fs::read_to_string(full.join("accuracy.csv")).unwrap()
        );
    }
}
