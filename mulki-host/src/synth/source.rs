//! [`SynthSource`]: the synthetic task stream behind the training loop's [`DataSource`]. Train
//! batches follow the real loader's counter-based epoch order (sample at global position g is
//! item perm_epoch[g mod N]), so a resumed run reads the same images; no augmentation.
use anyhow::{bail, Result};

use super::pretrain::reference_pairs;
use super::render::{normalise_into, render, render_into};
use super::tasks::{scene, TaskSpec};
use super::world::Scene;
use crate::data::sampler::EpochSampler;
use crate::run::source::{Batch, DataSource, Split};

/// Keeps reference batches independent of the tasks' sampling order.
const REFERENCE_SALT: u64 = 0x7265_6665_7265_6e63; // "referenc"
/// Pairs in ZSCL's reference set.
pub const REFERENCE_SIZE: usize = 2000;

pub struct SynthSource {
    tasks: Vec<TaskSpec>,
    seed: u64,
    side: usize,
    micro_batches: usize,
    samplers: Vec<EpochSampler>,
    reference: Vec<Scene>,
    captions: Vec<String>,
    reference_samplers: Vec<EpochSampler>,
    /// Each task's whole test split as RGB8, rendered on first use (3 MB per 1000 images):
    /// every evaluation reads every test split.
    test_cache: Vec<Option<Vec<u8>>>,
}

impl SynthSource {
    /// The stream `tasks` at `side`×`side`, with a reference set of [`REFERENCE_SIZE`] pairs.
    pub fn new(tasks: Vec<TaskSpec>, seed: u64, side: usize) -> Self {
        Self::with_reference(tasks, seed, side, REFERENCE_SIZE)
    }

    /// [`Self::new`] with `reference_size` reference pairs.
    pub fn with_reference(tasks: Vec<TaskSpec>, seed: u64, side: usize, reference_size: usize) -> Self {
        let (reference, captions): (Vec<Scene>, Vec<String>) =
            reference_pairs(seed, reference_size).into_iter().map(|(s, c)| (s, c.text)).unzip();
        let samplers = (0..tasks.len()).map(|t| EpochSampler::new(tasks[t].train_size, seed, t as u64)).collect();
        let reference_samplers =
            (0..tasks.len()).map(|t| EpochSampler::new(reference.len(), seed ^ REFERENCE_SALT, t as u64)).collect();
        SynthSource {
            test_cache: vec![None; tasks.len()],
            tasks,
            seed,
            side,
            micro_batches: 1,
            samplers,
            reference,
            captions,
            reference_samplers,
        }
    }

    /// Micro-batches per optimiser step (gradient accumulation), which sets the global sample
    /// position `((step − 1)·micro_batches + micro)·b + i`.
    pub fn with_micro_batches(mut self, micro_batches: usize) -> Self {
        self.micro_batches = micro_batches.max(1);
        self
    }

    pub fn tasks(&self) -> &[TaskSpec] {
        &self.tasks
    }

    pub fn side(&self) -> usize {
        self.side
    }

    /// The reference scenes (`reference_captions()[i]` describes `reference_scenes()[i]`).
    pub fn reference_scenes(&self) -> &[Scene] {
        &self.reference
    }

    fn spec(&self, task: usize) -> Result<&TaskSpec> {
        match self.tasks.get(task) {
            Some(t) => Ok(t),
            None => bail!("synthetic stream: no task {task} (it has {})", self.tasks.len()),
        }
    }

    /// Renders items `indices` of `split` into a batch.
    fn render_items(&self, task: usize, split: Split, indices: &[usize]) -> Result<Batch> {
        let spec = self.spec(task)?;
        let mut batch = Batch {
            pixels: Vec::with_capacity(indices.len() * 3 * self.side * self.side),
            labels: Vec::with_capacity(indices.len()),
            warnings: Vec::new(),
        };
        let mut rgb = vec![0u8; 3 * self.side * self.side];
        for &i in indices {
            let (s, label) = scene(spec, split, i, self.seed);
            render_into(&s, self.side, &mut rgb);
            normalise_into(&rgb, self.side, &mut batch.pixels);
            batch.labels.push(label);
        }
        Ok(batch)
    }

    fn test_images(&mut self, task: usize) -> Result<&[u8]> {
        let n = self.spec(task)?.test_size;
        if self.test_cache[task].is_none() {
            let px = 3 * self.side * self.side;
            let mut all = vec![0u8; n * px];
            let spec = &self.tasks[task];
            for (i, out) in all.chunks_mut(px).enumerate() {
                let (s, _) = scene(spec, Split::Test, i, self.seed);
                render_into(&s, self.side, out);
            }
            self.test_cache[task] = Some(all);
        }
        Ok(self.test_cache[task].as_deref().unwrap_or_default())
    }
}

impl DataSource for SynthSource {
    fn len(&self, task: usize, split: Split) -> usize {
        self.tasks.get(task).map_or(0, |t| match split {
            Split::Train | Split::TrainEval => t.train_size,
            Split::Test => t.test_size,
        })
    }

    fn train_batch(&mut self, task: usize, step: usize, micro: usize, b: usize) -> Result<Batch> {
        if self.len(task, Split::Train) == 0 {
            bail!("synthetic task {task} has no training images");
        }
        let first = ((step.saturating_sub(1) * self.micro_batches + micro) * b) as u64;
        let sampler = &mut self.samplers[task];
        let indices: Vec<usize> = (0..b as u64).map(|i| sampler.index_at(first + i)).collect();
        self.render_items(task, Split::Train, &indices)
    }

    fn ordered(&mut self, task: usize, split: Split, start: usize, n: usize) -> Result<Batch> {
        let len = self.len(task, split);
        if start + n > len {
            bail!("synthetic task {task}: images {start}..{} of a split of {len}", start + n);
        }
        if split != Split::Test {
            let indices: Vec<usize> = (start..start + n).collect();
            return self.render_items(task, split, &indices);
        }
        let spec = self.spec(task)?;
        let labels = (start..start + n).map(|i| scene(spec, split, i, self.seed).1).collect();
        let side = self.side;
        let px = 3 * side * side;
        let images = self.test_images(task)?;
        let mut pixels = Vec::with_capacity(n * px);
        for rgb in images[start * px..(start + n) * px].chunks(px) {
            normalise_into(rgb, side, &mut pixels);
        }
        Ok(Batch { pixels, labels, warnings: Vec::new() })
    }

    fn reference_batch(&mut self, task: usize, step: usize, n: usize) -> Result<Batch> {
        if self.reference.is_empty() {
            bail!("the synthetic reference set is empty");
        }
        self.spec(task)?;
        let first = (step.saturating_sub(1) * n) as u64;
        let sampler = &mut self.reference_samplers[task];
        let rows: Vec<usize> = (0..n as u64).map(|i| sampler.index_at(first + i)).collect();
        let mut pixels = Vec::with_capacity(n * 3 * self.side * self.side);
        for &r in &rows {
            normalise_into(&render(&self.reference[r], self.side), self.side, &mut pixels);
        }
        Ok(Batch { pixels, labels: rows.iter().map(|&r| r as u32).collect(), warnings: Vec::new() })
    }

    fn reference_captions(&self) -> &[String] {
        &self.captions
    }
}
