//! Losses, composed from backend primitives so every backend shares one definition.
pub mod base;
pub mod connections;
pub mod contrastive;
pub mod features;
pub mod mulki;
pub mod prototypes;
pub mod relations;
pub mod soft_contrastive;
pub mod tally;
pub mod zscl;
