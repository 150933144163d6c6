//! CSV manifests: `root/<split>.csv` with `path,label` rows (RFC 4180 quoting, optional
//! `path,label` header, LF or CRLF), paths relative to the CSV's folder, labels 0-based.
//! Errors name the file and the line a record starts on.
use std::path::{Path, PathBuf};

use super::{DataError, Item, Source, Split};

/// One parsed record and the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Splits `text` into records by RFC 4180 (quoted fields may hold commas, `""` and newlines).
/// Blank lines are skipped. A stray quote, text after a closing quote or an unterminated quote
/// is an error naming `path` and the line.
pub fn records(text: &str, path: &Path) -> Result<Vec<Record>, DataError> {
    let err = |line, reason: &str| DataError::Csv { path: path.to_path_buf(), line, reason: reason.into() };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    // `quoted`: the current field started with a quote; `open`: we are inside the quotes.
    let (mut quoted, mut open) = (false, false);
    let (mut line, mut start) = (1, 1);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if open {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => open = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if quoted || !field.is_empty() || !fields.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    out.push(Record { line: start, fields: std::mem::take(&mut fields) });
                }
                quoted = false;
                line += 1;
                start = line;
            }
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                open = true;
            }
            '"' => return Err(err(line, "unexpected `\"` in an unquoted field")),
            _ if quoted => return Err(err(line, "text after a closing `\"`")),
            c => field.push(c),
        }
    }
    if open {
        return Err(err(start, "unterminated quoted field"));
    }
    if quoted || !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        out.push(Record { line: start, fields });
    }
    Ok(out)
}

/// `(path as written, label, line)` rows of a manifest, header dropped, labels checked against
/// `classes`.
pub fn parse(text: &str, path: &Path, classes: usize) -> Result<Vec<(String, usize, usize)>, DataError> {
    let recs = records(text, path)?;
    let is_header = |r: &Record| {
        r.fields.len() == 2
            && r.fields[0].trim().eq_ignore_ascii_case("path")
            && r.fields[1].trim().eq_ignore_ascii_case("label")
    };
    let skip = usize::from(recs.first().is_some_and(is_header));
    let mut rows = Vec::with_capacity(recs.len());
    for r in &recs[skip..] {
        let bad = |reason: String| DataError::Csv { path: path.to_path_buf(), line: r.line, reason };
        if r.fields.len() != 2 {
            return Err(bad(format!("expected 2 fields (path,label), found {}", r.fields.len())));
        }
        if r.fields[0].is_empty() {
            return Err(bad("empty path".into()));
        }
        let text = r.fields[1].trim();
        let label: u64 = text.parse().map_err(|_| bad(format!("label `{text}` is not a non-negative integer")))?;
        if label >= classes as u64 {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                at: format!("line {}", r.line),
                label,
                classes,
            });
        }
        rows.push((r.fields[0].clone(), label as usize, r.line));
    }
    Ok(rows)
}

/// Reads a manifest as UTF-8 text (an encoding error names the line).
pub(crate) fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|e| {
        let ok = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        DataError::Csv {
            path: path.to_path_buf(),
            line: ok.iter().filter(|&&b| b == b'\n').count() + 1,
            reason: "not valid UTF-8".into(),
        }
    })
}

/// `root/<split>.csv`.
pub fn manifest_path(root: &Path, split: &str) -> PathBuf {
    root.join(format!("{split}.csv"))
}

/// Lists one split from its manifest. Files are not opened here (see `data check`).
pub fn list(root: &Path, split: &str, classes: usize) -> Result<Split, DataError> {
    let path = manifest_path(root, split);
    if !path.is_file() {
        return Err(DataError::MissingSplit { path, split: split.into() });
    }
    let text = read_text(&path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rows = parse(&text, &path, classes)?;
    if rows.is_empty() {
        return Err(DataError::NoImages { path });
    }
    let items = rows.into_iter().map(|(p, label, _)| Item { source: Source::File(base.join(p)), label }).collect();
    Ok(Split { items, classes })
}
