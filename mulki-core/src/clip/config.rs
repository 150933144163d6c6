//! CLIP sizes, named and defaulted exactly as HF `CLIPConfig` / `config.json`, so a downloaded
//! `config.json` deserialises straight into them (unknown HF fields are ignored here; mulki's own
//! run configs reject unknown fields).
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Activation of the MLP between `fc1` and `fc2` (HF `hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// `x * sigmoid(1.702 x)`, OpenAI CLIP.
    QuickGelu,
    /// The exact erf GELU, `torch.nn.functional.gelu(x)`.
    Gelu,
}

/// HF `CLIPTextConfig`; defaults are HF's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: HiddenAct,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    pub bos_token_id: u32,
    /// `2` selects HF's legacy pooling (argmax of the ids); any other value pools at the first
    /// position holding this id.
    pub eos_token_id: u32,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
            pad_token_id: 1,
            bos_token_id: 49406,
            eos_token_id: 49407,
        }
    }
}

/// HF `CLIPVisionConfig`; defaults are HF's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: HiddenAct,
    pub layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: HiddenAct::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// HF `CLIPConfig`: both towers, the shared projection width and the initial logit scale.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    pub projection_dim: usize,
    pub logit_scale_init_value: f64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            text_config: TextConfig::default(),
            vision_config: VisionConfig::default(),
            projection_dim: 512,
            logit_scale_init_value: 2.6592,
        }
    }
}

impl ClipConfig {
    /// A small model (both towers 32 wide, 2 layers, 16×16 images in 4×4 patches, 64-token
    /// vocabulary) for tests, smoke runs and the `no_std` check.
    pub fn tiny() -> Self {
        ClipConfig {
            text_config: TextConfig {
                vocab_size: 64,
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                max_position_embeddings: 8,
                pad_token_id: 0,
                bos_token_id: 62,
                eos_token_id: 63,
                ..TextConfig::default()
            },
            vision_config: VisionConfig {
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 2,
                image_size: 16,
                patch_size: 4,
                ..VisionConfig::default()
            },
            projection_dim: 16,
            logit_scale_init_value: 2.6592,
        }
    }
}

impl VisionConfig {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Tokens per image: the patches plus the class token.
    pub fn tokens(&self) -> usize {
        self.grid() * self.grid() + 1
    }
    /// Values per flattened patch: `channels * patch * patch` (the conv weight's fan-in).
    pub fn patch_dim(&self) -> usize {
        self.num_channels * self.patch_size * self.patch_size
    }
}

impl ClipConfig {
    /// Checks the sizes the kernels rely on; the error names the field.
    pub fn validate(&self) -> Result<(), Error> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let positive: [(&'static str, usize); 12] = [
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.max_position_embeddings", t.max_position_embeddings),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.num_channels", v.num_channels),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
            ("projection_dim", self.projection_dim),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(Error::Config { field, reason: "must be positive" });
            }
        }
        if !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(Error::Config {
                field: "text_config.num_attention_heads",
                reason: "must divide text_config.hidden_size",
            });
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(Error::Config {
                field: "vision_config.num_attention_heads",
                reason: "must divide vision_config.hidden_size",
            });
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err(Error::Config {
                field: "vision_config.patch_size",
                reason: "must divide vision_config.image_size",
            });
        }
        for (field, eps) in
            [("text_config.layer_norm_eps", t.layer_norm_eps), ("vision_config.layer_norm_eps", v.layer_norm_eps)]
        {
            if !(eps.is_finite() && eps > 0.0) {
                return Err(Error::Config { field, reason: "must be finite and positive" });
            }
        }
        if !self.logit_scale_init_value.is_finite() {
            return Err(Error::Config { field: "logit_scale_init_value", reason: "must be finite" });
        }
        Ok(())
    }
}
