//! report.md: the accuracy matrix (diagonal in bold), ZSCL's Transfer / Avg. / Last table with
//! per-dataset columns, BWT, and the per-task training log. Meant to be read on GitHub or in a
//! terminal; "n/a" marks what is not defined yet.
use std::fmt::Write;

use super::{fmt2, row_label, RunReport, TaskLog};

/// Escapes what would break a table cell or turn into markup in a task or method name.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// A Markdown table row from already-escaped cells.
pub(crate) fn table_row<S: AsRef<str>>(cells: impl IntoIterator<Item = S>) -> String {
    let mut out = String::from("|");
    for c in cells {
        if !c.as_ref().is_empty() {
            out.push(' ');
            out.push_str(c.as_ref());
        }
        out.push_str(" |");
    }
    out.push('\n');
    out
}

/// The separator under a header: first column left-aligned, the numbers right-aligned.
pub(crate) fn table_rule(n_numeric: usize) -> String {
    format!("|:---|{}\n", "---:|".repeat(n_numeric))
}

/// The report.md text of a (valid) report.
pub fn report_markdown(report: &RunReport) -> String {
    let names = &report.task_names;
    let n = names.len();
    let t = report.tasks_done();
    let s = report.summary();
    let mut out = String::new();

    let _ = writeln!(out, "# MTIL report: {}\n", escape(&report.method));
    let _ = writeln!(
        out,
        "Tasks done: {t} of {n} ({}).\n",
        names.iter().map(|s| escape(s)).collect::<Vec<_>>().join(" → ")
    );

    out.push_str("## Accuracy (%)\n\n");
    out.push_str(
        "Row *after X* is evaluated right after training on task X; the diagonal (bold) is each \
         task just after it was learned.\n\n",
    );
    let header = std::iter::once(String::new()).chain(names.iter().map(|s| escape(s)));
    out.push_str(&table_row(header));
    out.push_str(&table_rule(n));
    for (i, row) in report.rows.iter().enumerate() {
        let cells = row.iter().enumerate().map(|(j, &x)| {
            let v = fmt2(Some(x));
            if i >= 1 && j == i - 1 {
                format!("**{v}**")
            } else {
                v
            }
        });
        out.push_str(&table_row(std::iter::once(escape(&row_label(names, i))).chain(cells)));
    }

    out.push_str("\n## Metrics (%)\n\n");
    out.push_str(
        "Transfer: accuracy on a dataset before its task is learned (above the diagonal). \
         Avg.: mean over all rows after training. Last: the last row. BWT: mean change of each \
         earlier task from just after learning it to the last row.\n\n",
    );
    let header = std::iter::once("Metric".to_string())
        .chain(names.iter().map(|s| escape(s)))
        .chain(std::iter::once("Mean".to_string()));
    out.push_str(&table_row(header));
    out.push_str(&table_rule(n + 1));
    let m = s.metrics;
    let blocks = [
        ("Transfer", &s.transfer, m.and_then(|m| m.transfer)),
        ("Avg.", &s.avg, m.map(|m| m.avg)),
        ("Last", &s.last, m.map(|m| m.last)),
    ];
    for (label, per_task, mean) in blocks {
        let cells = per_task.iter().map(|&x| fmt2(x));
        out.push_str(&table_row(std::iter::once(label.to_string()).chain(cells).chain(std::iter::once(fmt2(mean)))));
    }
    let _ = writeln!(out, "\n**BWT**: {}", fmt2(m.and_then(|m| m.bwt)));

    out.push_str("\n## Per-task log\n\n");
    if report.tasks.is_empty() {
        out.push_str("No per-task log recorded.\n");
    } else {
        out.push_str(&table_row([
            "Task",
            "mean α per teacher",
            "α^Z histogram (10 bins over [0, 1])",
            "drift ‖θₜ − θₜ₋₁‖₂",
            "wall time (s)",
            "peak memory (MiB)",
            "final loss",
        ]));
        out.push_str(&table_rule(6));
        for log in &report.tasks {
            out.push_str(&table_row(log_cells(log)));
        }
    }
    out
}

fn log_cells(log: &TaskLog) -> [String; 7] {
    let fixed = |x: f64, digits: usize| {
        if x.is_finite() {
            format!("{x:.digits$}")
        } else {
            "n/a".into()
        }
    };
    let alpha = if log.alpha_mean.is_empty() {
        "n/a".into()
    } else {
        let parts: Vec<String> = log.alpha_mean.iter().map(|&a| fixed(a, 3)).collect();
        parts.join(", ")
    };
    [
        escape(&log.name),
        alpha,
        sparkline(&log.alpha_histogram),
        fixed(log.drift, 4),
        fixed(log.wall_seconds, 1),
        format!("{:.1}", log.peak_memory_bytes as f64 / (1024.0 * 1024.0)),
        fixed(log.final_loss, 4),
    ]
}

/// Bin counts as block characters scaled to the largest, `·` for an empty bin, and the total.
fn sparkline(counts: &[u64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = counts.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return "n/a".into();
    }
    let mut out: String = counts
        .iter()
        .map(|&c| match c {
            0 => '·',
            // ceil(c/max·8) in 1..=8 without floats.
            _ => BLOCKS[((c as u128 * 8).div_ceil(max as u128) - 1) as usize],
        })
        .collect();
    let total: u128 = counts.iter().map(|&c| c as u128).sum();
    let _ = write!(out, " (n = {total})");
    out
}
