//! `mulki train --device cuda` end to end on the CUDA emulator (`mulki-cuda-emulator`, loaded
//! into the binary with `LD_PRELOAD`): three tasks of preset mulki on generated folders and a
//! tiny model, in fp32 against `--device cpu` (accuracy matrix and metrics), and in bf16, with
//! device memory equal after every task; and a run aborted right after its first checkpoint,
//! resumed, to the same weights; a non-finite step skipped on the device, leaving every
//! checkpointed buffer as it was; and `mulki bench step --profile` in each GPU precision, as the
//! GPU session runs it. Skipped, saying why, where the emulator is not supported.
mod common;

use std::path::Path;
use std::process::Command;

use mulki_core::backend::Precision;

use common::{
    assert_skipped_steps_kept, config_file, files, final_weights, read_csv, tmp, write_datasets, write_small_model,
    Scratch,
};

/// `mulki ARGS --device DEVICE`, on the emulator unless `cpu`.
fn mulki_on(device: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mulki"));
    cmd.args(args).args(["--device", device]);
    if device != "cpu" {
        let libs: Vec<String> = mulki_cuda_emulator::library_paths().iter().map(|p| p.display().to_string()).collect();
        cmd.env("LD_PRELOAD", libs.join(":"));
    }
    cmd
}

/// `mulki train` on `device`.
fn train_command(cfg: &Path, out: &Path, device: &str) -> Command {
    mulki_on(device, &["train", "--config", cfg.to_str().unwrap(), "--output", out.to_str().unwrap(), "--quiet"])
}

/// Runs `mulki train` on `device`; panics with its output on failure.
fn train(cfg: &Path, out: &Path, device: &str) {
    let o = train_command(cfg, out, device).output().expect("run mulki");
    assert!(
        o.status.success(),
        "mulki train --device {device}: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Generated task folders and the small model in a scratch folder, or `None` after saying why
/// the test is skipped.
fn setup(name: &str) -> Option<Scratch> {
    if let Some(why) = mulki_cuda_emulator::unavailable() {
        println!("skipped: {why}");
        return None;
    }
    let root = tmp(name);
    write_datasets(&root);
    write_small_model(&root.join("model"));
    Some(root)
}

fn metrics(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap()
}

/// lr = 1e30 (as in `faults.rs`): step 1 throws the weights to ~1e30 and later steps are NaN.
/// AdamW and the prototype EMA skip them on the device (the health value), the host learns it a
/// step later: the run stops at step 2 with step 1's checkpoint the newest; resumed with
/// `--skip-nonfinite 2`, the checkpoints after steps 2 and 3 hold step 1's weights, AdamW
/// moments, ensemble, prototypes and θ_{t−1} byte for byte, and step 4 fails.
#[test]
fn a_non_finite_step_is_skipped_on_the_emulated_gpu() {
    let Some(root) = setup("cuda-emulated-nan") else { return };
    let base = std::fs::read_to_string(config_file(&root, "mulki", 4, 1)).unwrap();
    let cfg = root.join("nan.toml");
    std::fs::write(&cfg, base.replace("lr = 1e-3", "lr = 1e30")).unwrap();
    let run = root.join("run");
    let args = ["train", "--config", cfg.to_str().unwrap(), "--output", run.to_str().unwrap(), "--quiet"];
    let fails_at = |skip: &str, step: usize| {
        let o = mulki_on("cuda:0:fp32", &args).args(["--skip-nonfinite", skip]).output().expect("run mulki");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("error: non-finite loss at task 1, step {step}, in term `ce`")), "{err}");
    };
    fails_at("0", 2);
    let good = files(&run.join("task-00/step-000001"));
    fails_at("2", 4);
    assert_skipped_steps_kept(&run, &good);
}

#[test]
fn train_on_the_emulated_gpu_matches_the_cpu_and_keeps_memory_constant() {
    let Some(root) = setup("cuda-emulated") else { return };
    let cfg = config_file(&root, "mulki", 3, 0);
    let runs = ["cpu", "cuda:0:fp32", "cuda:0:bf16", "cuda:0:fp32:graphs"].map(|d| (d, root.join(d.replace(':', "-"))));
    for (device, out) in &runs {
        train(&cfg, out, device);
    }
    let cpu = read_csv(&runs[0].1);
    for (device, out) in &runs[1..] {
        let acc = read_csv(out);
        println!("{device}: {acc:?}\ncpu: {cpu:?}");
        assert_eq!(acc.len(), cpu.len(), "{device}: accuracy rows");
        let m = metrics(out);
        let memory: Vec<u64> =
            m["per_task"].as_array().unwrap().iter().map(|t| t["device_memory_bytes"].as_u64().unwrap()).collect();
        println!("{device}: device memory after each task {memory:?}");
        assert_eq!(memory.len(), 3);
        assert!(memory.windows(2).all(|w| w[0] == w[1]), "{device}: device memory changed across tasks {memory:?}");
        if *device == "cuda:0:fp32" {
            assert_eq!(acc, cpu, "{device}: accuracy matrix off the CPU run's");
            let mc = metrics(&runs[0].1);
            for k in ["transfer", "avg", "last", "bwt"] {
                assert_eq!(m[k], mc[k], "{device}: {k}");
            }
            // The accuracies of so short a run are at chance; the last loss of each task and the
            // weights' drift are not.
            for (t, (a, b)) in
                m["per_task"].as_array().unwrap().iter().zip(mc["per_task"].as_array().unwrap()).enumerate()
            {
                for k in ["final_loss", "drift"] {
                    let (x, y) = (a[k].as_f64().unwrap(), b[k].as_f64().unwrap());
                    println!("task {t} {k}: {device} {x} cpu {y}");
                    assert!((x - y).abs() <= 1e-4 * y.abs() + 1e-6, "task {t} {k}: {device} {x}, cpu {y}");
                }
            }
        } else if *device == "cuda:0:fp32:graphs" {
            // The same work as CUDA graphs: the same bits, evaluation and checkpoints included.
            assert_eq!(acc, read_csv(&runs[1].1), "{device}: accuracy matrix off the run without graphs");
            let last = |run: &Path| {
                let (found, _) = mulki_host::checkpoint::find_latest(run, None).unwrap();
                let dir = found.expect("a checkpoint").dir;
                ["model.safetensors", "state.safetensors"].map(|f| mulki_host::checkpoint::load_file(&dir, f).unwrap())
            };
            assert!(last(out) == last(&runs[1].1), "{device}: weights or optimiser state off the run without graphs");
        } else {
            assert!(acc.iter().flatten().all(|a| (0.0..=100.0).contains(a)), "{device}: {acc:?}");
        }
    }
}

