//! The continual-learning run: its config, the training loop, evaluation and checkpoints.
pub mod config;
