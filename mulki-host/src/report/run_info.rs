//! run.json: what is needed to reproduce or audit a run: the resolved config and its hash, the
//! mulki version and git commit, device, seed, determinism mode and trainable parameter counts.
//! Written once at the start of a run, atomically like the reports.
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{create_dir, read, write_atomic, ReportError, RUN_JSON};

pub const MULKI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Trainable parameter counts per model part; the logit scale is frozen in MTIL, hence 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainableParameters {
    pub text: u64,
    pub vision: u64,
    pub projection: u64,
    pub logit_scale: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The resolved config (preset and overrides applied).
    pub config: serde_json::Value,
    pub config_hash: String,
    pub mulki_version: String,
    pub git_commit: Option<String>,
    pub device: String,
    pub seed: u64,
    pub determinism: String,
    pub trainable_parameters: TrainableParameters,
}

impl RunInfo {
    /// Fills `mulki_version` and `git_commit` from this build (see [`git_commit`]).
    pub fn new(
        config: serde_json::Value, config_hash: impl Into<String>, device: impl Into<String>, seed: u64,
        determinism: impl Into<String>, trainable_parameters: TrainableParameters,
    ) -> Self {
        Self {
            config,
            config_hash: config_hash.into(),
            mulki_version: MULKI_VERSION.into(),
            git_commit: git_commit(),
            device: device.into(),
            seed,
            determinism: determinism.into(),
            trainable_parameters,
        }
    }
}

/// The commit this binary was built from: `MULKI_GIT_COMMIT` at build time if set, otherwise
/// `git rev-parse HEAD` run once in the current directory (which may be a different checkout
/// than the build's), `None` when neither gives a hex hash.
pub fn git_commit() -> Option<String> {
    static COMMIT: OnceLock<Option<String>> = OnceLock::new();
    COMMIT
        .get_or_init(|| {
            option_env!("MULKI_GIT_COMMIT").map(str::to_string).and_then(as_hash).or_else(|| {
                let out = Command::new("git")
                    .args(["rev-parse", "--verify", "HEAD"])
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .output()
                    .ok()
                    .filter(|o| o.status.success())?;
                as_hash(String::from_utf8(out.stdout).ok()?)
            })
        })
        .clone()
}

/// A SHA-1 or SHA-256 hex hash, trimmed.
fn as_hash(s: String) -> Option<String> {
    let s = s.trim();
    (matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.into())
}

/// Writes `dir/run.json` (creating `dir`), replacing an older one atomically.
pub fn write_run_json(dir: &Path, info: &RunInfo) -> Result<(), ReportError> {
    let path = dir.join(RUN_JSON);
    let mut text = serde_json::to_string_pretty(info)
        .map_err(|e| ReportError::Json { path: path.clone(), message: e.to_string() })?;
    text.push('\n');
    create_dir(dir)?;
    write_atomic(&path, text.as_bytes())
}

/// Reads `dir/run.json`; `None` when the run has none (reports written by other tools).
pub fn read_run_json(dir: &Path) -> Result<Option<RunInfo>, ReportError> {
    let path = dir.join(RUN_JSON);
    if !path.exists() {
        return Ok(None);
    }
    serde_json::from_slice(&read(&path)?).map(Some).map_err(|e| ReportError::Json { path, message: e.to_string() })
}
