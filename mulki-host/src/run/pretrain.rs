//! Contrastive pretraining of the built-in tiny CLIP on the synthetic caption stream, with soft
//! targets (a caption matches every image it describes). Deterministic: the data are a function
//! of (seed, step) and the CPU backend gives the same bits for any thread count, so the same
//! command on a CPU with the same SIMD level reproduces the shipped weights bit for bit.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use mulki_core::backend::Backend;
use mulki_core::clip::init::init_params;
use mulki_core::clip::{Capacity, Clip, ClipConfig, ClipLayout, TextConfig, VisionConfig};
use mulki_core::cpu::CpuBackend;
use mulki_core::loss::soft_contrastive::SoftContrastive;
use mulki_core::optim::{lr_at, AdamWConfig, Optimizer};
use mulki_core::rng::Rng;
use serde::{Deserialize, Serialize};

use super::progress::Progress;
use crate::data::pairs::PairSet;
use crate::synth::pretrain::{pretrain_batch, PretrainBatch};
use crate::synth::vocab::WordVocab;
use crate::tokenizer::{Tokenize, Tokenizer};

/// Context length of a model with the CLIP BPE vocabulary: emoji and clip-art names take up to
/// about 20 BPE tokens with the start and end tokens.
pub const BPE_CONTEXT: usize = 24;

/// With `--pairs`, one pair in this many of each batch is a real image–caption pair.
pub const PAIR_SHARE: usize = 4;

const PAIRS_SALT: u64 = 0x7061_6972_732d_2d2d; // "pairs---"

/// The tiny CLIP of the synthetic world: 32×32 images in 4×4 patches, width 96, 3 vision and 2
/// text layers, the 64-word vocabulary, context 16 (about 0.6M parameters).
pub fn demo_model_config() -> ClipConfig {
    let vocab = WordVocab::new();
    ClipConfig {
        text_config: TextConfig {
            vocab_size: vocab.vocab_size(),
            hidden_size: 96,
            intermediate_size: 384,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            max_position_embeddings: 16,
            pad_token_id: crate::synth::vocab::PAD_ID,
            bos_token_id: vocab.sot_id(),
            eos_token_id: vocab.eot_id(),
            ..TextConfig::default()
        },
        vision_config: VisionConfig {
            hidden_size: 96,
            intermediate_size: 384,
            num_hidden_layers: 3,
            num_attention_heads: 4,
            image_size: 32,
            patch_size: 4,
            ..VisionConfig::default()
        },
        projection_dim: 64,
        logit_scale_init_value: 2.6592,
    }
}

/// [`demo_model_config`] with the vocabulary of `tok` and context [`BPE_CONTEXT`].
pub fn bpe_model_config(tok: &Tokenizer) -> ClipConfig {
    let mut cfg = demo_model_config();
    let t = &mut cfg.text_config;
    t.vocab_size = tok.vocab_size();
    t.max_position_embeddings = BPE_CONTEXT;
    t.pad_token_id = tok.pad_id();
    t.bos_token_id = tok.sot_id();
    t.eos_token_id = tok.eot_id();
    cfg
}

/// The text side of a pretraining run: the world's words, or a CLIP BPE.
enum Vocab {
    Words(WordVocab),
    Bpe(Box<Tokenizer>),
}

impl Vocab {
    fn new(cfg: &PretrainConfig) -> Result<Self> {
        Ok(match &cfg.tokenizer {
            Some(dir) => Vocab::Bpe(Box::new(Tokenizer::from_hf_dir(dir)?)),
            None => Vocab::Words(WordVocab::new()),
        })
    }

    fn model_config(&self) -> ClipConfig {
        match self {
            Vocab::Words(_) => demo_model_config(),
            Vocab::Bpe(t) => bpe_model_config(t),
        }
    }

    fn tokenize(&self, texts: &[String], ctx: usize) -> Vec<u32> {
        match self {
            Vocab::Words(v) => v.tokenize_rows(texts, ctx),
            Vocab::Bpe(t) => t.tokenize_rows(texts, ctx),
        }
    }
}

