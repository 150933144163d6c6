//! Counter-based sampling order: global sample position g = step·B + i falls in epoch g / N at
//! position g % N of a Fisher–Yates permutation seeded by `Rng::for_counter(seed, task, epoch)`,
//! so any step's batch is recomputable (resume) and every epoch visits each item once.
use mulki_core::rng::Rng;

/// Keeps augmentation streams apart from the permutations seeded by the same (seed, task).
const AUGMENT_SALT: u64 = 0x6175_676d_656e_7421; // "augment!"

/// The permutation of `0..n` for `epoch`: Fisher–Yates (from the top, `j = below(i + 1)`).
pub fn epoch_permutation(n: usize, seed: u64, task: u64, epoch: u64) -> Vec<usize> {
    let mut rng = Rng::for_counter(seed, task, epoch);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// The augmentation stream of the sample at global position `counter` of a task (what a
/// [`super::BatchSpec`] carries per sample).
pub fn augment_rng(seed: u64, task: u64, counter: u64) -> Rng {
    Rng::for_counter(seed ^ AUGMENT_SALT, task, counter)
}

/// Item indices of batch `step` (positions `step·batch ..`); empty when `n_items == 0`.
pub fn sample_indices(n_items: usize, batch: usize, step: u64, seed: u64, task: u64) -> Vec<usize> {
    EpochSampler::new(n_items, seed, task).batch(batch, step)
}

/// [`sample_indices`] with the last two epochs' permutations cached (a batch may straddle two).
#[derive(Clone, Debug)]
pub struct EpochSampler {
    n: usize,
    seed: u64,
    task: u64,
    cache: [Option<(u64, Vec<usize>)>; 2],
}

impl EpochSampler {
    pub fn new(n_items: usize, seed: u64, task: u64) -> Self {
        EpochSampler { n: n_items, seed, task, cache: [None, None] }
    }

    pub fn n_items(&self) -> usize {
        self.n
    }

    /// The item at global position `g`. Panics when the sampler has no items.
    pub fn index_at(&mut self, g: u64) -> usize {
        assert!(self.n > 0, "EpochSampler: no items to sample");
        let n = self.n as u64;
        let (epoch, pos) = (g / n, (g % n) as usize);
        self.permutation(epoch)[pos]
    }

    /// The permutation of `epoch` (computed once while it stays among the last two used).
    pub fn permutation(&mut self, epoch: u64) -> &[usize] {
        let hit = self.cache.iter().position(|c| c.as_ref().is_some_and(|(e, _)| *e == epoch));
        let slot = match hit {
            Some(s) => s,
            None => {
                // Evict the older epoch.
                let s = match (&self.cache[0], &self.cache[1]) {
                    (None, _) => 0,
                    (_, None) => 1,
                    (Some((a, _)), Some((b, _))) => usize::from(b < a),
                };
                let p = epoch_permutation(self.n, self.seed, self.task, epoch);
                self.cache[s] = Some((epoch, p));
                s
            }
        };
        match &self.cache[slot] {
            Some((_, p)) => p,
            None => &[],
        }
    }

    /// Item indices of batch `step` of `batch` samples; empty when there are no items.
    pub fn batch(&mut self, batch: usize, step: u64) -> Vec<usize> {
        if self.n == 0 {
            return Vec::new();
        }
        let first = step * batch as u64;
        (0..batch as u64).map(|i| self.index_at(first + i)).collect()
    }
}
