//! `mulki bench step`: throughput of the real training step (`Trainer::step`, preset mulki, task
//! index 1 so both teachers run) on random ViT-B/16 weights, random images and random prompts of
//! a fixed token length, for each K. `bench/gpu_step.py` runs it beside the PyTorch step of
//! `bench/torch_mulki_step.py` and prints the ratio and the model FLOP utilisation.
use std::time::Instant;

use anyhow::{bail, Result};
use mulki_core::backend::Backend;
use mulki_core::clip::init::init_params;
use mulki_core::clip::{ClipConfig, ClipLayout, VisionConfig};
use mulki_core::rng::Rng;
use serde::Serialize;

use crate::cli::BenchStepArgs;
use crate::run::config::RunConfig;
use crate::run::device::Device;
use crate::run::source::{Batch, DataSource, Split};
use crate::run::trainer::{Settled, Trainer};
use crate::tokenizer::Tokenize;

/// Prompts of random ids: BOS, random tokens, EOT at position `len − 1`, padding after it, so
/// every prompt runs the text tower over exactly `len` tokens.
struct RandomPrompts {
    len: usize,
    bos: u32,
    eot: u32,
    vocab: u32,
}

impl Tokenize for RandomPrompts {
    fn tokenize_rows(&self, texts: &[String], context: usize) -> Vec<u32> {
        let mut rng = Rng::new(7);
        let len = self.len.clamp(2, context);
        let mut ids = Vec::with_capacity(texts.len() * context);
        for _ in texts {
            ids.push(self.bos);
            ids.extend((1..len - 1).map(|_| 1 + rng.below(self.vocab as u64 - 3) as u32));
            ids.push(self.eot);
            ids.extend(std::iter::repeat_n(0, context - len));
        }
        ids
    }
    fn pad_id(&self) -> u32 {
        0
    }
}

/// One fixed batch of random images, reused for every step.
struct RandomImages {
    batch: Batch,
}

impl DataSource for RandomImages {
    fn len(&self, _: usize, _: Split) -> usize {
        self.batch.labels.len()
    }
    fn train_batch(&mut self, _: usize, _: usize, _: usize, _: usize) -> Result<Batch> {
        Ok(self.batch.clone())
    }
    fn ordered(&mut self, _: usize, _: Split, _: usize, _: usize) -> Result<Batch> {
        Ok(self.batch.clone())
    }
    fn reference_batch(&mut self, _: usize, _: usize, _: usize) -> Result<Batch> {
        bail!("the step benchmark has no reference set")
    }
    fn reference_captions(&self) -> &[String] {
        &[]
    }
}

/// `vit-b-16` (as `openai/clip-vit-base-patch16`) or `tiny` (for a quick CPU check).
fn model_config(name: &str) -> Result<ClipConfig> {
    Ok(match name {
        "vit-b-16" => ClipConfig {
            vision_config: VisionConfig { patch_size: 16, ..VisionConfig::default() },
            ..ClipConfig::default()
        },
        "tiny" => ClipConfig::tiny(),
        other => bail!("--model {other}: expected `vit-b-16` or `tiny`"),
    })
}

fn run_config(device: &str, k: usize, b: usize) -> Result<RunConfig> {
    let classes: Vec<String> = (0..k).map(|i| format!("\"class {i}\"")).collect();
    let task = |n: usize| {
        format!(
            "[[tasks]]\nname = \"bench{n}\"\nroot = \"bench\"\nclasses = [{}]\ntrain_templates = [\"{{}}\"]\neval_templates = [\"{{}}\"]\n",
            classes.join(", ")
        )
    };
    let text = format!(
        "device = \"{device}\"\n[model]\nsource = \"random\"\n[method]\npreset = \"mulki\"\n[train]\nbatch_size = {b}\niterations = 1000\nlr = 1e-5\neval_batch_size = {b}\n\n{}\n{}",
        task(0),
        task(1)
    );
    Ok(RunConfig::parse(&text, std::path::Path::new("<bench>"))?)
}

