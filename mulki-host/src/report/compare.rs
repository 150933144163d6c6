//! Side-by-side tables of several runs, one row per method, as Markdown and CSV: the four
//! metrics, and, when every run has the same task list, ZSCL's per-dataset Transfer / Avg. /
//! Last blocks. `compare_seeds` reports mean ± sample std over seeds instead.
use std::fmt::Write;

use mulki_core::metrics::mean_std;

use super::csv::line as csv_line;
use super::markdown::{escape, table_row, table_rule};
use super::{fmt2, RunReport, Summary};

/// A metric, with the sample standard deviation when it is a mean over seeds.
#[derive(Clone, Copy)]
struct Stat {
    mean: f64,
    std: Option<f64>,
}

/// One method's row in every table.
struct Line {
    method: String,
    seeds: Option<usize>,
    tasks_done: usize,
    n_tasks: usize,
    /// Transfer, Avg., Last, BWT.
    overall: [Option<Stat>; 4],
    /// Per dataset: Transfer, Avg., Last.
    per_task: [Vec<Option<Stat>>; 3],
}

const OVERALL: [(&str, &str); 4] = [("Transfer", "transfer"), ("Avg.", "avg"), ("Last", "last"), ("BWT", "bwt")];

fn overall(s: &Summary) -> [Option<f64>; 4] {
    let m = s.metrics;
    [m.and_then(|m| m.transfer), m.map(|m| m.avg), m.map(|m| m.last), m.and_then(|m| m.bwt)]
}

fn per_task(s: &Summary) -> [&[Option<f64>]; 3] {
    [&s.transfer, &s.avg, &s.last]
}

/// The task list shared by every run, if there is one.
fn shared_names<'a>(mut runs: impl Iterator<Item = &'a RunReport>) -> Option<Vec<String>> {
    let first = runs.next()?;
    runs.all(|r| r.task_names == first.task_names).then(|| first.task_names.clone())
}

/// Several runs side by side: `(markdown, csv)`. Each run is summarised after the tasks it has
/// done (the Tasks column says how many).
pub fn compare(runs: &[RunReport]) -> (String, String) {
    let lines: Vec<Line> = runs
        .iter()
        .map(|r| {
            let s = r.summary();
            let plain = |x: Option<f64>| x.map(|mean| Stat { mean, std: None });
            Line {
                method: r.method.clone(),
                seeds: None,
                tasks_done: s.tasks_done,
                n_tasks: s.n_tasks,
                overall: overall(&s).map(plain),
                per_task: per_task(&s).map(|v| v.iter().map(|&x| plain(x)).collect()),
            }
        })
        .collect();
    render(&lines, shared_names(runs.iter()).as_deref(), false)
}

/// Methods with several seeds each: `(markdown, csv)` of mean ± sample std per metric (the mean
/// alone, and an empty std field, where only one seed has a value). Seeds
/// of a method are cut to the tasks all of them have done, so a lagging seed is not averaged
/// with finished ones.
pub fn compare_seeds(groups: &[(String, Vec<RunReport>)]) -> (String, String) {
    let lines: Vec<Line> = groups
        .iter()
        .map(|(method, runs)| {
            let t = runs.iter().map(RunReport::tasks_done).min().unwrap_or(0);
            let sums: Vec<Summary> = runs.iter().map(|r| r.truncated(t).summary()).collect();
            let n_tasks = sums.first().map_or(0, |s| s.n_tasks);
            let combine = |vals: Vec<Option<f64>>| {
                let xs: Vec<f64> = vals.into_iter().flatten().collect();
                // A sample std needs two values: one seed shows its value alone, not "± 0.00".
                mean_std(&xs).map(|(mean, std)| Stat { mean, std: (xs.len() > 1).then_some(std) })
            };
            let overall = std::array::from_fn(|k| combine(sums.iter().map(|s| overall(s)[k]).collect()));
            let width = sums.iter().map(|s| s.n_tasks).min().unwrap_or(0);
            let per_task = std::array::from_fn(|b| {
                (0..width).map(|j| combine(sums.iter().map(|s| per_task(s)[b][j]).collect())).collect()
            });
            Line { method: method.clone(), seeds: Some(runs.len()), tasks_done: t, n_tasks, overall, per_task }
        })
        .collect();
    let names = shared_names(groups.iter().flat_map(|(_, runs)| runs));
    render(&lines, names.as_deref(), true)
}