/// Appends `n` pairs of `pairs` (drawn on their own counter stream for `step`) to a synthetic
/// batch. The targets become block-diagonal: synthetic images match synthetic captions by the
/// world's rule; a real image matches every drawn caption equal to its own.
pub fn with_pairs(mut batch: PretrainBatch, pairs: &PairSet, seed: u64, step: u64, n: usize) -> PretrainBatch {
    let bs = batch.captions.len();
    let b = bs + n;
    let picks: Vec<usize> = (0..n as u64)
        .map(|i| Rng::for_counter(seed ^ PAIRS_SALT, step, i).below(pairs.len() as u64) as usize)
        .collect();
    for &p in &picks {
        batch.pixels.extend_from_slice(pairs.image(p));
        batch.captions.push(pairs.captions[p].clone());
    }
    let widen = |t: &[f32]| -> Vec<f32> {
        let mut out = vec![0f32; b * b];
        for i in 0..bs {
            out[i * b..i * b + bs].copy_from_slice(&t[i * bs..(i + 1) * bs]);
        }
        for i in 0..n {
            let same: Vec<usize> = (0..n).filter(|&j| batch.captions[bs + j] == batch.captions[bs + i]).collect();
            for j in &same {
                out[(bs + i) * b + bs + j] = 1.0 / same.len() as f32;
            }
        }
        out
    };
    batch.soft_targets = widen(&batch.soft_targets);
    batch.soft_targets_text = widen(&batch.soft_targets_text);
    batch
}

/// The knobs of `mulki pretrain`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub seed: u64,
    /// An HF tokenizer folder (`vocab.json`, `merges.txt`): the model uses this CLIP BPE
    /// vocabulary, context [`BPE_CONTEXT`], instead of the world's 64 words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// A TSV of real image–caption pairs ([`crate::data::pairs`]): a [`PAIR_SHARE`]th of every
    /// batch is drawn from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairs: Option<PathBuf>,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            steps: 4000,
            batch: 128,
            lr: 1e-3,
            warmup: 200,
            weight_decay: 0.0,
            seed: 0,
            tokenizer: None,
            pairs: None,
        }
    }
}

/// What `pretrain.json` records beside the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PretrainRecord {
    pub config: PretrainConfig,
    pub command: String,
    pub cpu_features: String,
    pub mulki_version: String,
    pub final_loss: f64,
    pub logit_scale: f64,
    pub wall_seconds: f64,
    pub threads: usize,
    /// SHA-256 of the parameters (f32 little-endian, layout order) after step `check_step`: a
    /// reproduction check that takes seconds instead of the whole run.
    #[serde(default)]
    pub check_step: usize,
    #[serde(default)]
    pub check_sha256: String,
    /// SHA-256 of the final parameters.
    #[serde(default)]
    pub weights_sha256: String,
}

/// Steps after which `pretrain.json` records the parameters' hash.
pub const CHECK_STEP: usize = 20;