/// What one K measured.
#[derive(Debug, Serialize)]
pub struct StepResult {
    pub classes: usize,
    pub batch: usize,
    pub text_len: usize,
    pub steps: usize,
    pub seconds_per_step: f64,
    pub images_per_second: f64,
    /// Device memory in use after the timed steps (all processes; GPU backends only).
    pub device_memory_bytes: Option<u64>,
    /// (kernel, calls, seconds) over the profiled steps, when `--profile`.
    pub profile: Vec<(String, u64, f64)>,
    /// Wall time per profiled step: with the kernels' total it says how much of a step the
    /// device spent idle, waiting for the host (the timing events add a little host work).
    pub profile_seconds_per_step: Option<f64>,
    /// bf16 mode: how the rounded-operand pool served GEMM operands, per profiled step.
    pub rounded_pool: Option<PoolPerStep>,
    /// With CUDA graphs (`--device cuda:…:graphs`): how the timed steps ran as graphs, per step.
    pub graphs: Option<GraphsPerStep>,
}

/// Graph use over the timed steps, per step: `launches` (stretches of work, each one graph),
/// the device `operations` captured in them, and how many graphs were `instantiated` (the rest
/// updated an executable graph of their shape).
#[derive(Debug, Serialize)]
pub struct GraphsPerStep {
    pub launches: f64,
    pub operations: f64,
    pub instantiated: f64,
}

/// Counts (launches, operations, instantiated) of a backend running CUDA graphs.
type GraphCounts = Option<[u64; 3]>;

/// The rounded-operand pool over the profiled steps, per step: `reused` roundings saved,
/// `rounded` into the pool, `produced` (written there by the kernel that wrote their source),
/// `refused` (rounded outside it for want of room), `restarts` (full, started again from empty;
/// more than none means the pool is smaller than a step's operands).
#[derive(Debug, Serialize)]
pub struct PoolPerStep {
    pub capacity_bytes: u64,
    pub reused: f64,
    pub rounded: f64,
    pub produced: f64,
    pub refused: f64,
    pub restarts: f64,
}

/// A count's growth over `steps` steps, per step.
fn per_step(after: u64, before: u64, steps: usize) -> f64 {
    (after - before) as f64 / steps.max(1) as f64
}

/// A timed step must have been applied: a non-finite one fails the bench.
fn applied(settled: Option<Settled>) -> Result<()> {
    match settled {
        Some(Err(nf)) => Err(nf.into()),
        _ => Ok(()),
    }
}

/// Times the steps; `graphs` reads the backend's graph counts (`None` for a backend without).
fn measure<B: Backend<E = f32>>(
    be: B, args: &BenchStepArgs, k: usize, cfg: &ClipConfig, theta0: &[f32], graphs: impl Fn(&B) -> GraphCounts,
) -> Result<(Trainer<B>, RandomImages, StepResult)> {
    let run = run_config(&args.device, k, args.batch)?;
    let t = &cfg.text_config;
    let tok =
        RandomPrompts { len: args.text_len, bos: t.bos_token_id, eot: t.eos_token_id, vocab: t.vocab_size as u32 };
    let mut tr = Trainer::new(be, run, cfg, theta0, &tok, &[])?;
    let side = cfg.vision_config.image_size;
    let mut rng = Rng::new(3);
    let pixels = (0..args.batch * 3 * side * side).map(|_| rng.normal() as f32).collect();
    let labels = (0..args.batch).map(|i| (i % k) as u32).collect();
    let mut data = RandomImages { batch: Batch { pixels, labels, warnings: Vec::new() } };
    tr.begin_task(1, &mut data, true)?;
    for s in 1..=args.warmup {
        applied(tr.step(1, s, &mut data)?)?;
    }
    applied(tr.settle()?)?;
    let counted = graphs(&tr.be);
    let t0 = Instant::now();
    for s in 1..=args.steps {
        applied(tr.step(1, args.warmup + s, &mut data)?)?;
    }
    // Waiting for the last step's values stops the clock after the device finished.
    applied(tr.settle()?)?;
    let sec = t0.elapsed().as_secs_f64() / args.steps.max(1) as f64;
    let per_step = |after, before| per_step(after, before, args.steps);
    let graphs = counted.zip(graphs(&tr.be)).map(|(a, b)| GraphsPerStep {
        launches: per_step(b[0], a[0]),
        operations: per_step(b[1], a[1]),
        instantiated: per_step(b[2], a[2]),
    });
    let result = StepResult {
        classes: k,
        batch: args.batch,
        text_len: args.text_len,
        steps: args.steps,
        seconds_per_step: sec,
        images_per_second: args.batch as f64 / sec,
        device_memory_bytes: tr.be.device_memory(),
        profile: Vec::new(),
        profile_seconds_per_step: None,
        rounded_pool: None,
        graphs,
    };
    Ok((tr, data, result))
}

