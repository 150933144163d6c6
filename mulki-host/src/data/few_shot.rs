//! Few-shot subsets: `shots` items per class, drawn without replacement by a partial
//! Fisher–Yates shuffle per class (as CoOp's `generate_fewshot_dataset`, with every item taken
//! when a class has fewer), from counter-based streams so the subset depends only on the seed.
use mulki_core::rng::Rng;

use super::Split;

/// Keeps few-shot draws independent of the epoch permutations seeded by the same (seed, task).
const SALT: u64 = 0x6665_7773_686f_7473; // "fewshots"

/// `shots` items per class of `split` (all of a class with fewer), in the split's order. Class
/// `c` draws from `Rng::for_counter(seed ^ SALT, task, c)`.
pub fn few_shot(split: &Split, shots: usize, seed: u64, task: u64) -> Split {
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); split.classes];
    for (i, it) in split.items.iter().enumerate() {
        per_class[it.label].push(i);
    }
    let mut keep = Vec::new();
    for (c, idx) in per_class.iter_mut().enumerate() {
        let n = idx.len();
        if n > shots {
            let mut rng = Rng::for_counter(seed ^ SALT, task, c as u64);
            for i in 0..shots {
                let j = i + rng.below((n - i) as u64) as usize;
                idx.swap(i, j);
            }
            idx.truncate(shots);
        }
        keep.extend_from_slice(idx);
    }
    keep.sort_unstable();
    Split { items: keep.into_iter().map(|i| split.items[i].clone()).collect(), classes: split.classes }
}
