//! The run config (`mulki train --config run.toml`): model source, task list, method preset and
//! overrides, training knobs. Unknown keys and bad values are rejected with the file, line and
//! field. The config hash covers the semantic keys only (see [`RunConfig::hash`]).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mulki_core::method::MethodConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Keys that never change results, left out of the config hash: where the run writes, how many
/// threads compute it, on which device, and how much it prints.
pub const UNHASHED_KEYS: [&str; 4] = ["output_dir", "threads", "device", "verbosity"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {field}: {reason}")]
    Invalid { path: PathBuf, field: String, reason: String },
    #[error(
        "{dir}: this checkpoint was made with another config (differing keys: {keys}); use --force to resume anyway"
    )]
    CheckpointMismatch { dir: PathBuf, keys: String },
}

/// Dataset layout on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    /// `<split>/<class>/*.{png,jpg,jpeg}`; class folders named as in `classes` or `folders`.
    ImageFolder,
    /// `<split>.csv` with `path,label` rows (paths relative to the CSV, labels 0-based).
    Csv,
    /// `<split>-images-idx3-ubyte` + `<split>-labels-idx1-ubyte` (MNIST's files).
    Idx,
}

/// One task of the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    /// Dataset root, relative to the config file.
    pub root: PathBuf,
    #[serde(default = "default_format")]
    pub format: DatasetFormat,
    /// Split names under `root` (folders, CSV stems or IDX prefixes).
    #[serde(default = "default_train")]
    pub train_split: String,
    #[serde(default = "default_test")]
    pub test_split: String,
    /// Class names in label order, as the prompts use them.
    pub classes: Vec<String>,
    /// Folder names per class when they differ from `classes` (ImageFolder only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folders: Option<Vec<String>>,
    /// Templates with `{}` for the class name: one for training (as ZSCL), an ensemble for
    /// evaluation (normalise each prompt's feature, average, normalise).
    pub train_templates: Vec<String>,
    pub eval_templates: Vec<String>,
    /// Overrides of `[train]` for this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
}

fn default_format() -> DatasetFormat {
    DatasetFormat::ImageFolder
}
fn default_train() -> String {
    "train".into()
}
fn default_test() -> String {
    "test".into()
}

/// `[model]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// An HF CLIP folder (config.json + model.safetensors) or a mulki checkpoint directory.
    pub source: PathBuf,
    /// The tokenizer: an HF folder with vocab.json + merges.txt, or a `bpe_simple_vocab_16e6.txt.gz`
    /// (default: `source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
}

/// `[train]`: what every task shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Images per optimiser step (across accumulation steps).
    pub batch_size: usize,
    /// Micro-batches per optimiser step (each `batch_size / grad_accumulation` images).
    pub grad_accumulation: usize,
    pub iterations: usize,
    /// Warm-up steps (default min(100, ⌊N/10⌋)).
    pub warmup: Option<usize>,
    pub lr: f64,
    pub weight_decay: f64,
    /// Few-shot: images per class drawn with the seed (default: all).
    pub shots: Option<usize>,
    /// A periodic checkpoint every this many steps (0: task ends only).
    pub checkpoint_every: usize,
    pub eval_batch_size: usize,
    /// Evaluate over the concatenation of every dataset's classes.
    pub task_agnostic: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 64,
            grad_accumulation: 1,
            iterations: 1000,
            warmup: None,
            lr: 1e-5,
            weight_decay: 0.0,
            shots: None,
            checkpoint_every: 0,
            eval_batch_size: 256,
            task_agnostic: false,
        }
    }
}

/// `[reference]`: ZSCL's reference set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceConfig {
    /// A folder of images (any depth), sorted by path.
    pub images: PathBuf,
    /// One caption per line, paired with the images in sorted order.
    pub captions: PathBuf,
    #[serde(default = "default_ref_batch")]
    pub batch_size: usize,
}

fn default_ref_batch() -> usize {
    64
}

/// The whole run config, as written in TOML.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    /// CPU threads (0: all cores).
    #[serde(default)]
    pub threads: usize,
    #[serde(default = "default_device")]
    pub device: String,
    pub model: ModelConfig,
    /// `preset = "<name>"` plus any `MethodConfig` field as an override.
    #[serde(default = "default_method")]
    pub method: toml::Table,
    #[serde(default)]
    pub train: TrainConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<ReferenceConfig>,
    pub tasks: Vec<TaskConfig>,
}

