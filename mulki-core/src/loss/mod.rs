//! Losses, composed from backend primitives so every backend shares one definition.
pub mod base;
pub mod contrastive;
pub mod features;
