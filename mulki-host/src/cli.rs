//! The command line, as clap derive structs only. Each help text states its default and unit.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mulki: continual learning of CLIP models without forgetting (MulKI), in Rust.
#[derive(Parser, Debug)]
#[command(name = "mulki", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The built-in synthetic benchmark: every method over a stream of 6 tasks, in minutes.
    Demo(DemoArgs),
    /// Pretrain the built-in tiny CLIP on the synthetic caption stream.
    Pretrain(PretrainArgs),
    /// Train a continual run from a TOML config (resumes an existing run directory).
    Train(TrainArgs),
    /// Accuracy of a checkpoint on every task of a config.
    Eval(EvalArgs),
    /// Zero-shot accuracy of the config's model on every task (no training).
    ZeroShot(EvalArgs),
    /// Print a complete default run config for a method preset.
    Config(ConfigArgs),
    /// Regenerate and compare run reports.
    Report(ReportArgs),
    /// Show a checkpoint: header, config, task, step, metrics so far.
    Inspect(InspectArgs),
    /// Dataset tools.
    #[command(subcommand)]
    Data(DataCommand),
    /// Print image and text embeddings of a CLIP model and their similarities.
    Embed(EmbedArgs),
    /// Speed benchmarks, side by side with PyTorch where it is installed.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// HF CLIP folder: config.json + model.safetensors (+ vocab.json and merges.txt for text).
    #[arg(long)]
    pub model: PathBuf,
    /// An image file (png or jpeg); repeat for several.
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// A text; repeat for several.
    #[arg(long = "text", value_name = "STRING")]
    pub texts: Vec<String>,
    /// The original OpenAI BPE file (bpe_simple_vocab_16e6.txt.gz), used instead of the folder's
    /// vocab.json + merges.txt.
    #[arg(long, value_name = "FILE")]
    pub bpe: Option<PathBuf>,
    /// Print every embedding value (default: the first 8 of each normalised embedding).
    #[arg(long)]
    pub full: bool,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// CPU: FMA peak, GEMM GFLOP/s, ViT-B/16 forward and tiny training step images/s.
    Cpu(BenchCpuArgs),
    /// The whole MulKI training step (both teachers) on random ViT-B/16 weights, per K, on any
    /// device; `bench/gpu_step.py` puts it beside PyTorch.
    Step(BenchStepArgs),
}

