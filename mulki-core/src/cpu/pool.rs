//! Work splitting for the CPU kernels. Work is cut into tasks whose boundaries depend only on
//! the problem's dims, never on the thread count, so results are bit-identical for any
//! `--threads`. With feature `std`, tasks run on scoped OS threads that pull task indices from
//! an atomic counter and block in `join` (no spin-waiting); without it they run in order.

/// Below this many scalar operations a kernel runs on the calling thread: spawning a thread
/// (tens of µs) costs more than it saves. Task boundaries do not change, only who runs them.
const MIN_PARALLEL_WORK: usize = 1 << 16;

/// How many threads the CPU kernels may use.
#[derive(Clone, Copy, Debug)]
pub struct Pool {
    threads: usize,
}

impl Pool {
    /// `threads` is clamped to at least 1; without feature `std` it is ignored.
    pub fn new(threads: usize) -> Self {
        Pool { threads: threads.max(1) }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i)` for every `i < tasks`; `work` is the approximate scalar operations per task.
    pub fn run(&self, tasks: usize, work: usize, f: impl Fn(usize) + Sync) {
        #[cfg(feature = "std")]
        if self.threads > 1 && tasks > 1 && tasks.saturating_mul(work) >= MIN_PARALLEL_WORK {
            use core::sync::atomic::{AtomicUsize, Ordering};
            let next = AtomicUsize::new(0);
            let worker = || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tasks {
                    break;
                }
                f(i);
            };
            std::thread::scope(|s| {
                for _ in 1..self.threads.min(tasks) {
                    s.spawn(worker);
                }
                worker();
            });
            return;
        }
        let _ = (work, MIN_PARALLEL_WORK);
        for i in 0..tasks {
            f(i);
        }
    }
}

/// A raw pointer that tasks share to write disjoint parts of one output.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<E>(*mut E);

// SAFETY: only used by kernels whose tasks write provably disjoint index sets.
unsafe impl<E> Send for SyncPtr<E> {}
unsafe impl<E> Sync for SyncPtr<E> {}

impl<E> SyncPtr<E> {
    pub(crate) fn new(s: &mut [E]) -> Self {
        SyncPtr(s.as_mut_ptr())
    }
    pub(crate) fn ptr(&self) -> *mut E {
        self.0
    }
    /// # Safety
    /// `start + len` is within the slice this was made from, and no other live reference covers
    /// `[start, start + len)`.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice<'a>(&self, start: usize, len: usize) -> &'a mut [E] {
        core::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Number of fixed-size chunks covering `n`.
pub(crate) fn chunks(n: usize, size: usize) -> usize {
    n.div_ceil(size)
}

/// The index range of chunk `i`.
pub(crate) fn chunk_range(i: usize, n: usize, size: usize) -> core::ops::Range<usize> {
    let start = i * size;
    start..(start + size).min(n)
}

/// Rows per task for row-independent kernels.
const ROW_CHUNK: usize = 16;

impl Pool {
    /// Runs `f(rows)` over fixed chunks of `[0, n_rows)`; `row_work` is the cost of one row.
    pub(crate) fn rows(&self, n_rows: usize, row_work: usize, f: impl Fn(core::ops::Range<usize>) + Sync) {
        let tasks = chunks(n_rows, ROW_CHUNK);
        self.run(tasks, ROW_CHUNK * row_work, |i| f(chunk_range(i, n_rows, ROW_CHUNK)));
    }

    /// Runs `f(cols)` over fixed chunks of `[0, n_cols)` for column reductions (bias and norm
    /// weight gradients, scatter-adds): each task sums its columns over all rows in row order.
    pub(crate) fn cols(&self, n_cols: usize, col_work: usize, f: impl Fn(core::ops::Range<usize>) + Sync) {
        const COL_CHUNK: usize = 64;
        let tasks = chunks(n_cols, COL_CHUNK);
        self.run(tasks, COL_CHUNK * col_work, |i| f(chunk_range(i, n_cols, COL_CHUNK)));
    }
}
