//! The continual-learning run: its config, the training loop, evaluation and checkpoints.
pub mod config;
pub mod demo;
pub mod device;
pub mod folders;
pub mod pretrain;
pub mod progress;
pub mod session;
pub mod source;
pub mod text;
pub mod trainer;
