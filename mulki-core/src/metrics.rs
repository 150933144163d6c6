//! MTIL metrics of METHOD.md over an accuracy matrix: Transfer, Avg, Last, BWT, also over a
//! partial matrix (after task t < n). `rows[0]` is the zero-shot row, `rows[t]` the row after
//! task t; every row has n columns (one per task's dataset).

/// The four metrics; `None` where undefined (Transfer with one task, BWT after the first task).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    pub transfer: Option<f64>,
    pub avg: f64,
    pub last: f64,
    pub bwt: Option<f64>,
}

fn mean(xs: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for x in xs {
        s += x;
        n += 1;
    }
    (n > 0).then(|| s / n as f64)
}

/// Metrics after the last row present (`rows.len() − 1` tasks trained). `None` when no task has
/// been trained yet (only the zero-shot row) or rows have unequal widths.
pub fn metrics(rows: &[alloc::vec::Vec<f64>]) -> Option<Metrics> {
    let t = rows.len().checked_sub(1).filter(|&t| t >= 1)?;
    let n = rows[0].len();
    if n == 0 || rows.iter().any(|r| r.len() != n) {
        return None;
    }
    // Transfer: over columns j = 2..n (1-based), the mean of rows 1..min(j−1, t).
    let transfer = mean((2..=n).filter_map(|j| mean((1..=(j - 1).min(t)).map(|r| rows[r][j - 1]))));
    let avg = mean(rows[1..=t].iter().flat_map(|r| r.iter().copied()))?;
    let last = mean(rows[t].iter().copied())?;
    let bwt = mean((1..t).map(|j| rows[t][j - 1] - rows[j][j - 1]));
    Some(Metrics { transfer, avg, last, bwt })
}

/// Mean and sample standard deviation (divided by count − 1; 0 for a single value).
pub fn mean_std(xs: &[f64]) -> Option<(f64, f64)> {
    let m = mean(xs.iter().copied())?;
    if xs.len() < 2 {
        return Some((m, 0.0));
    }
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64;
    Some((m, libm::sqrt(var)))
}