/// SHA-256 (hex) of parameters as f32 little-endian bytes.
pub fn params_sha256(params: &[f32]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for x in params {
        h.update(x.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The widest SIMD level matrixmultiply's kernels can use here: results can differ across
/// levels (FMA rounds once), so it is recorded with the weights.
pub fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let f = [("avx2", is_x86_feature_detected!("avx2")), ("fma", is_x86_feature_detected!("fma"))];
        let on: Vec<&str> = f.iter().filter(|x| x.1).map(|x| x.0).collect();
        return format!("x86_64 {}", if on.is_empty() { "sse2".into() } else { on.join("+") });
    }
    #[allow(unreachable_code)]
    std::env::consts::ARCH.to_string()
}

/// Trains from a fresh init and writes an HF folder (`config.json`, `model.safetensors`) and
/// `pretrain.json` into `out`.
pub fn pretrain(
    cfg: &PretrainConfig, out: &Path, threads: usize, command: &str, progress: &mut Progress,
) -> Result<PretrainRecord> {
    let start = Instant::now();
    let run = run_steps(cfg, cfg.steps, threads, progress)?;
    crate::import::save_clip_dir(out, &run.config, &ClipLayout::new(&run.config), &run.params)?;
    if let Some(dir) = &cfg.tokenizer {
        for f in ["vocab.json", "merges.txt"] {
            std::fs::copy(dir.join(f), out.join(f)).with_context(|| format!("copying {}", dir.join(f).display()))?;
        }
    }
    let record = PretrainRecord {
        config: cfg.clone(),
        command: command.to_string(),
        cpu_features: cpu_features(),
        mulki_version: env!("CARGO_PKG_VERSION").into(),
        final_loss: run.last_loss,
        logit_scale: run.logit_scale,
        wall_seconds: start.elapsed().as_secs_f64(),
        threads,
        check_step: CHECK_STEP.min(cfg.steps),
        check_sha256: run.check_sha256,
        weights_sha256: params_sha256(&run.params),
    };
    std::fs::write(out.join("pretrain.json"), serde_json::to_string_pretty(&record)?)?;
    Ok(record)
}

/// The parameters after the first `stop` steps of the pretraining `cfg` (its schedule over
/// `cfg.steps`): the reproduction test compares them with `pretrain.json`'s hash.
pub fn pretrain_prefix(cfg: &PretrainConfig, stop: usize, threads: usize) -> Result<Vec<f32>> {
    Ok(run_steps(cfg, stop, threads, &mut Progress::new(true, None)?)?.params)
}

struct Pretrained {
    /// The model config the run trained (its vocabulary follows `--tokenizer`).
    config: ClipConfig,
    params: Vec<f32>,
    last_loss: f64,
    logit_scale: f64,
    /// [`params_sha256`] after step [`CHECK_STEP`] (empty if the run stopped before it).
    check_sha256: String,
}

/// Steps 1..=stop of the schedule of `cfg`.
fn run_steps(cfg: &PretrainConfig, stop: usize, threads: usize, progress: &mut Progress) -> Result<Pretrained> {
    let vocab = Vocab::new(cfg)?;
    let model_cfg = vocab.model_config();
    let mut be = CpuBackend::<f32>::new(threads);
    let b = cfg.batch;
    let side = model_cfg.vision_config.image_size;
    let pairs = match &cfg.pairs {
        Some(p) => Some(PairSet::load(p, side)?),
        None => None,
    };
    let n_pairs = if pairs.is_some() { b / PAIR_SHARE } else { 0 };
    let mut clip = Clip::new(&mut be, &model_cfg, Capacity { images: b, texts: b })?;
    be.write(clip.params(), &init_params::<f32>(&model_cfg, &clip.layout, cfg.seed))?;
    let mut loss = SoftContrastive::new(&mut be, b, model_cfg.projection_dim)?;
    let mut opt = Optimizer::new(
        &mut be,
        clip.layout.len,
        AdamWConfig { weight_decay: cfg.weight_decay, ..AdamWConfig::default() },
    )?;
    let ctx = model_cfg.text_config.max_position_embeddings;
    progress.begin_task(0, "pretraining", cfg.steps, 0);
    let mut last = f64::NAN;
    let mut ls = [0f32];
    let mut params = vec![0f32; clip.layout.len];
    let mut check_sha256 = String::new();
    for k in 1..=stop.min(cfg.steps) {
        let mut batch = pretrain_batch(cfg.seed, k as u64, b - n_pairs, side);
        if let Some(p) = &pairs {
            batch = with_pairs(batch, p, cfg.seed, k as u64, n_pairs);
        }
        let ids = vocab.tokenize(&batch.captions, ctx);
        be.write(clip.pixels(b)?, &batch.pixels)?;
        let v = clip.encode_image(&mut be, b)?;
        let w = clip.encode_text(&mut be, &ids, b, ctx)?;
        be.read(clip.logit_scale(), &mut ls)?;
        last = loss.forward(&mut be, v, w, b, (ls[0] as f64).exp(), &batch.soft_targets, &batch.soft_targets_text)?;
        if !last.is_finite() {
            anyhow::bail!("pretraining: non-finite loss at step {k}");
        }
        clip.zero_grad(&mut be)?;
        let dls = clip.layout.logit_scale.at(clip.arenas.grads);
        loss.backward(&mut be, clip.image_dout(), clip.text_dout(), dls)?;
        clip.backward_image(&mut be)?;
        clip.backward_text(&mut be)?;
        opt.step(&mut be, clip.params(), clip.grads(), lr_at(cfg.lr, k, cfg.steps, cfg.warmup))?;
        if k == CHECK_STEP.min(cfg.steps) {
            be.read(clip.params(), &mut params)?;
            check_sha256 = params_sha256(&params);
        }
        progress.step(&super::trainer::StepReport {
            task: 0,
            step: k,
            steps: cfg.steps,
            lr: lr_at(cfg.lr, k, cfg.steps, cfg.warmup),
            loss: mulki_core::loss::mulki::LossValues { total: last, ..Default::default() },
            images: b,
            ..Default::default()
        });
    }
    be.read(clip.params(), &mut params)?;
    be.read(clip.logit_scale(), &mut ls)?;
    Ok(Pretrained { config: model_cfg, params, last_loss: last, logit_scale: ls[0] as f64, check_sha256 })
}
