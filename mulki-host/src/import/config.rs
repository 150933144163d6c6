//! HF `config.json` in and out. Reading goes through a hand-written serde visitor over optional
//! fields so that HF's extra keys are skipped, `null` means "HF default", the legacy
//! `*_config_dict` keys are merged in, and an error names the dotted field path together with
//! serde_json's line and column.
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use mulki_core::clip::{ClipConfig, HiddenAct, TextConfig, VisionConfig};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::error::ImportError;

/// Reads and checks an HF `config.json` (`CLIPConfig`).
///
/// Unknown keys are ignored and a `null` field takes HF's default. Old OpenAI configs also carry
/// `text_config_dict` / `vision_config_dict`; their fields fill in whatever `text_config` /
/// `vision_config` leave unset (where both set a field, `text_config` wins; in published files
/// they agree). A hostile file cannot overflow the stack: serde_json skips unknown values without
/// recursing, and its default recursion limit of 128 bounds the rest. Besides
/// [`ClipConfig::validate`], the parameter count is checked not to overflow `usize`, so building a
/// `ClipLayout` from the result cannot panic on arithmetic (its memory is the caller's concern;
/// `load_clip_dir` bounds it by the size of the weights file).
pub fn load_config(path: &Path) -> Result<ClipConfig, ImportError> {
    let bytes = std::fs::read(path).map_err(|error| ImportError::Io { path: path.to_path_buf(), op: "read", error })?;
    parse_config(&bytes, path)
}

/// [`load_config`] on bytes; `path` only names the file in errors.
pub(crate) fn parse_config(bytes: &[u8], path: &Path) -> Result<ClipConfig, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let trail = Trail::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = (&mut de)
        .deserialize_map(Fields::<RawClip>::new(&trail))
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| {
            let mut names = trail.take();
            names.reverse();
            ImportError::ConfigParse { path: path.to_path_buf(), field: names.join("."), message: e.to_string() }
        })?;
    let config = raw.finish();
    check(&config, path)?;
    Ok(config)
}

/// [`ClipConfig::validate`] plus the overflow check of [`param_count`]; `path` names the file.
pub(crate) fn check(config: &ClipConfig, path: &Path) -> Result<(), ImportError> {
    let invalid = |field: &str, reason: &str| ImportError::ConfigInvalid {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason: reason.to_string(),
    };
    if let Err(e) = config.validate() {
        return Err(match e {
            mulki_core::Error::Config { field, reason } => invalid(field, reason),
            other => invalid("config", &other.to_string()),
        });
    }
    param_count(config).map_err(|field| invalid(field, "the parameter count overflows usize"))?;
    Ok(())
}

/// Number of scalars in `ClipLayout::new(cfg)`, computed with checked arithmetic; on overflow,
/// the section at fault. Must mirror the layout (a unit test compares them).
pub(crate) fn param_count(cfg: &ClipConfig) -> Result<usize, &'static str> {
    // One pre-LN block of width c and MLP width i: 2 LNs, q/k/v/out with biases, fc1 and fc2.
    fn block(c: usize, i: usize) -> Option<usize> {
        let attn = c.checked_mul(c)?.checked_mul(4)?.checked_add(c.checked_mul(4)?)?;
        let mlp = c.checked_mul(i)?.checked_mul(2)?.checked_add(i)?.checked_add(c)?;
        attn.checked_add(mlp)?.checked_add(c.checked_mul(4)?)
    }
    let t = &cfg.text_config;
    let text = || {
        let c = t.hidden_size;
        let emb = t.vocab_size.checked_add(t.max_position_embeddings)?.checked_mul(c)?;
        let blocks = block(c, t.intermediate_size)?.checked_mul(t.num_hidden_layers)?;
        emb.checked_add(blocks)?.checked_add(c.checked_mul(2)?)
    };
    let v = &cfg.vision_config;
    let vision = || {
        let c = v.hidden_size;
        let grid = v.image_size.checked_div(v.patch_size)?;
        let tokens = grid.checked_mul(grid)?.checked_add(1)?;
        let patch = v.num_channels.checked_mul(v.patch_size)?.checked_mul(v.patch_size)?;
        // Class embedding, patch conv, positions, pre and post LN (weight and bias each).
        let per_c = patch.checked_add(tokens)?.checked_add(5)?;
        let blocks = block(c, v.intermediate_size)?.checked_mul(v.num_hidden_layers)?;
        per_c.checked_mul(c)?.checked_add(blocks)
    };
    let proj = || {
        let widths = t.hidden_size.checked_add(v.hidden_size)?;
        cfg.projection_dim.checked_mul(widths)?.checked_add(1)
    };
    let text = text().ok_or("text_config")?;
    let vision = vision().ok_or("vision_config")?;
    let proj = proj().ok_or("projection_dim")?;
    text.checked_add(vision).and_then(|n| n.checked_add(proj)).ok_or("config")
}

