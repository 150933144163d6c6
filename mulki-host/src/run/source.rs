//! What the training loop needs from the data layer, as a trait: batches addressed by counters
//! (task, step, micro-batch), so a resumed run reads exactly what an uninterrupted one would.
use anyhow::Result;

/// Images [b, 3, side, side] (CLIP-normalised) and their labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
    /// Files replaced under `--skip-bad-images`, for the log.
    pub warnings: Vec<String>,
}

/// Which split and transform a batch comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Training split, augmented (RandomResizedCrop), in the counter-based epoch order.
    Train,
    /// Training split with the evaluation transform, in file order (prototype initialisation).
    TrainEval,
    /// Test split with the evaluation transform, in file order.
    Test,
}

pub trait DataSource {
    /// Images in a split of task `task`.
    fn len(&self, task: usize, split: Split) -> usize;
    /// Micro-batch `micro` (of `b` images) of optimiser step `step` (1-based) of task `task`.
    fn train_batch(&mut self, task: usize, step: usize, micro: usize, b: usize) -> Result<Batch>;
    /// Images `[start, start + n)` of a split in file order with the evaluation transform.
    fn ordered(&mut self, task: usize, split: Split, start: usize, n: usize) -> Result<Batch>;
    /// ZSCL's reference images for step `step` (`labels` are the caption rows).
    fn reference_batch(&mut self, task: usize, step: usize, n: usize) -> Result<Batch>;
    /// All reference captions, in order.
    fn reference_captions(&self) -> &[String];
}
