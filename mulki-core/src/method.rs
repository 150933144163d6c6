//! `MethodConfig`: every λ, temperature, momentum, interval and switch of METHOD.md, with its
//! defaults, its validation ranges and the named presets (MulKI, its ablations, the baselines).
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Which frozen teachers distil into the student (METHOD.md stage 2–3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Teachers {
    /// No distillation.
    None,
    /// Only Z, the original model, for every task (`mulki-no-dual`).
    Original,
    /// Z and P (the model after the previous task); one teacher (Z = P) on the first task.
    Dual,
}

/// Per-sample teacher weighting (METHOD.md stage 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightRuleName {
    Confidence,
    Equal,
    Discrepancy,
}

/// What the end-of-task interpolation pulls toward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    /// θ_{t−1}, the model after the previous task.
    Previous,
    /// θ_0, the loaded model.
    Original,
}

/// The method's knobs. Field names are the config keys; defaults are METHOD.md's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MethodConfig {
    /// False only for `zero-shot`: no training at all.
    pub train: bool,
    /// ε of the base loss L_CE.
    pub label_smoothing: f64,
    /// Stage 1 weight λ_EI.
    pub lambda_ei: f64,
    /// Prototype EMA momentum m (1 freezes the prototypes).
    pub proto_momentum: f64,
    /// Images per class used to initialise a prototype (`None`: all).
    pub proto_max_per_class: Option<usize>,
    /// Stage 2–3 weight λ_KD.
    pub lambda_kd: f64,
    pub teachers: Teachers,
    /// Distillation temperature T of the relation softmaxes.
    pub temperature: f64,
    /// Weight β of the feature (cosine) terms.
    pub beta: f64,
    /// The relation KL terms (false for `mulki-no-rel`; the β terms stay).
    pub relations: bool,
    pub weight_rule: WeightRuleName,
    /// τ_w of the confidence rule.
    pub tau_w: f64,
    /// Scale and threshold of the discrepancy rule.
    pub discrepancy_scale: f64,
    pub discrepancy_threshold: f64,
    /// Within-task weight ensemble (stage 4).
    pub ensemble: bool,
    /// Merge interval I (`None`: max(1, ⌊N/10⌋)).
    pub ensemble_interval: Option<usize>,
    /// λ_C of the L2 connection to θ_{t−1}.
    pub lambda_c: f64,
    /// End-of-task interpolation γ (1: none) and its anchor.
    pub interpolation: f64,
    pub anchor: Anchor,
    /// LwF's KD weight and temperature.
    pub lambda_lwf: f64,
    pub lwf_temperature: f64,
    /// ZSCL's reference-set terms L_img + L_txt: weight and temperature.
    pub lambda_zscl: f64,
    pub zscl_temperature: f64,
}

impl Default for MethodConfig {
    /// The full MulKI method (`mulki`).
    fn default() -> Self {
        MethodConfig {
            train: true,
            label_smoothing: 0.2,
            lambda_ei: 1.0,
            proto_momentum: 0.99,
            proto_max_per_class: None,
            lambda_kd: 1.0,
            teachers: Teachers::Dual,
            temperature: 2.0,
            beta: 1.0,
            relations: true,
            weight_rule: WeightRuleName::Confidence,
            tau_w: 0.1,
            discrepancy_scale: 6.0,
            discrepancy_threshold: 0.2,
            ensemble: true,
            ensemble_interval: None,
            lambda_c: 1.0,
            interpolation: 1.0,
            anchor: Anchor::Previous,
            lambda_lwf: 0.0,
            lwf_temperature: 2.0,
            lambda_zscl: 0.0,
            zscl_temperature: 2.0,
        }
    }
}

/// Every preset name, in the order reports list them.
pub const PRESETS: [&str; 11] = [
    "zero-shot",
    "ft",
    "lwf",
    "wise-ft",
    "zscl",
    "mulki",
    "mulki-no-ei",
    "mulki-no-rel",
    "mulki-no-dual",
    "mulki-no-weight",
    "mulki-no-conn",
];

impl MethodConfig {
    /// Plain fine-tuning: L_CE only, nothing else.
    fn ft() -> Self {
        MethodConfig {
            lambda_ei: 0.0,
            lambda_kd: 0.0,
            teachers: Teachers::None,
            ensemble: false,
            lambda_c: 0.0,
            ..Self::default()
        }
    }