/// `config.json` as HF writes it for a `CLIPModel`: sorted keys, two-space indent, the
/// `architectures` / `model_type` keys `from_pretrained` dispatches on.
pub(crate) fn to_hf_json(cfg: &ClipConfig) -> Result<Vec<u8>, serde_json::Error> {
    let mut root = serde_json::to_value(cfg)?;
    if let Value::Object(map) = &mut root {
        map.insert("architectures".into(), Value::from(vec!["CLIPModel"]));
        map.insert("model_type".into(), Value::from("clip"));
        for (section, model_type) in [("text_config", "clip_text_model"), ("vision_config", "clip_vision_model")] {
            if let Some(Value::Object(sub)) = map.get_mut(section) {
                sub.insert("model_type".into(), Value::from(model_type));
            }
        }
    }
    let mut out = serde_json::to_vec_pretty(&root)?;
    out.push(b'\n');
    Ok(out)
}

/// Names of the fields being deserialised when an error happened, innermost first.
type Trail = RefCell<Vec<&'static str>>;

/// Visitor (and seed) for the fields of one raw section.
struct Fields<'a, T> {
    trail: &'a Trail,
    _raw: PhantomData<T>,
}

impl<'a, T> Fields<'a, T> {
    fn new(trail: &'a Trail) -> Self {
        Self { trail, _raw: PhantomData }
    }

    /// Records that the error `e` happened inside `field`, and hands it on unchanged so that
    /// serde_json's line and column stay those of the offending value.
    fn enter<E>(&self, field: &'static str, e: E) -> E {
        self.trail.borrow_mut().push(field);
        e
    }
}

/// A section (`text_config`, ...): an object, or `null` for "all defaults".
struct Section<'a, T>(&'a Trail, PhantomData<T>);

impl<'de, 'a, T> DeserializeSeed<'de> for Section<'a, T>
where
    Fields<'a, T>: Visitor<'de, Value = T>,
{
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, 'a, T> Visitor<'de> for Section<'a, T>
where
    Fields<'a, T>: Visitor<'de, Value = T>,
{
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or null")
    }

    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_map(Fields::new(self.0)).map(Some)
    }
}

/// One config section with every field optional (`None`: absent or `null`), its merge and its
/// conversion to the core struct. Listing the core struct's fields in a struct literal makes a
/// field added to mulki-core a compile error here rather than a silently ignored key.
macro_rules! section {
    ($raw:ident, $cfg:ident, $expecting:literal, { $($field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Default)]
        struct $raw {
            $($field: Option<$ty>,)*
        }

        impl $raw {
            /// Field by field, `self` wins where both are set.
            fn or(self, other: Self) -> Self {
                Self { $($field: self.$field.or(other.$field),)* }
            }

            fn finish(self) -> $cfg {
                let d = $cfg::default();
                $cfg { $($field: self.$field.unwrap_or(d.$field),)* }
            }
        }

        impl<'de> Visitor<'de> for Fields<'_, $raw> {
            type Value = $raw;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str($expecting)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$raw, A::Error> {
                let mut raw = $raw::default();
                // A repeated key overwrites, as Python's `json.load` does.
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        $(stringify!($field) => {
                            raw.$field =
                                map.next_value().map_err(|e| self.enter(stringify!($field), e))?;
                        })*
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }
    };
}

