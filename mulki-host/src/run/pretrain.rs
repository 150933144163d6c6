//! Contrastive pretraining of the built-in tiny CLIP on the synthetic caption stream, with soft
//! targets (a caption matches every image it describes). Deterministic: the data are a function
//! of (seed, step) and the CPU backend gives the same bits for any thread count, so the same
//! command on a CPU with the same SIMD level reproduces the shipped weights bit for bit.
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use mulki_core::backend::Backend;
use mulki_core::clip::init::init_params;
use mulki_core::clip::{Capacity, Clip, ClipConfig, TextConfig, VisionConfig};
use mulki_core::cpu::CpuBackend;
use mulki_core::loss::soft_contrastive::SoftContrastive;
use mulki_core::optim::{lr_at, AdamWConfig, Optimizer};
use serde::{Deserialize, Serialize};

use super::progress::Progress;
use crate::synth::pretrain::pretrain_batch;
use crate::synth::vocab::WordVocab;
use crate::tokenizer::Tokenize;

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

/// The knobs of `mulki pretrain`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub seed: u64,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig { steps: 4000, batch: 128, lr: 1e-3, warmup: 200, weight_decay: 0.0, seed: 0 }
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
    let model_cfg = demo_model_config();
    let vocab = WordVocab::new();
    let mut be = CpuBackend::<f32>::new(threads);
    let b = cfg.batch;
    let mut clip = Clip::new(&mut be, &model_cfg, Capacity { images: b, texts: b })?;
    be.write(clip.params(), &init_params::<f32>(&model_cfg, &clip.layout, cfg.seed))?;
    let mut loss = SoftContrastive::new(&mut be, b, model_cfg.projection_dim)?;
    let mut opt = Optimizer::new(
        &mut be,
        clip.layout.len,
        AdamWConfig { weight_decay: cfg.weight_decay, ..AdamWConfig::default() },
    )?;
    let (side, ctx) = (model_cfg.vision_config.image_size, model_cfg.text_config.max_position_embeddings);
    let start = Instant::now();
    progress.begin_task(0, "pretraining", cfg.steps, 0);
    let mut last = f64::NAN;
    let mut ls = [0f32];
    for k in 1..=cfg.steps {
        let batch = pretrain_batch(cfg.seed, k as u64, b, side);
        let ids = vocab.tokenize_rows(&batch.captions, ctx);
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
    let mut params = vec![0f32; clip.layout.len];
    be.read(clip.params(), &mut params)?;
    crate::import::save_clip_dir(out, &model_cfg, &clip.layout, &params)?;
    be.read(clip.logit_scale(), &mut ls)?;
    let record = PretrainRecord {
        config: cfg.clone(),
        command: command.to_string(),
        cpu_features: cpu_features(),
        mulki_version: env!("CARGO_PKG_VERSION").into(),
        final_loss: last,
        logit_scale: ls[0] as f64,
        wall_seconds: start.elapsed().as_secs_f64(),
        threads,
    };
    std::fs::write(out.join("pretrain.json"), serde_json::to_string_pretty(&record)?)?;
    Ok(record)
}
