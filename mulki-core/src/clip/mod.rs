//! The CLIP model (HF `CLIPModel`): config, parameter layout, both towers.
pub mod config;
pub mod layout;
