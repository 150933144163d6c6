//! [`DataSource`] over datasets on disk (ImageFolder, CSV, IDX) through the data layer's
//! loaders: the training split twice (augmented for steps, with the evaluation transform for
//! prototypes), the test split, and ZSCL's reference set. The next micro-batch is requested in
//! the background while the current step computes.
use anyhow::{Context, Result};

use super::config::RunConfig;
use super::source::{Batch, DataSource, Split};
use crate::data::{
    self, few_shot, BatchSpec, EpochSampler, Loader, LoaderConfig, RandomResizedCrop, ReferenceSet, Transform,
};

struct TaskData {
    train: Loader,
    train_eval: Loader,
    test: Loader,
    sampler: EpochSampler,
}

pub struct FolderSource {
    tasks: Vec<TaskData>,
    reference: Option<(Loader, EpochSampler, Vec<String>)>,
    seed: u64,
    batch: usize,
    /// (task, step, micro) of the batch requested in the background, if any.
    pending: Option<(usize, usize, usize)>,
}

fn convert(b: data::Batch) -> Batch {
    Batch { pixels: b.pixels, labels: b.labels.iter().map(|&y| y as u32).collect(), warnings: b.warnings }
}

impl FolderSource {
    /// Lists every task's splits (few-shot subsets drawn with the seed), for images of `side`
    /// pixels; `threads` decode in parallel.
    pub fn open(cfg: &RunConfig, side: usize, threads: usize, skip_bad_images: bool) -> Result<Self> {
        let lc = |transform| LoaderConfig { transform, threads, skip_bad_images };
        let mut tasks = Vec::new();
        for (t, task) in cfg.tasks.iter().enumerate() {
            let what = |split: &str| format!("task {} ({}): {split} split", t + 1, task.name);
            let mut train = data::Split::train(task).with_context(|| what("train"))?;
            if let Some(shots) = cfg.train.shots {
                train = few_shot(&train, shots, cfg.seed, t as u64);
            }
            let test = data::Split::test(task).with_context(|| what("test"))?;
            if train.is_empty() {
                anyhow::bail!("{}: no images", what("train"));
            }
            let sampler = EpochSampler::new(train.len(), cfg.seed, t as u64);
            tasks.push(TaskData {
                train: Loader::new(train.clone(), lc(Transform::Train(RandomResizedCrop::clip(side))))?,
                train_eval: Loader::new(train, lc(Transform::Eval { size: side }))?,
                test: Loader::new(test, lc(Transform::Eval { size: side }))?,
                sampler,
            });
        }
        let reference = match &cfg.reference {
            Some(r) => {
                let set = ReferenceSet::load(&r.images, &r.captions)?;
                let sampler = set.sampler(cfg.seed, u64::MAX);
                let loader = Loader::new(set.split(), lc(Transform::Train(RandomResizedCrop::clip(side))))?;
                Some((loader, sampler, set.captions))
            }
            None => None,
        };
        Ok(FolderSource { tasks, reference, seed: cfg.seed, batch: cfg.train.batch_size, pending: None })
    }

    fn task(&mut self, t: usize) -> Result<&mut TaskData> {
        self.tasks.get_mut(t).with_context(|| format!("no task {t}"))
    }

    /// The samples of micro-batch `micro` (of `b`) of step `step`: global positions
    /// (step−1)·B + micro·b + i in the epoch order, augmented with their own counters.
    fn spec(&mut self, t: usize, step: usize, micro: usize, b: usize) -> Result<BatchSpec> {
        let (seed, big) = (self.seed, self.batch);
        let first = ((step.saturating_sub(1)) * big + micro * b) as u64;
        let td = self.task(t)?;
        let indices: Vec<usize> = (0..b as u64).map(|i| td.sampler.index_at(first + i)).collect();
        Ok(BatchSpec::train(&indices, seed, t as u64, first))
    }
}

impl DataSource for FolderSource {
    fn len(&self, task: usize, split: Split) -> usize {
        self.tasks.get(task).map_or(0, |t| match split {
            Split::Train | Split::TrainEval => t.train.split().len(),
            Split::Test => t.test.split().len(),
        })
    }

    fn train_batch(&mut self, task: usize, step: usize, micro: usize, b: usize) -> Result<Batch> {
        let acc = self.batch / b.max(1);
        let batch = if self.pending == Some((task, step, micro)) {
            self.pending = None;
            self.task(task)?.train.take()?
        } else {
            let spec = self.spec(task, step, micro, b)?;
            self.task(task)?.train.load(&spec)?
        };
        // Prefetch the next micro-batch of this task while the step runs.
        let next = if micro + 1 < acc.max(1) { (step, micro + 1) } else { (step + 1, 0) };
        let spec = self.spec(task, next.0, next.1, b)?;
        if self.pending.is_none() {
            self.task(task)?.train.request(spec);
            self.pending = Some((task, next.0, next.1));
        }
        Ok(convert(batch))
    }

    fn ordered(&mut self, task: usize, split: Split, start: usize, n: usize) -> Result<Batch> {
        let indices: Vec<usize> = (start..start + n).collect();
        let td = self.task(task)?;
        let loader = match split {
            Split::Test => &td.test,
            _ => &td.train_eval,
        };
        Ok(convert(loader.load(&BatchSpec::eval(&indices))?))
    }

    fn reference_batch(&mut self, _task: usize, step: usize, n: usize) -> Result<Batch> {
        let seed = self.seed;
        let (loader, sampler, _) = self.reference.as_mut().context("the run has no [reference] set")?;
        let first = (step.saturating_sub(1) * n) as u64;
        let indices: Vec<usize> = (0..n as u64).map(|i| sampler.index_at(first + i)).collect();
        let mut batch = convert(loader.load(&BatchSpec::train(&indices, seed, u64::MAX, first))?);
        // The labels of a reference batch are its caption rows.
        batch.labels = indices.iter().map(|&i| i as u32).collect();
        Ok(batch)
    }

    fn reference_captions(&self) -> &[String] {
        self.reference.as_ref().map_or(&[], |r| &r.2)
    }
}
