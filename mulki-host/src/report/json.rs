//! metrics.json: the metrics after the last task and after every earlier one (so a curve can be
//! drawn without re-deriving them), plus the per-task logs. Undefined metrics are `null`; so is a
//! NaN loss, which reads back as NaN.
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use super::{ReportError, RunReport, TaskLog};

#[derive(Serialize)]
struct MetricsOut<'a> {
    method: &'a str,
    tasks_done: usize,
    n_tasks: usize,
    transfer: Option<f64>,
    avg: Option<f64>,
    last: Option<f64>,
    bwt: Option<f64>,
    per_task: &'a [TaskLog],
    after_each_task: Vec<AfterTask<'a>>,
}

#[derive(Serialize)]
struct AfterTask<'a> {
    task: &'a str,
    transfer: Option<f64>,
    avg: Option<f64>,
    last: Option<f64>,
    bwt: Option<f64>,
}

/// What [`super::read_run`] takes from metrics.json; the metrics themselves are recomputed.
#[derive(Deserialize)]
pub(crate) struct MetricsIn {
    pub method: String,
    #[serde(default)]
    pub per_task: Vec<TaskLog>,
}

/// The metrics.json text of a (valid) report.
pub fn metrics_json(report: &RunReport) -> String {
    let m = report.metrics();
    let after_each_task = (1..=report.tasks_done())
        .map(|t| {
            let m = report.truncated(t).metrics();
            AfterTask {
                task: &report.task_names[t - 1],
                transfer: m.and_then(|m| m.transfer),
                avg: m.map(|m| m.avg),
                last: m.map(|m| m.last),
                bwt: m.and_then(|m| m.bwt),
            }
        })
        .collect();
    let out = MetricsOut {
        method: &report.method,
        tasks_done: report.tasks_done(),
        n_tasks: report.task_names.len(),
        transfer: m.and_then(|m| m.transfer),
        avg: m.map(|m| m.avg),
        last: m.map(|m| m.last),
        bwt: m.and_then(|m| m.bwt),
        per_task: &report.tasks,
        after_each_task,
    };
    // Serialising plain structs, strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    text
}

pub(crate) fn parse_metrics(path: &Path, bytes: &[u8]) -> Result<MetricsIn, ReportError> {
    serde_json::from_slice(bytes).map_err(|e| ReportError::Json { path: path.to_path_buf(), message: e.to_string() })
}

/// `null` (how serde_json writes a non-finite float) reads back as NaN.
pub(crate) fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

pub(crate) fn vec_f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Vec::<Option<f64>>::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}
