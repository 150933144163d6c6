//! `mulki data check`: lists both splits of a task without failing on what listing rejects
//! (missing or extra class folders, manifest entries whose file is absent) and summarises them.
//! Unreadable datasets (no root, no split, malformed manifest, bad IDX) are still errors.
use std::fmt;
use std::path::PathBuf;

use super::{csv, folder, folder_names, idx, DataError};
use crate::run::config::{DatasetFormat, TaskConfig};

/// One split's summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitCheck {
    pub split: String,
    /// The split's folder, manifest or images file.
    pub location: PathBuf,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Images per class.
    pub per_class: Vec<usize>,
    /// Expected but absent: class folders (ImageFolder) or listed files (CSV).
    pub missing: Vec<PathBuf>,
    /// Present but matching no class: folders under the split (ImageFolder).
    pub extra: Vec<PathBuf>,
}

impl SplitCheck {
    pub fn images(&self) -> usize {
        self.per_class.iter().sum()
    }

    /// Nothing missing or extra, and every class has an image.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.per_class.iter().all(|&n| n > 0)
    }
}

/// The summary of a task's dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub task: String,
    pub format: DatasetFormat,
    pub root: PathBuf,
    pub splits: Vec<SplitCheck>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.splits.iter().all(SplitCheck::is_clean)
    }
}

/// Checks the train and test splits of `task`.
pub fn check(task: &TaskConfig) -> Result<CheckReport, DataError> {
    if !task.root.is_dir() {
        return Err(DataError::MissingDataset { path: task.root.clone() });
    }
    let mut splits = Vec::new();
    let mut names = vec![task.train_split.as_str()];
    if task.test_split != task.train_split {
        names.push(&task.test_split);
    }
    for split in names {
        splits.push(check_split(task, split)?);
    }
    Ok(CheckReport { task: task.name.clone(), format: task.format, root: task.root.clone(), splits })
}

fn check_split(task: &TaskConfig, split: &str) -> Result<SplitCheck, DataError> {
    let root = &task.root;
    let n = task.classes.len();
    let mut report = SplitCheck {
        split: split.into(),
        location: root.clone(),
        classes: task.classes.clone(),
        per_class: vec![0; n],
        missing: Vec::new(),
        extra: Vec::new(),
    };
    match task.format {
        DatasetFormat::ImageFolder => {
            let scan = folder::scan(root, split, folder_names(task))?;
            report.per_class = scan.per_class.iter().map(Vec::len).collect();
            report.missing = scan.missing.iter().map(|m| scan.dir.join(m)).collect();
            report.extra = scan.extra.iter().map(|m| scan.dir.join(m)).collect();
            report.location = scan.dir;
        }
        DatasetFormat::Csv => {
            let path = csv::manifest_path(root, split);
            if !path.is_file() {
                return Err(DataError::MissingSplit { path, split: split.into() });
            }
            let text = csv::read_text(&path)?;
            let base = path.parent().unwrap_or(root).to_path_buf();
            for (p, label, _) in csv::parse(&text, &path, n)? {
                let file = base.join(p);
                if file.is_file() {
                    report.per_class[label] += 1;
                } else {
                    report.missing.push(file);
                }
            }
            report.location = path;
        }
        DatasetFormat::Idx => {
            let s = idx::list(root, split, n)?;
            report.per_class = s.class_counts();
            if let Some(super::Source::Idx { images, .. }) = s.items.first().map(|i| &i.source) {
                report.location = images.path.clone();
            }
        }
    }
    Ok(report)
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        let list = |f: &mut fmt::Formatter<'_>, what: &str, paths: &[PathBuf]| {
            if paths.is_empty() {
                return Ok(());
            }
            writeln!(f, "  {what} ({}):", paths.len())?;
            for p in paths.iter().take(SHOWN) {
                writeln!(f, "    {}", p.display())?;
            }
            if paths.len() > SHOWN {
                writeln!(f, "    … and {} more", paths.len() - SHOWN)?;
            }
            Ok(())
        };
        writeln!(f, "task {} ({:?}, {})", self.task, self.format, self.root.display())?;
        for s in &self.splits {
            writeln!(
                f,
                "split {}: {} images, {} classes ({})",
                s.split,
                s.images(),
                s.classes.len(),
                s.location.display()
            )?;
            let (lo, hi) =
                (s.per_class.iter().min().copied().unwrap_or(0), s.per_class.iter().max().copied().unwrap_or(0));
            writeln!(f, "  images per class: min {lo}, max {hi}")?;
            for (name, &count) in s.classes.iter().zip(&s.per_class) {
                writeln!(f, "    {count:>7}  {name}")?;
            }
            list(f, "missing", &s.missing)?;
            list(f, "extra", &s.extra)?;
        }
        write!(f, "{}", if self.is_clean() { "ok" } else { "PROBLEMS" })
    }
}
