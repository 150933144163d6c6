//! The CLIP model (HF `CLIPModel`): config, parameter layout, both towers.
pub mod config;
pub mod init;
pub mod layout;
pub mod model;
pub mod text;
pub mod vision;

pub use config::{ClipConfig, HiddenAct, TextConfig, VisionConfig};
pub use layout::ClipLayout;
pub use model::{Capacity, Clip};
