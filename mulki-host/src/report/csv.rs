//! accuracy.csv (RFC 4180): header `row,<task names>`, then `zero-shot` and `after <task>` rows
//! with two decimals. The reader checks every record and names the file, line and column of the
//! first problem instead of guessing.
use std::borrow::Cow;
use std::path::Path;

use super::{is_accuracy, row_label, ReportError, RunReport};

/// A field as RFC 4180 wants it: quoted (inner quotes doubled) when it holds a comma, a quote or
/// a line break.
pub(crate) fn quote(field: &str) -> Cow<'_, str> {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field.into()
    }
}

/// One CSV line from fields, quoting as needed, ending in `\n`.
pub(crate) fn line<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> String {
    let mut out = String::new();
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quote(f.as_ref()));
    }
    out.push('\n');
    out
}

/// The accuracy.csv text of a (valid) report.
pub fn accuracy_csv(report: &RunReport) -> String {
    let names = &report.task_names;
    let mut out = line(std::iter::once("row").chain(names.iter().map(String::as_str)));
    for (i, row) in report.rows.iter().enumerate() {
        let values = row.iter().map(|x| super::fmt2(Some(*x)));
        out.push_str(&line(std::iter::once(row_label(names, i)).chain(values)));
    }
    out
}

/// A record and the line it starts on (1-based; a quoted line break makes records span lines).
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// Splits RFC 4180 text into records (LF or CRLF line ends); `Err((line, message))` on an
/// unterminated quote or a quote in an unquoted field.
fn records(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    break;
                }
                Some('"') if field.is_empty() && !quoted => {
                    quoted = true;
                    let open = line;
                    loop {
                        match chars.next() {
                            None => return Err((open, "unterminated quoted field".into())),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                line += usize::from(c == '\n');
                                field.push(c);
                            }
                        }
                    }
                    if let Some(c) = chars.peek().filter(|c| !matches!(c, ',' | '\n' | '\r')) {
                        return Err((line, format!("{c:?} after a closing quote")));
                    }
                }
                Some('"') => {
                    return Err((line, "quote inside an unquoted field (quote the field, double inner quotes)".into()))
                }
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    fields.push(field);
                    break;
                }
                Some(c) => field.push(c),
            }
        }
        out.push(Record { line: start, fields });
    }
    Ok(out)
}

/// Task names and rows of accuracy.csv, checked like [`RunReport::validate`].
pub(crate) fn parse_accuracy(path: &Path, bytes: &[u8]) -> Result<(Vec<String>, Vec<Vec<f64>>), ReportError> {
    let err = |line: usize, field: &str, message: String| ReportError::Parse {
        path: path.to_path_buf(),
        line,
        field: field.into(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        err(line, "", "not UTF-8".into())
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let recs: Vec<Record> = records(text)
        .map_err(|(line, m)| err(line, "", m))?
        .into_iter()
        .filter(|r| !(r.fields.len() == 1 && r.fields[0].trim().is_empty()))
        .collect();

    let Some(header) = recs.first() else {
        return Err(err(1, "", "empty file; expected the header `row,<task names>`".into()));
    };
    if header.fields[0] != "row" {
        return Err(err(header.line, "column 1", format!("expected \"row\", found {:?}", header.fields[0])));
    }
    let names = header.fields[1..].to_vec();
    let n = names.len();
    if n == 0 {
        return Err(err(header.line, "", "no task columns in the header".into()));
    }
    for (j, name) in names.iter().enumerate() {
        if names[..j].contains(name) {
            return Err(err(header.line, &format!("column {}", j + 2), format!("duplicate task name {name:?}")));
        }
    }
    if recs.len() < 2 {
        return Err(err(header.line + 1, "", "missing the zero-shot row".into()));
    }
    if let Some(extra) = recs.get(n + 2) {
        return Err(err(
            extra.line,
            "",
            format!("more than {} rows: {n} tasks allow a zero-shot row and one per task", n + 1),
        ));
    }

    let mut rows = Vec::with_capacity(recs.len() - 1);
    for (i, rec) in recs[1..].iter().enumerate() {
        if rec.fields.len() != n + 1 {
            return Err(err(
                rec.line,
                "",
                format!("expected {} fields (row label and {n} tasks), found {}", n + 1, rec.fields.len()),
            ));
        }
        let expected = row_label(&names, i);
        if rec.fields[0] != expected {
            return Err(err(rec.line, "column 'row'", format!("expected {expected:?}, found {:?}", rec.fields[0])));
        }
        let mut row = Vec::with_capacity(n);
        for (raw, name) in rec.fields[1..].iter().zip(&names) {
            let field = format!("column '{name}'");
            let x: f64 = raw.trim().parse().map_err(|_| err(rec.line, &field, format!("not a number: {raw:?}")))?;
            if !is_accuracy(x) {
                return Err(err(rec.line, &field, format!("{raw:?} is not an accuracy in [0, 100]")));
            }
            row.push(x);
        }
        rows.push(row);
    }
    Ok((names, rows))
}
