//! Run reports: accuracy.csv, metrics.json, report.md, the heat-map and run.json, written after
//! every task so an interrupted run still leaves a complete, readable report. The metrics are
//! mulki-core's; this module only lays them out (per-dataset columns like ZSCL's tables) and
//! reads accuracy.csv back for `compare`.
mod compare;
mod csv;
mod json;
mod markdown;
mod run_info;
mod svg;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mulki_core::metrics::{metrics, Metrics};
use serde::{Deserialize, Serialize};

pub use compare::{compare, compare_seeds};
pub use csv::accuracy_csv;
pub use json::metrics_json;
pub use markdown::report_markdown;
pub use run_info::{git_commit, read_run_json, write_run_json, RunInfo, TrainableParameters, MULKI_VERSION};
pub use svg::{heatmap_svg, viridis};

pub const ACCURACY_CSV: &str = "accuracy.csv";
pub const METRICS_JSON: &str = "metrics.json";
pub const REPORT_MD: &str = "report.md";
pub const HEATMAP_SVG: &str = "heatmap.svg";
pub const RUN_JSON: &str = "run.json";

/// The accuracy matrix of one run so far, with the per-task training log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub method: String,
    /// One per task of the stream, in training order; also the matrix columns.
    pub task_names: Vec<String>,
    /// Row 0 is zero-shot, row t the evaluation after task t; each row holds one accuracy in
    /// percent per task's dataset. Fewer than `task_names.len() + 1` rows while the run goes on.
    pub rows: Vec<Vec<f64>>,
    /// One per finished task (may be shorter, e.g. when read back without metrics.json).
    pub tasks: Vec<TaskLog>,
}

/// What training on one task did, besides the accuracies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskLog {
    pub name: String,
    /// Batch-mean weight of each teacher (empty for methods without teachers). A NaN is
    /// written as `null` by JSON and read back as NaN.
    #[serde(default, deserialize_with = "json::vec_f64_or_nan")]
    pub alpha_mean: Vec<f64>,
    /// Counts of α^Z in 10 equal bins over [0, 1] (empty when not recorded).
    #[serde(default)]
    pub alpha_histogram: Vec<u64>,
    /// ‖θ_t − θ_{t−1}‖₂ of the trainable parameters.
    #[serde(deserialize_with = "json::f64_or_nan")]
    pub drift: f64,
    #[serde(deserialize_with = "json::f64_or_nan")]
    pub wall_seconds: f64,
    pub peak_memory_bytes: u64,
    /// Device memory in use when the task ended (GPU backends; absent on the CPU): equal after
    /// every task once the largest shapes have run, since all buffers are allocated up front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_memory_bytes: Option<u64>,
    /// NaN when training diverged; kept so the report shows it.
    #[serde(deserialize_with = "json::f64_or_nan")]
    pub final_loss: f64,
}

/// The ZSCL table of a run: per-dataset Transfer, Avg. and Last, and the overall metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub tasks_done: usize,
    pub n_tasks: usize,
    /// `None` before the first task is done.
    pub metrics: Option<Metrics>,
    /// Column j: mean of rows 1..min(j − 1, t) (before task j is learned); `None` for j = 1.
    pub transfer: Vec<Option<f64>>,
    /// Column j: mean of rows 1..t.
    pub avg: Vec<Option<f64>>,
    /// Column j: row t.
    pub last: Vec<Option<f64>>,
}