/// Column `j` of a per-dataset block; `None` past its end (a method with no runs).
fn cell(block: &[Option<Stat>], j: usize) -> Option<Stat> {
    block.get(j).copied().flatten()
}

fn md_cell(x: Option<Stat>) -> String {
    match x {
        Some(Stat { mean, std: Some(std) }) => format!("{} ± {}", fmt2(Some(mean)), fmt2(Some(std))),
        Some(Stat { mean, std: None }) => fmt2(Some(mean)),
        None => "n/a".into(),
    }
}

/// One or two CSV fields (mean, and std when `with_std`); empty where undefined.
fn csv_cells(x: Option<Stat>, with_std: bool) -> Vec<String> {
    let num = |v: Option<f64>| v.map_or(String::new(), |v| fmt2(Some(v)));
    let mut out = vec![num(x.map(|s| s.mean))];
    if with_std {
        out.push(num(x.and_then(|s| s.std)));
    }
    out
}

fn csv_header(name: &str, with_std: bool) -> Vec<String> {
    if with_std {
        vec![format!("{name}_mean"), format!("{name}_std")]
    } else {
        vec![name.to_string()]
    }
}

fn render(lines: &[Line], names: Option<&[String]>, with_std: bool) -> (String, String) {
    let mut md = String::from("### Summary (%)\n\n");
    let mut head = vec!["Method".to_string()];
    if with_std {
        head.push("Seeds".into());
    }
    head.push("Tasks".into());
    head.extend(OVERALL.iter().map(|(label, _)| label.to_string()));
    md.push_str(&table_row(&head));
    md.push_str(&table_rule(head.len() - 1));
    for l in lines {
        let mut cells = vec![escape(&l.method)];
        cells.extend(l.seeds.map(|s| s.to_string()));
        cells.push(format!("{}/{}", l.tasks_done, l.n_tasks));
        cells.extend(l.overall.iter().map(|&x| md_cell(x)));
        md.push_str(&table_row(cells));
    }
    if let Some(names) = names {
        for (b, (label, _)) in OVERALL[..3].iter().enumerate() {
            let _ = write!(md, "\n### {label} (%)\n\n");
            let head = std::iter::once("Method".to_string())
                .chain(names.iter().map(|n| escape(n)))
                .chain(std::iter::once("Mean".to_string()));
            md.push_str(&table_row(head));
            md.push_str(&table_rule(names.len() + 1));
            for l in lines {
                let cells = std::iter::once(escape(&l.method))
                    .chain((0..names.len()).map(|j| md_cell(cell(&l.per_task[b], j))))
                    .chain(std::iter::once(md_cell(l.overall[b])));
                md.push_str(&table_row(cells));
            }
        }
    }

    let mut head = vec!["method".to_string()];
    if with_std {
        head.push("seeds".into());
    }
    head.extend(["tasks_done".to_string(), "n_tasks".to_string()]);
    for (_, key) in OVERALL {
        head.extend(csv_header(key, with_std));
    }
    if let Some(names) = names {
        for (_, key) in &OVERALL[..3] {
            for n in names {
                head.extend(csv_header(&format!("{key}/{n}"), with_std));
            }
        }
    }
    let mut csv = csv_line(&head);
    for l in lines {
        let mut cells = vec![l.method.clone()];
        cells.extend(l.seeds.map(|s| s.to_string()));
        cells.extend([l.tasks_done.to_string(), l.n_tasks.to_string()]);
        for &x in &l.overall {
            cells.extend(csv_cells(x, with_std));
        }
        if let Some(names) = names {
            for block in &l.per_task {
                for j in 0..names.len() {
                    cells.extend(csv_cells(cell(block, j), with_std));
                }
            }
        }
        csv.push_str(&csv_line(&cells));
    }
    (md, csv)
}
