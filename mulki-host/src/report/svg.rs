//! heatmap.svg: the accuracy matrix as a heat-map in plain SVG 1.1 (no scripts, no CSS), so it
//! renders in browsers and on GitHub. The colour scale is fixed to 0–100 % so heat-maps of
//! different runs compare by eye; viridis keeps that comparison perceptually even.
use std::fmt::Write;

use super::{fmt2, row_label, RunReport};

/// matplotlib's viridis at 0, 1/8, …, 1; interpolated linearly in sRGB, as the SVG gradient of
/// the colour bar does, so cells and bar agree.
const VIRIDIS: [[u8; 3]; 9] = [
    [0x44, 0x01, 0x54],
    [0x47, 0x2d, 0x7b],
    [0x3b, 0x52, 0x8b],
    [0x2c, 0x72, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x28, 0xae, 0x80],
    [0x5e, 0xc9, 0x62],
    [0xad, 0xdc, 0x30],
    [0xfd, 0xe7, 0x25],
];

/// The viridis colour at `t` in [0, 1] (clamped; NaN maps to 0).
pub fn viridis(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    std::array::from_fn(|k| (a[k] as f64 + f * (b[k] as f64 - a[k] as f64)).round() as u8)
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Black or white, whichever contrasts more with `bg` (WCAG relative luminance).
fn text_colour(bg: [u8; 3]) -> &'static str {
    let lin = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let l = 0.2126 * lin(bg[0]) + 0.7152 * lin(bg[1]) + 0.0722 * lin(bg[2]);
    if (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) {
        "#000000"
    } else {
        "#ffffff"
    }
}

/// Escapes text and attribute values; XML 1.0 forbids most control characters even escaped, so
/// they become U+FFFD.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

const CELL_W: f64 = 72.0;
const CELL_H: f64 = 32.0;
const PAD: f64 = 16.0;
const TITLE_H: f64 = 28.0;
/// Rough advance of a 12 px sans-serif character, to size the margins for the labels.
const CHAR_W: f64 = 7.0;
const BAR_W: f64 = 16.0;
const SIN45: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// The heatmap.svg text of a (valid) report.
pub fn heatmap_svg(report: &RunReport) -> String {
    let names = &report.task_names;
    let (n, r) = (names.len(), report.rows.len());
    let labels: Vec<String> = (0..r).map(|i| row_label(names, i)).collect();
    let chars = |s: &str| s.chars().count() as f64;
    let row_label_w = labels.iter().map(|l| chars(l)).fold(0.0, f64::max) * CHAR_W + 12.0;
    let col_len = names.iter().map(|l| chars(l)).fold(0.0, f64::max) * CHAR_W;
    let title = format!("{}: accuracy (%) after each task", report.method);

    let left = PAD + row_label_w;
    let top = (PAD + TITLE_H + col_len * SIN45 + 12.0).round();
    let (grid_w, grid_h) = (n as f64 * CELL_W, r as f64 * CELL_H);
    let bar_x = left + grid_w + 24.0;
    let bar_h = grid_h.max(160.0);
    let width = (bar_x + BAR_W + 40.0 + PAD)
        .max(left + (n as f64 - 0.5) * CELL_W + col_len * SIN45 + PAD)
        .max(2.0 * PAD + chars(&title) * 8.5)
        .ceil();
    let height = (top + bar_h + PAD).ceil();

    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, "<title>{}</title>", escape(&title));
    s.push_str("<defs>\n<linearGradient id=\"viridis\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n");
    for (k, c) in VIRIDIS.iter().enumerate() {
        let _ = writeln!(s, r#"<stop offset="{}" stop-color="{}"/>"#, k as f64 / (VIRIDIS.len() - 1) as f64, hex(*c));
    }
    s.push_str("</linearGradient>\n</defs>\n");
    let _ = writeln!(s, r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<text x="{PAD}" y="{}" font-size="16" font-weight="bold">{}</text>"#,
        PAD + 16.0,
        escape(&title)
    );

    // Column labels, rotated so long dataset names fit; row labels right-aligned.
    s.push_str("<g class=\"column-labels\">\n");
    for (j, name) in names.iter().enumerate() {
        let (x, y) = (left + (j as f64 + 0.5) * CELL_W, top - 6.0);
        let _ = writeln!(s, r#"<text x="{x}" y="{y}" transform="rotate(-45 {x} {y})">{}</text>"#, escape(name));
    }
    s.push_str("</g>\n<g class=\"row-labels\" text-anchor=\"end\">\n");
    for (i, label) in labels.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" dy="0.35em">{}</text>"#,
            left - 8.0,
            top + (i as f64 + 0.5) * CELL_H,
            escape(label)
        );
    }

    s.push_str("</g>\n<g class=\"cells\" text-anchor=\"middle\">\n");
    for (i, row) in report.rows.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let bg = viridis(v / 100.0);
            let (x, y) = (left + j as f64 * CELL_W, top + i as f64 * CELL_H);
            let value = fmt2(Some(v));
            let _ = writeln!(
                s,
                r##"<rect class="cell" x="{x}" y="{y}" width="{CELL_W}" height="{CELL_H}" fill="{}" stroke="#ffffff" stroke-width="1"><title>{} / {}: {value}</title></rect>"##,
                hex(bg),
                escape(&labels[i]),
                escape(&names[j])
            );
            let weight = if i >= 1 && j == i - 1 { r#" font-weight="bold""# } else { "" };
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" dy="0.35em" fill="{}"{weight}>{value}</text>"#,
                x + CELL_W / 2.0,
                y + CELL_H / 2.0,
                text_colour(bg)
            );
        }
    }

    // Colour bar: 0 at the bottom, 100 at the top, ticks every 25.
    s.push_str("</g>\n<g class=\"colour-bar\">\n");
    let _ = writeln!(
        s,
        r##"<rect x="{bar_x}" y="{top}" width="{BAR_W}" height="{bar_h}" fill="url(#viridis)" stroke="#000000" stroke-width="0.5"/>"##
    );
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">%</text>"#, bar_x + BAR_W / 2.0, top - 6.0);
    for tick in [0, 25, 50, 75, 100] {
        let y = top + bar_h * (1.0 - tick as f64 / 100.0);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#000000"/>"##,
            bar_x + BAR_W,
            bar_x + BAR_W + 4.0
        );
        let _ = writeln!(s, r#"<text x="{}" y="{y}" dy="0.35em">{tick}</text>"#, bar_x + BAR_W + 6.0);
    }
    s.push_str("</g>\n</svg>\n");
    s
}