#[derive(Args, Debug)]
pub struct BenchStepArgs {
    /// Device: `cpu` or `cuda[:N][:bf16|:fast-bf16|:fp32][:graphs]` (`graphs`: the work runs as
    /// CUDA graphs, except under `--profile`, whose per-kernel events a graph cannot hold).
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Classes per task (one run each).
    #[arg(long, num_args = 1.., default_values_t = [100, 397])]
    pub classes: Vec<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Tokens per prompt (random ids ending in EOT; CLIP's context is 77).
    #[arg(long, default_value_t = 77)]
    pub text_len: usize,
    /// `vit-b-16` or `tiny`.
    #[arg(long, default_value = "vit-b-16")]
    pub model: String,
    /// Timed steps per K.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Then run the steps again with per-kernel timing (CUDA) and print the breakdown.
    #[arg(long)]
    pub profile: bool,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchCpuArgs {
    /// Threads for mulki and for PyTorch (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Images per ViT-B/16 forward pass (default 4).
    #[arg(long, default_value_t = 4)]
    pub vit_batch: usize,
    /// Images per tiny-model training step (default 32).
    #[arg(long, default_value_t = 32)]
    pub tiny_batch: usize,
    /// Side of the square GEMM (default 1024).
    #[arg(long, default_value_t = 1024)]
    pub gemm_n: usize,
    /// Timed repetitions of the ViT forward (default 3; the tiny step runs 10× as many).
    #[arg(long, default_value_t = 3)]
    pub iters: usize,
    /// Python with torch (and transformers) for the reference column (default: python3).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip the PyTorch column.
    #[arg(long)]
    pub no_torch: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The run config (TOML); see `mulki config --print mulki`.
    #[arg(long)]
    pub config: PathBuf,
    /// Run directory for checkpoints and reports (default: the config's `output_dir`, else
    /// `runs/<config file stem>`). An existing run there is resumed.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Resume the run in this directory (same as `--output DIR` on an existing run).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// CPU threads (default: the config's `threads`, 0 = all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Device: `cpu` (default: the config's `device`) or `cuda[:N][:bf16|:fast-bf16|:fp32][:graphs]`
    /// (GPU N, default 0; tower GEMMs in bf16 unless `:fp32`; `fast-bf16` lets cuBLAS round
    /// inside the GEMM; `graphs` runs the work as CUDA graphs).
    #[arg(long)]
    pub device: Option<String>,
    /// Evaluate over every dataset's classes at once (default: each dataset's own classes).
    #[arg(long)]
    pub task_agnostic: bool,
    /// Resume even if the checkpoint was made with another config.
    #[arg(long)]
    pub force: bool,
    /// Replace unreadable images by the next readable one (with a warning) instead of failing.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Skip up to N batches whose loss is NaN or infinite instead of stopping (default 0).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub skip_nonfinite: usize,
    /// No progress output (the JSON-lines log in the run directory is still written).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Print a complete run config with this method preset (zero-shot, ft, lwf, wise-ft, zscl,
    /// mulki, mulki-no-ei, mulki-no-rel, mulki-no-dual, mulki-no-weight, mulki-no-conn).
    #[arg(long, value_name = "PRESET")]
    pub print: String,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Run directories (each with accuracy.csv); several are put side by side.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Regenerate each run's report.md, metrics.json and heat-map from its accuracy.csv.
    #[arg(long)]
    pub rewrite: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A checkpoint directory (`task-TT/step-NNNNNN`) or a run directory (its newest
    /// checkpoint).
    pub checkpoint: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Check every dataset of a config: layout, class folders, split sizes.
    Check(DataCheckArgs),
}

#[derive(Args, Debug)]
pub struct DataCheckArgs {
    /// The run config whose tasks are checked.
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// Where to write the HF folder (config.json, model.safetensors) and pretrain.json.
    #[arg(long, default_value = "assets/synth-clip")]
    pub out: PathBuf,
    /// Optimiser steps (default 4000).
    #[arg(long, default_value_t = 4000)]
    pub steps: usize,
    /// Image–caption pairs per step (default 128).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Peak learning rate of the warm-up + cosine schedule (default 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Warm-up steps (default 200).
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Seed of the initialisation and the data stream (default 0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// An HF tokenizer folder (vocab.json, merges.txt, e.g. fixtures/tokenizer): the model uses
    /// this CLIP BPE vocabulary (context 24) instead of the synthetic world's 64 words, and the
    /// two files are copied beside the weights (default: the world's words).
    #[arg(long, value_name = "DIR")]
    pub tokenizer: Option<PathBuf>,
    /// A TSV of `image-path<TAB>caption` lines (paths relative to the file), e.g. the
    /// `pairs.tsv` of scripts/get-offline-data.sh: a quarter of every batch is drawn from it
    /// (default: synthetic captions only).
    #[arg(long, value_name = "FILE")]
    pub pairs: Option<PathBuf>,
    /// CPU threads (default: all cores; results do not depend on it).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress output.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Shorter run: 25 steps per task, 1,000 training and 250 test images per task (default: 150 steps, 3,000 and 1,000 images).
    #[arg(long)]
    pub quick: bool,
    /// Seeds to repeat over (1..=N); the table then shows mean ± sample std (default 1).
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// The first seed (seeds are FIRST..FIRST+N−1). The shared knobs were chosen on seed 100,
    /// which the README's tables do not use.
    #[arg(long, default_value_t = 1, value_name = "FIRST")]
    pub first_seed: u64,
    /// Methods to run, comma-separated (default: zero-shot,ft,lwf,wise-ft,zscl,mulki; any
    /// preset, e.g. the mulki-no-* ablations, may be listed).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// The pretrained tiny CLIP (default: the shipped one, built into mulki and written to
    /// OUT/synth-clip for the runs' configs to name).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where the runs and the summary go (default runs/demo).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// CPU threads (default: all cores; results do not depend on it).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Only the final table.
    #[arg(long)]
    pub quiet: bool,
    /// Steps per task (default 150, 40 with --quick).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Test images per task (default 1000, 250 with --quick).
    #[arg(long)]
    pub test_images: Option<usize>,
    /// Learning rate of every method (default 3e-4, the shared knob; for choosing it on an
    /// unreported seed).
    #[arg(long)]
    pub lr: Option<f64>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The run config whose tasks are evaluated (their test splits).
    #[arg(long)]
    pub config: PathBuf,
    /// A checkpoint directory (`task-TT/step-NNNNNN`) or an HF CLIP folder; `mulki zero-shot`
    /// uses the config's model.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Device: `cpu` (default: the config's `device`) or `cuda[:N][:bf16|:fast-bf16|:fp32][:graphs]`.
    #[arg(long)]
    pub device: Option<String>,
    /// Replace unreadable images by the next readable one (with a warning) instead of failing.
    #[arg(long)]
    pub skip_bad_images: bool,
}
