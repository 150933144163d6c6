//! `mulki demo`: the built-in synthetic MTIL. Every method runs over the same task stream with
//! the same shared knobs, starting from the shipped tiny CLIP; each run is an ordinary run
//! directory (checkpoints, reports), and the demo prints the matrices and a summary table.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mulki_core::method::MethodConfig;

use super::config::{DatasetFormat, ModelConfig, ReferenceConfig, RunConfig, TaskConfig, TrainConfig};
use super::progress::Progress;
use super::session::{run_with, SessionOptions};
use crate::import::load_clip_dir;
use crate::report::{self, RunReport};
use crate::synth::source::{SynthSource, REFERENCE_SIZE};
use crate::synth::tasks::{default_stream, StreamSize, TaskSpec};
use crate::synth::vocab::WordVocab;

/// The methods the demo compares, in report order.
pub const DEMO_METHODS: [&str; 6] = ["zero-shot", "ft", "lwf", "wise-ft", "zscl", "mulki"];

/// The shipped tiny CLIP (`assets/synth-clip`), built into the binary so `mulki demo` runs from
/// any directory, and from a copied or installed binary.
const SHIPPED_MODEL: [(&str, &[u8]); 3] = [
    ("config.json", include_bytes!("../../../assets/synth-clip/config.json")),
    ("model.safetensors", include_bytes!("../../../assets/synth-clip/model.safetensors")),
    ("pretrain.json", include_bytes!("../../../assets/synth-clip/pretrain.json")),
];

/// Writes the shipped model into `dir` and returns `dir`, for runs whose configs name it. Files
/// already there with the same bytes are kept; others are replaced whole (written aside, then
/// renamed), so a demo interrupted here leaves no half-written model.
pub fn write_shipped_model(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for (name, bytes) in SHIPPED_MODEL {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|have| have == bytes) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// The knobs every method shares, set once (see the README for how they were chosen).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedKnobs {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// λ_C for the methods that use the L2 connection (zscl, mulki).
    pub lambda_c: f64,
    /// Distillation temperature T (MulKI's relations, LwF, ZSCL).
    pub temperature: f64,
}

impl SharedKnobs {
    pub fn new(quick: bool) -> Self {
        SharedKnobs { steps: if quick { 25 } else { 150 }, batch: 32, lr: 3e-4, lambda_c: 0.01, temperature: 2.0 }
    }
}

/// The run config of one method on the synthetic stream.
pub fn demo_config(
    method: &str, seed: u64, knobs: SharedKnobs, model: &Path, tasks: &[TaskSpec], threads: usize,
) -> Result<RunConfig> {
    let preset = MethodConfig::preset(method)?;
    let mut table = toml::Table::new();
    table.insert("preset".into(), toml::Value::String(method.into()));
    if preset.lambda_c != 0.0 {
        table.insert("lambda_c".into(), toml::Value::Float(knobs.lambda_c));
    }
    for key in ["temperature", "lwf_temperature", "zscl_temperature"] {
        table.insert(key.into(), toml::Value::Float(knobs.temperature));
    }
    let tasks = tasks
        .iter()
        .map(|t| TaskConfig {
            name: t.name.clone(),
            root: PathBuf::from("synthetic"),
            format: DatasetFormat::ImageFolder,
            train_split: "train".into(),
            test_split: "test".into(),
            classes: t.classes.clone(),
            folders: None,
            train_templates: t.train_templates.clone(),
            eval_templates: t.eval_templates.clone(),
            lr: None,
            iterations: None,
        })
        .collect();
    let reference = (preset.lambda_zscl != 0.0).then(|| ReferenceConfig {
        images: PathBuf::from("synthetic"),
        captions: PathBuf::from("synthetic"),
        batch_size: knobs.batch,
    });
    let cfg = RunConfig {
        seed,
        output_dir: None,
        threads,
        device: "cpu".into(),
        model: ModelConfig { source: model.to_path_buf(), tokenizer: None },
        method: table,
        train: TrainConfig {
            batch_size: knobs.batch,
            iterations: knobs.steps,
            lr: knobs.lr,
            // The training batch: activations are sized for the largest batch and a step zeroes
            // their gradients, so a larger evaluation batch would cost every step.
            eval_batch_size: knobs.batch,
            ..TrainConfig::default()
        },
        reference,
        tasks,
    };
    let text = toml::to_string(&cfg)?;
    Ok(RunConfig::parse(&text, Path::new("<demo>"))?)
}

/// Images per task: [`StreamSize::FULL`], or [`StreamSize::QUICK`] under `--quick`.
pub fn stream_size(quick: bool) -> StreamSize {
    if quick {
        StreamSize::QUICK
    } else {
        StreamSize::FULL
    }
}

/// Runs `methods` for every seed into `out/seed-S/METHOD`; returns the reports per method.
#[allow(clippy::too_many_arguments)]
pub fn run_demo(
    model: &Path, out: &Path, methods: &[&str], seeds: &[u64], knobs: SharedKnobs, size: StreamSize, threads: usize,
    quiet: bool,
) -> Result<Vec<(String, Vec<RunReport>)>> {
    let theta0 = load_clip_dir(model)?;
    let vocab = WordVocab::new();
    let tasks = default_stream(size);
    let side = theta0.config.vision_config.image_size;
    let mut results: Vec<(String, Vec<RunReport>)> = methods.iter().map(|m| (m.to_string(), Vec::new())).collect();
    for &seed in seeds {
        // Every method starts from the same model on the same test images: evaluated once.
        let mut zero_shot_row = None;
        for (i, method) in methods.iter().enumerate() {
            let cfg = demo_config(method, seed, knobs, model, &tasks, threads)?;
            let trains = cfg.method().map_err(anyhow::Error::msg)?.train;
            let dir = out.join(format!("seed-{seed}")).join(method);
            let mut data = SynthSource::with_reference(tasks.clone(), seed, side, REFERENCE_SIZE);
            std::fs::create_dir_all(&dir)?;
            let mut progress = Progress::new(quiet, Some(&dir.join("log.jsonl")))?;
            if !quiet {
                eprintln!("== seed {seed}, {method}");
            }
            let opts = SessionOptions { quiet, zero_shot_row: zero_shot_row.clone(), ..SessionOptions::default() };
            run_with(cfg, &dir, &opts, None, &theta0, &vocab, &mut data, threads, &mut progress)?;
            let mut rep = report::read_run(&dir)?;
            zero_shot_row.get_or_insert_with(|| rep.rows[0].clone());
            if !trains {
                rep = rep.untrained();
            }
            if !quiet {
                print_matrix(&rep);
            }
            results[i].1.push(rep);
        }
    }
    Ok(results)
}

/// The accuracy matrix of one run, as a small text table.
pub fn print_matrix(rep: &RunReport) {
    let w = rep.task_names.iter().map(|n| n.len()).max().unwrap_or(8).max(8);
    print!("{:<16}", rep.method);
    for n in &rep.task_names {
        print!(" {n:>w$}");
    }
    println!();
    for (i, row) in rep.rows.iter().enumerate() {
        let label = if i == 0 { "zero-shot".to_string() } else { format!("after {}", rep.task_names[i - 1]) };
        print!("{:<16}", label.chars().take(16).collect::<String>());
        for a in row {
            print!(" {a:>w$.1}");
        }
        println!();
    }
    println!();
}
