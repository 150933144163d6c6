//! The parameter table: every CLIP tensor once, with its HF key, shape and group, laid out in one
//! flat buffer. Gradients, AdamW moments, ensemble copies and anchors reuse this layout, so a
//! per-parameter update is one call over the buffer and a trainable group is a range.
//!
//! Order is chosen for the kernels: `q_proj`, `k_proj`, `v_proj` weights are adjacent (and their
//! biases), so one GEMM with 3·c outputs computes all three while the keys stay HF's.
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use super::config::ClipConfig;
use crate::backend::{ArenaId, Buf};

/// Which part of the model a tensor belongs to; groups are contiguous ranges of the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Text,
    Vision,
    Projection,
    LogitScale,
}

/// A tensor's place in any buffer of the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamView {
    pub offset: usize,
    pub len: usize,
}

impl ParamView {
    /// The same tensor in the buffer `arena` (parameters, gradients, moments, ...).
    pub fn at(self, arena: ArenaId) -> Buf {
        Buf { arena, offset: self.offset, len: self.len }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamEntry {
    /// HF key, exactly as in `model.safetensors` (odd spellings included).
    pub name: String,
    pub shape: Vec<usize>,
    pub view: ParamView,
    pub group: Group,
}

/// Views of one pre-LN transformer block (HF `CLIPEncoderLayer`).
#[derive(Clone, Copy, Debug)]
pub struct BlockParams {
    pub ln1_w: ParamView,
    pub ln1_b: ParamView,
    /// `q_proj`, `k_proj`, `v_proj` weights stacked: [3c, c].
    pub qkv_w: ParamView,
    /// Their biases stacked: [3c].
    pub qkv_b: ParamView,
    pub out_w: ParamView,
    pub out_b: ParamView,
    pub ln2_w: ParamView,
    pub ln2_b: ParamView,
    pub fc1_w: ParamView,
    pub fc1_b: ParamView,
    pub fc2_w: ParamView,
    pub fc2_b: ParamView,
}

/// Views of the text tower.
#[derive(Clone, Debug)]
pub struct TextParams {
    pub token_emb: ParamView,
    pub pos_emb: ParamView,
    pub blocks: Vec<BlockParams>,
    pub ln_final_w: ParamView,
    pub ln_final_b: ParamView,
    /// `text_projection.weight` [proj, c].
    pub proj: ParamView,
}

/// Views of the image tower.
#[derive(Clone, Debug)]
pub struct VisionParams {
    pub class_emb: ParamView,
    /// Conv weight [c, channels, patch, patch] = [c, patch_dim] row-major.
    pub patch_w: ParamView,
    pub pos_emb: ParamView,
    pub pre_ln_w: ParamView,
    pub pre_ln_b: ParamView,
    pub blocks: Vec<BlockParams>,
    pub post_ln_w: ParamView,
    pub post_ln_b: ParamView,
    /// `visual_projection.weight` [proj, c].
    pub proj: ParamView,
}

/// The whole table plus typed views into it.
#[derive(Clone, Debug)]
pub struct ClipLayout {
    pub entries: Vec<ParamEntry>,
    /// Total number of scalars.
    pub len: usize,
    pub text: TextParams,
    pub vision: VisionParams,
    pub logit_scale: ParamView,
}

struct Builder {
    entries: Vec<ParamEntry>,
    len: usize,
}

impl Builder {
    fn push(&mut self, name: String, shape: Vec<usize>, group: Group) -> ParamView {
        let len = shape.iter().product();
        let view = ParamView { offset: self.len, len };
        self.len += len;
        self.entries.push(ParamEntry { name, shape, view, group });
        view
    }

    /// Adjacent tensors pushed in a row, returned as one view spanning them.
    fn push_stacked(&mut self, names: [String; 3], shape: &[usize], group: Group) -> ParamView {
        let first = self.push(names[0].clone(), shape.to_vec(), group);
        self.push(names[1].clone(), shape.to_vec(), group);
        self.push(names[2].clone(), shape.to_vec(), group);
        ParamView { offset: first.offset, len: 3 * first.len }
    }

    fn block(&mut self, prefix: &str, c: usize, inter: usize, group: Group) -> BlockParams {
        let qkv = |what: &str| ["q_proj", "k_proj", "v_proj"].map(|p| format!("{prefix}.self_attn.{p}.{what}"));
        let ln1_w = self.push(format!("{prefix}.layer_norm1.weight"), vec![c], group);
        let ln1_b = self.push(format!("{prefix}.layer_norm1.bias"), vec![c], group);
        let qkv_w = self.push_stacked(qkv("weight"), &[c, c], group);
        let qkv_b = self.push_stacked(qkv("bias"), &[c], group);
        let out_w = self.push(format!("{prefix}.self_attn.out_proj.weight"), vec![c, c], group);
        let out_b = self.push(format!("{prefix}.self_attn.out_proj.bias"), vec![c], group);
        let ln2_w = self.push(format!("{prefix}.layer_norm2.weight"), vec![c], group);
        let ln2_b = self.push(format!("{prefix}.layer_norm2.bias"), vec![c], group);
        let fc1_w = self.push(format!("{prefix}.mlp.fc1.weight"), vec![inter, c], group);
        let fc1_b = self.push(format!("{prefix}.mlp.fc1.bias"), vec![inter], group);
        let fc2_w = self.push(format!("{prefix}.mlp.fc2.weight"), vec![c, inter], group);
        let fc2_b = self.push(format!("{prefix}.mlp.fc2.bias"), vec![c], group);
        BlockParams { ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b }
    }
}

impl ClipLayout {
    pub fn new(cfg: &ClipConfig) -> Self {
        let mut b = Builder { entries: Vec::new(), len: 0 };
        let (t, v, proj) = (&cfg.text_config, &cfg.vision_config, cfg.projection_dim);

        let g = Group::Text;
        let token_emb =
            b.push("text_model.embeddings.token_embedding.weight".into(), vec![t.vocab_size, t.hidden_size], g);
        let pos_emb = b.push(
            "text_model.embeddings.position_embedding.weight".into(),
            vec![t.max_position_embeddings, t.hidden_size],
            g,
        );
        let text_blocks = (0..t.num_hidden_layers)
            .map(|i| b.block(&format!("text_model.encoder.layers.{i}"), t.hidden_size, t.intermediate_size, g))
            .collect();
        let ln_final_w = b.push("text_model.final_layer_norm.weight".into(), vec![t.hidden_size], g);
        let ln_final_b = b.push("text_model.final_layer_norm.bias".into(), vec![t.hidden_size], g);

        let g = Group::Vision;
        let c = v.hidden_size;
        let class_emb = b.push("vision_model.embeddings.class_embedding".into(), vec![c], g);
        let patch_w = b.push(
            "vision_model.embeddings.patch_embedding.weight".into(),
            vec![c, v.num_channels, v.patch_size, v.patch_size],
            g,
        );
        let vpos_emb = b.push("vision_model.embeddings.position_embedding.weight".into(), vec![v.tokens(), c], g);
        let pre_ln_w = b.push("vision_model.pre_layrnorm.weight".into(), vec![c], g);
        let pre_ln_b = b.push("vision_model.pre_layrnorm.bias".into(), vec![c], g);
        let vision_blocks = (0..v.num_hidden_layers)
            .map(|i| b.block(&format!("vision_model.encoder.layers.{i}"), c, v.intermediate_size, g))
            .collect();
        let post_ln_w = b.push("vision_model.post_layernorm.weight".into(), vec![c], g);
        let post_ln_b = b.push("vision_model.post_layernorm.bias".into(), vec![c], g);

        let g = Group::Projection;
        let vproj = b.push("visual_projection.weight".into(), vec![proj, c], g);
        let tproj = b.push("text_projection.weight".into(), vec![proj, t.hidden_size], g);
        let logit_scale = b.push("logit_scale".into(), vec![], Group::LogitScale);

        ClipLayout {
            len: b.len,
            entries: b.entries,
            text: TextParams { token_emb, pos_emb, blocks: text_blocks, ln_final_w, ln_final_b, proj: tproj },
            vision: VisionParams {
                class_emb,
                patch_w,
                pos_emb: vpos_emb,
                pre_ln_w,
                pre_ln_b,
                blocks: vision_blocks,
                post_ln_w,
                post_ln_b,
                proj: vproj,
            },
            logit_scale,
        }
    }

    /// The entry with this HF key.
    pub fn find(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The contiguous range of a group.
    pub fn group_range(&self, group: Group) -> Range<usize> {
        let mut it = self.entries.iter().filter(|e| e.group == group);
        match (it.next(), it.next_back()) {
            (None, _) => 0..0,
            (Some(first), last) => {
                let end = last.unwrap_or(first);
                first.view.offset..end.view.offset + end.view.len
            }
        }
    }

    /// Everything MTIL trains: both towers and the projections; `logit_scale` stays frozen.
    pub fn trainable(&self) -> Range<usize> {
        0..self.logit_scale.offset
    }
}