/// Why a report could not be written or read. Every variant names the file (and line and field
/// where there is one), so the message alone locates the problem.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {op}: {error}", path.display())]
    Io { path: PathBuf, op: &'static str, error: std::io::Error },
    /// A CSV record is malformed; `field` is e.g. `column 'MNIST'` (empty for the whole line).
    #[error("{}:{line}: {}{message}", path.display(), field_prefix(field))]
    Parse { path: PathBuf, line: usize, field: String, message: String },
    /// metrics.json is not JSON or lacks a field; serde_json's message has line and column.
    #[error("{}: {message}", path.display())]
    Json { path: PathBuf, message: String },
    /// The report given to a writer is inconsistent (widths, non-finite values, row count).
    #[error("report of '{method}': {field}: {reason}")]
    Invalid { method: String, field: String, reason: String },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl RunReport {
    /// A report holding only the zero-shot row; add tasks with [`RunReport::push`].
    pub fn new(method: impl Into<String>, task_names: Vec<String>, zero_shot: Vec<f64>) -> Self {
        Self { method: method.into(), task_names, rows: vec![zero_shot], tasks: Vec::new() }
    }

    /// Records the evaluation after the next task and its training log.
    pub fn push(&mut self, row: Vec<f64>, log: TaskLog) {
        self.rows.push(row);
        self.tasks.push(log);
    }

    /// The report of a run that trains nothing (the zero-shot preset), read as a method's row
    /// of ZSCL's tables: the model after every task is the zero-shot model, so each task's row
    /// is the zero-shot row (with an empty training log), and Transfer, Avg. and Last are
    /// defined. A report that already has task rows is returned as it is.
    pub fn untrained(mut self) -> Self {
        if self.rows.len() == 1 {
            for name in self.task_names.clone() {
                let log = TaskLog {
                    name,
                    alpha_mean: Vec::new(),
                    alpha_histogram: Vec::new(),
                    drift: 0.0,
                    wall_seconds: 0.0,
                    peak_memory_bytes: 0,
                    device_memory_bytes: None,
                    final_loss: 0.0,
                };
                self.push(self.rows[0].clone(), log);
            }
        }
        self
    }

    pub fn tasks_done(&self) -> usize {
        self.rows.len().saturating_sub(1)
    }

    /// The four metrics after the last row; `None` before the first task.
    pub fn metrics(&self) -> Option<Metrics> {
        metrics(&self.rows)
    }

    /// The report as it stood after `t` tasks (`t` is clamped to the tasks done).
    pub fn truncated(&self, t: usize) -> RunReport {
        let t = t.min(self.tasks_done());
        RunReport {
            method: self.method.clone(),
            task_names: self.task_names.clone(),
            rows: self.rows[..(t + 1).min(self.rows.len())].to_vec(),
            tasks: self.tasks[..t.min(self.tasks.len())].to_vec(),
        }
    }

    /// Per-dataset columns of ZSCL's table next to the overall metrics.
    pub fn summary(&self) -> Summary {
        let n = self.task_names.len();
        let t = self.tasks_done();
        let col_mean = |j: usize, rows: std::ops::RangeInclusive<usize>| {
            let vals: Vec<f64> = rows.filter_map(|r| self.rows.get(r)?.get(j).copied()).collect();
            (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
        };
        Summary {
            tasks_done: t,
            n_tasks: n,
            metrics: self.metrics(),
            transfer: (0..n).map(|j| (j >= 1 && t >= 1).then(|| col_mean(j, 1..=j.min(t))).flatten()).collect(),
            avg: (0..n).map(|j| (t >= 1).then(|| col_mean(j, 1..=t)).flatten()).collect(),
            last: (0..n).map(|j| (t >= 1).then(|| col_mean(j, t..=t)).flatten()).collect(),
        }
    }

    /// Checks what the writers rely on: at least one task, a zero-shot row, at most one row per
    /// task after it, every row one finite accuracy in [0, 100] per task, unique task names.
    pub fn validate(&self) -> Result<(), ReportError> {
        let invalid =
            |field: String, reason: String| ReportError::Invalid { method: self.method.clone(), field, reason };
        let n = self.task_names.len();
        if n == 0 {
            return Err(invalid("task_names".into(), "no tasks".into()));
        }
        for (i, name) in self.task_names.iter().enumerate() {
            if self.task_names[..i].contains(name) {
                return Err(invalid(format!("task_names[{i}]"), format!("duplicate task name '{name}'")));
            }
        }
        if self.rows.is_empty() || self.rows.len() > n + 1 {
            return Err(invalid(
                "rows".into(),
                format!(
                    "{} rows; expected the zero-shot row and at most one per task (1 to {})",
                    self.rows.len(),
                    n + 1
                ),
            ));
        }
        for (i, row) in self.rows.iter().enumerate() {
            if row.len() != n {
                return Err(invalid(
                    format!("rows[{i}]"),
                    format!("{} values, expected {n} (one per task)", row.len()),
                ));
            }
            if let Some((j, x)) = row.iter().enumerate().find(|(_, x)| !is_accuracy(**x)) {
                return Err(invalid(format!("rows[{i}][{j}]"), format!("{x} is not an accuracy in [0, 100]")));
            }
        }
        Ok(())
    }
}

pub(crate) fn is_accuracy(x: f64) -> bool {
    (0.0..=100.0).contains(&x)
}

/// The label of matrix row `i` in every output: `zero-shot`, then `after <task>`.
pub(crate) fn row_label(names: &[String], i: usize) -> String {
    match i {
        0 => "zero-shot".into(),
        _ => format!("after {}", names[i - 1]),
    }
}

/// Two decimals, "n/a" for `None` or a non-finite value, and no "-0.00".
pub(crate) fn fmt2(x: Option<f64>) -> String {
    match x {
        Some(x) if x.is_finite() => {
            let s = format!("{x:.2}");
            if s == "-0.00" {
                "0.00".into()
            } else {
                s
            }
        }
        _ => "n/a".into(),
    }
}

/// Writes accuracy.csv, metrics.json, report.md and heatmap.svg into `dir` (created if needed).
/// Everything is rendered before the first write, and each file replaces the old one atomically,
/// so readers never see a partial file.
pub fn write_reports(dir: &Path, report: &RunReport) -> Result<(), ReportError> {
    report.validate()?;
    let files = [
        (ACCURACY_CSV, accuracy_csv(report)),
        (METRICS_JSON, metrics_json(report)),
        (REPORT_MD, report_markdown(report)),
        (HEATMAP_SVG, heatmap_svg(report)),
    ];
    create_dir(dir)?;
    for (name, text) in files {
        write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// Reads a run directory back: the matrix from accuracy.csv, the method and per-task logs from
/// metrics.json when present (otherwise the method is the directory's name). Values come back
/// with accuracy.csv's two decimals.
pub fn read_run(dir: &Path) -> Result<RunReport, ReportError> {
    let csv_path = dir.join(ACCURACY_CSV);
    let (task_names, rows) = csv::parse_accuracy(&csv_path, &read(&csv_path)?)?;
    let json_path = dir.join(METRICS_JSON);
    let (method, tasks) = if json_path.exists() {
        let parsed = json::parse_metrics(&json_path, &read(&json_path)?)?;
        (parsed.method, parsed.per_task)
    } else {
        (dir_name(dir), Vec::new())
    };
    Ok(RunReport { method, task_names, rows, tasks })
}

fn dir_name(dir: &Path) -> String {
    let named = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    named(dir).or_else(|| dir.canonicalize().ok().as_deref().and_then(named)).unwrap_or_else(|| "run".into())
}

fn read(path: &Path) -> Result<Vec<u8>, ReportError> {
    fs::read(path).map_err(|error| ReportError::Io { path: path.to_path_buf(), op: "read", error })
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), ReportError> {
    fs::create_dir_all(dir).map_err(|error| ReportError::Io { path: dir.to_path_buf(), op: "create directory", error })
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`; the
/// temporary file is removed if anything fails.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{unique}", std::process::id()));
    let io = |path: &Path, op| {
        let path = path.to_path_buf();
        move |error| ReportError::Io { path, op, error }
    };
    let result = File::create(&tmp)
        .map_err(io(&tmp, "create"))
        .and_then(|mut f| {
            f.write_all(bytes).map_err(io(&tmp, "write"))?;
            f.sync_all().map_err(io(&tmp, "sync"))
        })
        .and_then(|()| fs::rename(&tmp, path).map_err(io(path, "rename")));
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_parent(path);
    Ok(())
}

/// Makes the rename durable where the platform allows (POSIX needs the directory synced); a
/// failure here loses nothing already visible, so it is not an error.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    #[cfg(not(unix))]
    let _ = path;
}
