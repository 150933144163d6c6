//! Progress of a run: an indicatif bar per task (loss terms, images/s, ETA) when stderr is a
//! terminal; otherwise one plain line at most every 30 s, without carriage returns; nothing with
//! `--quiet`. Every step also goes to an optional JSON-lines log for machines.
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::trainer::StepReport;

const PLAIN_EVERY: Duration = Duration::from_secs(30);

enum Mode {
    Bar(ProgressBar),
    Plain { last: Option<Instant> },
    Quiet,
}

pub struct Progress {
    mode: Mode,
    log: Option<BufWriter<File>>,
    task_start: Instant,
    images: usize,
    first_step: usize,
    quiet: bool,
}

fn eta(done: usize, total: usize, elapsed: Duration) -> String {
    if done == 0 {
        return "?".into();
    }
    let left = elapsed.as_secs_f64() / done as f64 * total.saturating_sub(done) as f64;
    let s = left.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

impl Progress {
    /// `log`: append JSON lines there (created if missing).
    pub fn new(quiet: bool, log: Option<&Path>) -> std::io::Result<Self> {
        let log = match log {
            Some(p) => Some(BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?)),
            None => None,
        };
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(ProgressBar::hidden())
        } else {
            Mode::Plain { last: None }
        };
        Ok(Progress { mode, log, task_start: Instant::now(), images: 0, first_step: 0, quiet })
    }

    /// A line for people (above the bar when there is one).
    pub fn say(&self, msg: &str) {
        match &self.mode {
            Mode::Bar(bar) => bar.println(msg),
            Mode::Plain { .. } => eprintln!("{msg}"),
            Mode::Quiet => {}
        }
    }

    pub fn begin_task(&mut self, task: usize, name: &str, steps: usize, done: usize) {
        self.task_start = Instant::now();
        self.images = 0;
        self.first_step = done;
        if let Mode::Bar(bar) = &mut self.mode {
            bar.finish_and_clear();
            let b = ProgressBar::new(steps as u64).with_position(done as u64);
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            b.set_style(style);
            b.set_prefix(format!("task {} {name}", task + 1));
            *bar = b;
        }
        self.event(
            &serde_json::json!({"event": "task_start", "task": task, "name": name, "steps": steps, "resumed_at": done}),
        );
    }

    pub fn step(&mut self, r: &StepReport) {
        self.images += r.images;
        let elapsed = self.task_start.elapsed();
        let ips = self.images as f64 / elapsed.as_secs_f64().max(1e-9);
        let l = &r.loss;
        // The terms the method uses (a zero term is one it does not; pretraining has none).
        let parts: Vec<String> =
            [("ce", l.ce), ("ei", l.ei), ("kd", l.kd), ("lwf", l.lwf), ("zscl", r.zscl), ("conn", r.connection)]
                .iter()
                .filter(|(_, v)| *v != 0.0)
                .map(|(k, v)| format!("{k} {v:.3}"))
                .collect();
        let total = format!("loss {:.4}", l.total + r.zscl + r.connection);
        let terms = if parts.is_empty() { total } else { format!("{total} ({})", parts.join(" ")) };
        match &mut self.mode {
            Mode::Bar(bar) => {
                bar.set_position(r.step as u64);
                bar.set_message(format!("{terms} {ips:.1} img/s"));
            }
            Mode::Plain { last } => {
                let due = last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) || r.step == r.steps;
                if due {
                    *last = Some(Instant::now());
                    let done = r.step - self.first_step;
                    eprintln!(
                        "task {} step {}/{} {terms} {ips:.1} img/s ETA {}",
                        r.task + 1,
                        r.step,
                        r.steps,
                        eta(done, r.steps - self.first_step, elapsed)
                    );
                }
            }
            Mode::Quiet => {}
        }
        self.event(&serde_json::json!({
            "event": "step", "task": r.task, "step": r.step, "steps": r.steps, "lr": r.lr,
            "loss": l.total + r.zscl + r.connection, "ce": l.ce, "ei": l.ei, "kd": l.kd, "lwf": l.lwf,
            "zscl": r.zscl, "connection": r.connection, "alpha_mean": l.alpha_mean, "images_per_s": ips,
        }));
    }

    pub fn end_task(&mut self, task: usize, row: &[f64]) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
        self.event(&serde_json::json!({"event": "task_end", "task": task, "accuracy": row}));
    }

    /// Writes one JSON line to the log; a failing log never stops training, it is reported once.
    pub fn event(&mut self, v: &serde_json::Value) {
        if let Some(log) = &mut self.log {
            if writeln!(log, "{v}").and_then(|_| log.flush()).is_err() {
                if !self.quiet {
                    eprintln!("warning: cannot write the JSON-lines log; logging stops");
                }
                self.log = None;
            }
        }
    }
}
