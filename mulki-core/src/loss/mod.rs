//! Losses, composed from backend primitives so every backend shares one definition.
pub mod contrastive;