#[test]
fn a_run_on_the_emulated_gpu_aborted_after_a_checkpoint_resumes_exactly() {
    let Some(root) = setup("cuda-emulated-resume") else { return };
    let cfg = config_file(&root, "mulki", 3, 1);
    let device = "cuda:0:fp32";
    let (full, aborted) = (root.join("full"), root.join("aborted"));
    train(&cfg, &full, device);
    // Aborts (SIGABRT) once the first checkpoint has its final name: task 1, step 1.
    let status = train_command(&cfg, &aborted, device)
        .env(mulki_host::checkpoint::CRASH_ENV, "after-rename")
        .status()
        .expect("run mulki");
    assert!(!status.success(), "the run was to abort at its first checkpoint: {status:?}");
    train(&cfg, &aborted, device);
    assert!(final_weights(&aborted) == final_weights(&full), "weights after abort + resume on {device}");
    assert_eq!(read_csv(&aborted), read_csv(&full));
}

#[test]
fn bench_step_profiles_each_gpu_precision_on_the_emulated_gpu() {
    if let Some(why) = mulki_cuda_emulator::unavailable() {
        println!("skipped: {why}");
        return;
    }
    for precision in Precision::ALL {
        let device = format!("cuda:0:{}", precision.name());
        let args = ["bench", "step", "--model", "tiny", "--classes", "4", "--batch", "8", "--text-len", "8"];
        let o = mulki_on(&device, &args)
            .args(["--steps", "1", "--warmup", "1", "--profile", "--json"])
            .output()
            .expect("run mulki");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{device}: {out}\n{}", String::from_utf8_lossy(&o.stderr));
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        let row = &rows[0];
        assert!(row["images_per_second"].as_f64().is_some_and(|v| v > 0.0), "{device}: {row}");
        let gemm = match precision {
            Precision::Fp32 => "cublas_gemm_f32",
            Precision::Bf16 => "cublas_gemm_bf16",
            Precision::FastBf16 => "cublas_gemm_fast_bf16",
        };
        let profiled: Vec<&str> = row["profile"].as_array().unwrap().iter().filter_map(|p| p[0].as_str()).collect();
        println!("{device}: {profiled:?}");
        assert!(profiled.contains(&gemm), "{device}: no {gemm} in the profile {profiled:?}");
        // Attention: in bf16 mode (tiny's heads of 16) the fused kernels, otherwise batched GEMMs
        // shown apart from the others.
        let heads = format!("{gemm}_batched");
        let attention: &[&str] = match precision {
            Precision::Bf16 => {
                &["attention_fused_forward", "attention_fused_backward_dq", "attention_fused_backward_dkv"]
            }
            _ => &[&heads],
        };
        for k in attention {
            assert!(profiled.contains(k), "{device}: no {k} in the profile {profiled:?}");
        }
        assert!(profiled.contains(&"layer_norm_forward_f32"), "{device}: {profiled:?}");
        let kernels: f64 = row["profile"].as_array().unwrap().iter().filter_map(|p| p[2].as_f64()).sum();
        let wall = row["profile_seconds_per_step"].as_f64().unwrap_or(0.0);
        assert!(kernels > 0.0 && wall > 0.0, "{device}: kernels {kernels} s, wall {wall} s per profiled step");
        // Only bf16 mode rounds through the pool; on this small step it saves roundings and
        // holds every operand.
        let pool = &row["rounded_pool"];
        if precision == Precision::Bf16 {
            let per_step = |k: &str| pool[k].as_f64().unwrap_or(f64::NAN);
            assert!(per_step("reused") > 0.0 && per_step("rounded") > 0.0, "{device}: {pool}");
            assert!(per_step("produced") > 0.0, "{device}: {pool}");
            assert!(per_step("refused") == 0.0 && per_step("restarts") == 0.0, "{device}: {pool}");
        } else {
            assert!(pool.is_null(), "{device}: a pool in {precision:?} mode: {pool}");
        }
        assert!(row["graphs"].is_null(), "{device}: graphs without `:graphs`: {}", row["graphs"]);
    }
    // With graphs, the timed steps run as graphs and say how.
    let args = ["bench", "step", "--model", "tiny", "--classes", "4", "--batch", "8", "--text-len", "8"];
    let o = mulki_on("cuda:0:bf16:graphs", &args).args(["--steps", "2", "--warmup", "1", "--json"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let graphs = &rows[0]["graphs"];
    println!("graphs per step: {graphs}");
    let per_step = |k: &str| graphs[k].as_f64().unwrap_or(f64::NAN);
    assert!(per_step("launches") >= 1.0 && per_step("operations") > 10.0 * per_step("launches"), "{graphs}");
}