pub fn run(args: &BenchStepArgs) -> Result<()> {
    let cfg = model_config(&args.model)?;
    let layout = ClipLayout::new(&cfg);
    let theta0 = init_params::<f32>(&cfg, &layout, 1);
    let device = Device::parse(&args.device)?;
    let mut results = Vec::new();
    for &k in &args.classes {
        let r = match device {
            Device::Cpu => {
                let be = mulki_core::cpu::CpuBackend::<f32>::new(super::threads(args.threads));
                measure(be, args, k, &cfg, &theta0, |_| None)?.2
            }
            #[cfg(feature = "cuda")]
            Device::Cuda { ordinal, precision, graphs } => {
                let be = crate::run::device::cuda_backend(ordinal, precision, graphs)?;
                let counts =
                    |be: &mulki_cuda::CudaBackend| be.graph_use().map(|g| [g.launches, g.operations, g.instantiated]);
                let (mut tr, mut data, mut r) = measure(be, args, k, &cfg, &theta0, counts)?;
                if args.profile {
                    tr.be.set_profiling(true)?;
                    let pool_before = tr.be.pool_use();
                    let first = args.warmup + args.steps + 1;
                    let t0 = Instant::now();
                    for s in first..first + args.steps {
                        applied(tr.step(1, s, &mut data)?)?;
                    }
                    applied(tr.settle()?)?;
                    r.profile_seconds_per_step = Some(t0.elapsed().as_secs_f64() / args.steps.max(1) as f64);
                    r.profile = tr.be.profile()?.into_iter().map(|(n, c, s)| (n.to_string(), c, s)).collect();
                    let per_step = |after, before| per_step(after, before, args.steps);
                    r.rounded_pool = tr.be.pool_use().map(|a| {
                        let b = pool_before.unwrap_or_default();
                        PoolPerStep {
                            capacity_bytes: a.capacity_bytes,
                            reused: per_step(a.reused, b.reused),
                            rounded: per_step(a.rounded, b.rounded),
                            produced: per_step(a.produced, b.produced),
                            refused: per_step(a.refused, b.refused),
                            restarts: per_step(a.restarts, b.restarts),
                        }
                    });
                }
                r
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda { .. } => bail!("this mulki was built without CUDA (cargo feature `cuda`)"),
        };
        if !args.json {
            println!(
                "{} K={:<4} B={} text {} tokens: {:.1} ms/step, {:.1} images/s{}",
                device.label(),
                k,
                r.batch,
                r.text_len,
                1e3 * r.seconds_per_step,
                r.images_per_second,
                r.device_memory_bytes
                    .map_or(String::new(), |m| format!(", device memory {:.2} GiB", m as f64 / 1073741824.0))
            );
            let total: f64 = r.profile.iter().map(|p| p.2).sum();
            if let Some(wall) = r.profile_seconds_per_step {
                let busy = total / args.steps.max(1) as f64;
                println!(
                    "    kernels {:.1} ms of {:.1} ms per profiled step: the device is busy {:.0}% of the time",
                    1e3 * busy,
                    1e3 * wall,
                    100.0 * busy / wall
                );
            }
            if let Some(g) = &r.graphs {
                println!(
                    "    CUDA graphs per step: {:.1} launched, of {:.0} operations in all; {:.1} instantiated, the rest updated",
                    g.launches, g.operations, g.instantiated
                );
            }
            if let Some(p) = &r.rounded_pool {
                println!(
                    "    rounded-operand pool {:.2} GiB, per step: {:.0} roundings saved, {:.0} rounded into the pool, {:.0} written there by their producer, {:.0} outside it, {:.1} restarts",
                    p.capacity_bytes as f64 / 1073741824.0,
                    p.reused,
                    p.rounded,
                    p.produced,
                    p.refused,
                    p.restarts
                );
            }
            for (name, calls, s) in &r.profile {
                println!(
                    "    {name:<36} {calls:>7} calls {:>9.2} ms/step {:>5.1}%",
                    1e3 * s / args.steps as f64,
                    100.0 * s / total
                );
            }
        }
        results.push(r);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(())
}
