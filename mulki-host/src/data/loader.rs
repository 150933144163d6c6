//! The batch loader: decodes and transforms a batch's images in parallel (a private rayon pool)
//! into one contiguous [b, 3, size, size] buffer, optionally on a background thread so the next
//! batch is ready when the training step asks. Each sample owns its output slot and its RNG, so
//! the result does not depend on the thread count or on prefetching.
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use mulki_core::rng::Rng;
use rayon::prelude::*;

use super::sampler::augment_rng;
use super::{DataError, Split, Transform};

/// How a [`Loader`] turns items into tensors.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoaderConfig {
    pub transform: Transform,
    /// Decoding threads (0: one per core).
    pub threads: usize,
    /// Replace an image that cannot be read by the next readable item (with a warning in the
    /// batch) instead of failing.
    pub skip_bad_images: bool,
}

/// One sample of a batch request: the item and the RNG its augmentation draws from.
#[derive(Clone, Debug)]
pub struct SampleSpec {
    pub index: usize,
    pub rng: Rng,
}

/// The samples of one batch, in output order.
#[derive(Clone, Debug, Default)]
pub struct BatchSpec {
    pub samples: Vec<SampleSpec>,
}

impl BatchSpec {
    /// Items for an un-augmented transform (the RNG is not drawn from).
    pub fn eval(indices: &[usize]) -> Self {
        let samples = indices.iter().map(|&index| SampleSpec { index, rng: Rng::new(0) }).collect();
        BatchSpec { samples }
    }

    /// Items for training: sample `i` augments with `augment_rng(seed, task, first + i)`, where
    /// `first` is the global position of the batch's first sample (step · batch size).
    pub fn train(indices: &[usize], seed: u64, task: u64, first: u64) -> Self {
        let samples = indices
            .iter()
            .zip(first..)
            .map(|(&index, g)| SampleSpec { index, rng: augment_rng(seed, task, g) })
            .collect();
        BatchSpec { samples }
    }
}

/// A loaded batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// [b, 3, size, size], CLIP-normalised.
    pub pixels: Vec<f32>,
    pub labels: Vec<usize>,
    /// The items actually used (differs from the request where a bad image was replaced).
    pub indices: Vec<usize>,
    pub size: usize,
    /// One line per replaced image.
    pub warnings: Vec<String>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

struct Shared {
    split: Split,
    cfg: LoaderConfig,
    pool: rayon::ThreadPool,
}

struct Worker {
    tx: Option<mpsc::Sender<BatchSpec>>,
    rx: mpsc::Receiver<Result<Batch, DataError>>,
    handle: Option<JoinHandle<()>>,
}

/// Loads batches of one split; see the module docs.
pub struct Loader {
    shared: Arc<Shared>,
    worker: Option<Worker>,
    pending: usize,
}

impl Loader {
    pub fn new(split: Split, cfg: LoaderConfig) -> Result<Self, DataError> {
        if cfg.transform.size() == 0 {
            return Err(DataError::Loader("the image size must be >= 1".into()));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("mulki-data-{i}"))
            .build()
            .map_err(|e| DataError::Loader(format!("cannot start decoding threads: {e}")))?;
        Ok(Loader { shared: Arc::new(Shared { split, cfg, pool }), worker: None, pending: 0 })
    }

    pub fn split(&self) -> &Split {
        &self.shared.split
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.shared.cfg
    }

    /// Loads a batch now, on the calling thread plus the pool.
    pub fn load(&self, spec: &BatchSpec) -> Result<Batch, DataError> {
        self.shared.load(spec)
    }

    /// Starts loading `spec` in the background; [`Loader::take`] returns requests in order.
    pub fn request(&mut self, spec: BatchSpec) {
        let worker = self.worker.get_or_insert_with(|| spawn(Arc::clone(&self.shared)));
        if let Some(tx) = &worker.tx {
            // A send only fails if the worker died; `take` reports that.
            let _ = tx.send(spec);
        }
        self.pending += 1;
    }

    /// Requests not yet taken.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Waits for the oldest requested batch.
    pub fn take(&mut self) -> Result<Batch, DataError> {
        let worker = match &self.worker {
            Some(w) if self.pending > 0 => w,
            _ => return Err(DataError::Loader("take() without a pending request".into())),
        };
        self.pending -= 1;
        worker.rx.recv().map_err(|_| DataError::Loader("the prefetch thread stopped".into()))?
    }
}

fn spawn(shared: Arc<Shared>) -> Worker {
    let (tx, jobs) = mpsc::channel::<BatchSpec>();
    let (done, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("mulki-prefetch".into())
        .spawn(move || {
            for spec in jobs {
                if done.send(shared.load(&spec)).is_err() {
                    break;
                }
            }
        })
        .ok();
    Worker { tx: Some(tx), rx, handle }
}

impl Drop for Loader {
    fn drop(&mut self) {
        if let Some(w) = &mut self.worker {
            w.tx = None; // ends the worker's loop once queued jobs are done
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

impl Shared {
    fn load(&self, spec: &BatchSpec) -> Result<Batch, DataError> {
        let n = self.split.len();
        if let Some(s) = spec.samples.iter().find(|s| s.index >= n) {
            return Err(DataError::Loader(format!("item {} requested from a split of {n} items", s.index)));
        }
        let size = self.cfg.transform.size();
        let per = 3 * size * size;
        let mut pixels = vec![0f32; spec.samples.len() * per];
        let results: Vec<Result<(usize, Option<String>), DataError>> = self.pool.install(|| {
            pixels.par_chunks_mut(per).zip(spec.samples.par_iter()).map(|(out, s)| self.fill(s, out)).collect()
        });
        let mut indices = Vec::with_capacity(results.len());
        let mut warnings = Vec::new();
        for r in results {
            let (i, w) = r?;
            indices.push(i);
            warnings.extend(w);
        }
        Ok(Batch {
            pixels,
            labels: indices.iter().map(|&i| self.split.items[i].label).collect(),
            indices,
            size,
            warnings,
        })
    }

    /// Transforms sample `s` into `out`; a bad image is replaced by the next readable item
    /// (cyclically) when skipping is on, with the same RNG.
    fn fill(&self, s: &SampleSpec, out: &mut [f32]) -> Result<(usize, Option<String>), DataError> {
        let items = &self.split.items;
        let first_err = match items[s.index].load() {
            Ok(img) => {
                self.cfg.transform.apply(&img, &mut s.rng.clone(), out);
                return Ok((s.index, None));
            }
            Err(e) => e,
        };
        if !self.cfg.skip_bad_images {
            return Err(first_err.into());
        }
        let n = items.len();
        for k in 1..n {
            let i = (s.index + k) % n;
            if let Ok(img) = items[i].load() {
                self.cfg.transform.apply(&img, &mut s.rng.clone(), out);
                let w = format!("{first_err}; replaced by {}", items[i].describe());
                return Ok((i, Some(w)));
            }
        }
        Err(first_err.into())
    }
}