    /// The named preset; an unknown name is an error naming the field `preset`.
    pub fn preset(name: &str) -> Result<Self, Error> {
        let c = match name {
            "zero-shot" => MethodConfig { train: false, ..Self::ft() },
            "ft" => Self::ft(),
            "lwf" => MethodConfig { lambda_lwf: 1.0, ..Self::ft() },
            "wise-ft" => MethodConfig { interpolation: 0.5, anchor: Anchor::Original, ..Self::ft() },
            "zscl" => MethodConfig { lambda_zscl: 1.0, lambda_c: 1.0, ensemble: true, ..Self::ft() },
            "mulki" => Self::default(),
            "mulki-no-ei" => MethodConfig { lambda_ei: 0.0, ..Self::default() },
            "mulki-no-rel" => MethodConfig { relations: false, ..Self::default() },
            "mulki-no-dual" => MethodConfig { teachers: Teachers::Original, ..Self::default() },
            "mulki-no-weight" => MethodConfig { weight_rule: WeightRuleName::Equal, ..Self::default() },
            "mulki-no-conn" => MethodConfig { ensemble: false, lambda_c: 0.0, interpolation: 1.0, ..Self::default() },
            _ => return Err(Error::Config { field: "preset", reason: "unknown preset (see `mulki config --print`)" }),
        };
        Ok(c)
    }

    /// Whether prototypes are needed (L_EI or the relation terms).
    pub fn uses_prototypes(&self) -> bool {
        self.lambda_ei != 0.0 || (self.lambda_kd != 0.0 && self.teachers != Teachers::None && self.relations)
    }

    /// Rejects non-finite values and values outside METHOD.md's ranges; the error names the
    /// field.
    pub fn validate(&self) -> Result<(), Error> {
        let finite = [
            ("label_smoothing", self.label_smoothing),
            ("lambda_ei", self.lambda_ei),
            ("proto_momentum", self.proto_momentum),
            ("lambda_kd", self.lambda_kd),
            ("temperature", self.temperature),
            ("beta", self.beta),
            ("tau_w", self.tau_w),
            ("discrepancy_scale", self.discrepancy_scale),
            ("discrepancy_threshold", self.discrepancy_threshold),
            ("lambda_c", self.lambda_c),
            ("interpolation", self.interpolation),
            ("lambda_lwf", self.lambda_lwf),
            ("lwf_temperature", self.lwf_temperature),
            ("lambda_zscl", self.lambda_zscl),
            ("zscl_temperature", self.zscl_temperature),
        ];
        for (field, v) in finite {
            if !v.is_finite() {
                return Err(Error::Config { field, reason: "must be a finite number" });
            }
        }
        let checks: [(&'static str, bool, &'static str); 13] = [
            ("temperature", self.temperature > 0.0, "must be > 0"),
            ("lwf_temperature", self.lwf_temperature > 0.0, "must be > 0"),
            ("zscl_temperature", self.zscl_temperature > 0.0, "must be > 0"),
            ("tau_w", self.tau_w > 0.0, "must be > 0"),
            ("ensemble_interval", self.ensemble_interval != Some(0), "must be >= 1"),
            ("label_smoothing", (0.0..1.0).contains(&self.label_smoothing), "must be in [0, 1)"),
            ("proto_momentum", (0.0..=1.0).contains(&self.proto_momentum), "must be in [0, 1]"),
            ("interpolation", (0.0..=1.0).contains(&self.interpolation), "must be in [0, 1]"),
            ("lambda_ei", self.lambda_ei >= 0.0, "must be >= 0"),
            ("lambda_kd", self.lambda_kd >= 0.0, "must be >= 0"),
            ("lambda_c", self.lambda_c >= 0.0, "must be >= 0"),
            ("lambda_lwf", self.lambda_lwf >= 0.0, "must be >= 0"),
            ("lambda_zscl", self.lambda_zscl >= 0.0, "must be >= 0"),
        ];
        for (field, ok, reason) in checks {
            if !ok {
                return Err(Error::Config { field, reason });
            }
        }
        if self.proto_max_per_class == Some(0) {
            return Err(Error::Config { field: "proto_max_per_class", reason: "must be >= 1" });
        }
        Ok(())
    }

    /// The merge interval for a task of `steps` steps: I, or max(1, ⌊N/10⌋).
    pub fn interval(&self, steps: usize) -> usize {
        self.ensemble_interval.unwrap_or((steps / 10).max(1))
    }
}