section!(RawText, TextConfig, "an HF CLIPTextConfig object", {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    hidden_act: HiddenAct,
    layer_norm_eps: f64,
    pad_token_id: u32,
    bos_token_id: u32,
    eos_token_id: u32,
});

section!(RawVision, VisionConfig, "an HF CLIPVisionConfig object", {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    hidden_act: HiddenAct,
    layer_norm_eps: f64,
});

/// The top level of `config.json`.
#[derive(Default)]
struct RawClip {
    text: Option<RawText>,
    text_dict: Option<RawText>,
    vision: Option<RawVision>,
    vision_dict: Option<RawVision>,
    projection_dim: Option<usize>,
    logit_scale_init_value: Option<f64>,
}

impl RawClip {
    fn finish(self) -> ClipConfig {
        let d = ClipConfig::default();
        let text = self.text.unwrap_or_default().or(self.text_dict.unwrap_or_default());
        let vision = self.vision.unwrap_or_default().or(self.vision_dict.unwrap_or_default());
        ClipConfig {
            text_config: text.finish(),
            vision_config: vision.finish(),
            projection_dim: self.projection_dim.unwrap_or(d.projection_dim),
            logit_scale_init_value: self.logit_scale_init_value.unwrap_or(d.logit_scale_init_value),
        }
    }
}

impl<'de> Visitor<'de> for Fields<'_, RawClip> {
    type Value = RawClip;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an HF CLIPConfig object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawClip, A::Error> {
        let mut raw = RawClip::default();
        while let Some(key) = map.next_key::<String>()? {
            let t = self.trail;
            match key.as_str() {
                "text_config" => {
                    raw.text =
                        map.next_value_seed(Section(t, PhantomData)).map_err(|e| self.enter("text_config", e))?;
                }
                "text_config_dict" => {
                    raw.text_dict =
                        map.next_value_seed(Section(t, PhantomData)).map_err(|e| self.enter("text_config_dict", e))?;
                }
                "vision_config" => {
                    raw.vision =
                        map.next_value_seed(Section(t, PhantomData)).map_err(|e| self.enter("vision_config", e))?;
                }
                "vision_config_dict" => {
                    raw.vision_dict = map
                        .next_value_seed(Section(t, PhantomData))
                        .map_err(|e| self.enter("vision_config_dict", e))?;
                }
                "projection_dim" => {
                    raw.projection_dim = map.next_value().map_err(|e| self.enter("projection_dim", e))?;
                }
                "logit_scale_init_value" => {
                    raw.logit_scale_init_value =
                        map.next_value().map_err(|e| self.enter("logit_scale_init_value", e))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mulki_core::clip::ClipLayout;

    #[test]
    fn param_count_matches_layout() {
        let mut cfgs = vec![ClipConfig::default()];
        let mut small = ClipConfig::default();
        small.text_config.num_hidden_layers = 0;
        small.vision_config.num_hidden_layers = 3;
        small.vision_config.num_channels = 1;
        small.vision_config.image_size = 48;
        small.vision_config.patch_size = 16;
        small.text_config.intermediate_size = 7;
        small.projection_dim = 5;
        cfgs.push(small);
        for cfg in cfgs {
            assert_eq!(param_count(&cfg), Ok(ClipLayout::new(&cfg).len));
        }
    }

    #[test]
    fn overflow_is_reported() {
        let mut cfg = ClipConfig::default();
        cfg.text_config.vocab_size = usize::MAX / 2;
        assert_eq!(param_count(&cfg), Err("text_config"));
        let mut cfg = ClipConfig::default();
        cfg.vision_config.patch_size = 1 << 20;
        cfg.vision_config.image_size = 1 << 62;
        assert_eq!(param_count(&cfg), Err("vision_config"));
    }
}
