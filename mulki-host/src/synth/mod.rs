//! The built-in synthetic world: scenes, captions, task stream.
//! Everything is a pure function of (seed, counters), so the demo needs no files: images are
//! rendered on demand (tens of thousands per second) rather than stored.
pub mod caption;
pub mod pretrain;
pub mod render;
pub mod source;
pub mod tasks;
pub mod vocab;
pub mod world;

pub use caption::{caption, matches, soft_targets, soft_targets_text, Caption, CaptionAttrs};
pub use pretrain::{pretrain_batch, pretrain_pair, reference_pairs, PretrainBatch};
pub use render::{render, render_into};
pub use source::SynthSource;
pub use tasks::{default_stream, item, scene, task, Attribute, TaskSpec};
pub use vocab::WordVocab;
pub use world::{Colour, Draw, Pattern, Position, Scene, Shape, Shift, Size};