fn default_seed() -> u64 {
    1
}
fn default_device() -> String {
    "cpu".into()
}
fn default_method() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("preset".into(), toml::Value::String("mulki".into()));
    t
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl RunConfig {
    /// Reads and validates a TOML run config; relative paths are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg = Self::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    /// Parses and validates TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: RunConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(text, s.start));
            ConfigError::Parse { path: path.into(), line, column, message: e.message().to_string() }
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.model.source);
        if let Some(t) = &mut self.model.tokenizer {
            fix(t);
        }
        if let Some(r) = &mut self.reference {
            fix(&mut r.images);
            fix(&mut r.captions);
        }
        for t in &mut self.tasks {
            fix(&mut t.root);
        }
        if let Some(o) = &mut self.output_dir {
            fix(o);
        }
    }

    /// The method: the preset with the overrides applied, validated.
    pub fn method(&self) -> Result<MethodConfig, String> {
        let preset = match self.method.get("preset") {
            Some(toml::Value::String(s)) => s.as_str(),
            Some(_) => return Err("method.preset: must be a string".into()),
            None => "mulki",
        };
        let base = MethodConfig::preset(preset).map_err(|e| format!("method.preset: `{preset}`: {e}"))?;
        let mut table = toml::Table::try_from(&base).map_err(|e| format!("method: {e}"))?;
        for (k, v) in &self.method {
            if k != "preset" {
                table.insert(k.clone(), v.clone());
            }
        }
        let method: MethodConfig = table.try_into().map_err(|e: toml::de::Error| format!("method: {}", e.message()))?;
        method.validate().map_err(|e| match e {
            mulki_core::Error::Config { field, reason } => format!("method.{field}: {reason}"),
            other => format!("method: {other}"),
        })?;
        Ok(method)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad =
            |field: String, reason: &str| ConfigError::Invalid { path: path.into(), field, reason: reason.into() };
        self.method().map_err(|e| {
            let (field, reason) = e.split_once(": ").unwrap_or(("method", e.as_str()));
            bad(field.into(), reason)
        })?;
        let t = &self.train;
        if t.batch_size == 0 {
            return Err(bad("train.batch_size".into(), "must be >= 1"));
        }
        if t.grad_accumulation == 0 || !t.batch_size.is_multiple_of(t.grad_accumulation) {
            return Err(bad("train.grad_accumulation".into(), "must be >= 1 and divide train.batch_size"));
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err(bad("train.lr".into(), "must be a finite number > 0"));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(bad("train.weight_decay".into(), "must be a finite number >= 0"));
        }
        if t.eval_batch_size == 0 {
            return Err(bad("train.eval_batch_size".into(), "must be >= 1"));
        }
        if t.shots == Some(0) {
            return Err(bad("train.shots".into(), "must be >= 1"));
        }
        if self.tasks.is_empty() {
            return Err(bad("tasks".into(), "at least one [[tasks]] entry is needed"));
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let f = |name: &str| format!("tasks[{i}] ({}).{name}", task.name);
            if task.classes.is_empty() {
                return Err(bad(f("classes"), "must list at least one class"));
            }
            if let Some(folders) = &task.folders {
                if folders.len() != task.classes.len() {
                    return Err(bad(f("folders"), "must have one entry per class"));
                }
            }
            for (field, list) in [("train_templates", &task.train_templates), ("eval_templates", &task.eval_templates)]
            {
                if list.is_empty() {
                    return Err(bad(f(field), "must list at least one template"));
                }
                if let Some(t) = list.iter().find(|t| !t.contains("{}")) {
                    return Err(ConfigError::Invalid {
                        path: path.into(),
                        field: f(field),
                        reason: format!("template {t:?} has no `{{}}` for the class name"),
                    });
                }
            }
            if task.train_templates.len() != 1 {
                return Err(bad(
                    f("train_templates"),
                    "training uses exactly one template (as ZSCL); list the others in eval_templates",
                ));
            }
            if let Some(lr) = task.lr {
                if !(lr.is_finite() && lr > 0.0) {
                    return Err(bad(f("lr"), "must be a finite number > 0"));
                }
            }
            if task.iterations == Some(0) {
                return Err(bad(f("iterations"), "must be >= 1"));
            }
        }
        if t.iterations == 0 {
            return Err(bad("train.iterations".into(), "must be >= 1"));
        }
        let method = self.method().map_err(|e| bad("method".into(), &e))?;
        if method.lambda_zscl != 0.0 && self.reference.is_none() {
            return Err(bad("reference".into(), "the zscl preset needs a [reference] set (images and captions)"));
        }
        Ok(())
    }

    /// SHA-256 over the semantic keys (everything but [`UNHASHED_KEYS`]), of the canonical
    /// JSON form with the method fully resolved, as lowercase hex.
    pub fn hash(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = v.as_object_mut() {
            for k in UNHASHED_KEYS {
                obj.remove(k);
            }
            if let Ok(m) = self.method() {
                obj.insert("method".into(), serde_json::to_value(m).unwrap_or_default());
            }
        }
        // serde_json's maps are sorted (BTreeMap), so the text is canonical.
        let canonical: BTreeMap<String, serde_json::Value> = serde_json::from_value(v).unwrap_or_default();
        let text = serde_json::to_string(&canonical).unwrap_or_default();
        hex(&Sha256::digest(text.as_bytes()))
    }

    /// Iterations of task `i`.
    pub fn iterations(&self, i: usize) -> usize {
        self.tasks[i].iterations.unwrap_or(self.train.iterations)
    }

    /// Learning rate of task `i`.
    pub fn lr(&self, i: usize) -> f64 {
        self.tasks[i].lr.unwrap_or(self.train.lr)
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
