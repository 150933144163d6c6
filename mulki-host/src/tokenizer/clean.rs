//! Text cleaning before BPE, mirroring open_clip's `_clean_lower`: `ftfy.fix_text`, Python's
//! `html.unescape` twice, strip, collapse whitespace, lowercase. Of ftfy 6.3's default fixes we
//! reproduce all but `fix_encoding` (mojibake repair; `fix_surrogates` is moot in Rust), in
//! ftfy's order and fixpoint loop.

use regex::{Captures, Regex};
use unicode_normalization::UnicodeNormalization;

use super::entities::{FTFY_UPPER, HTML5};

/// ftfy fixes text in segments of at most this many chars (`max_decode_length`).
const FTFY_MAX_SEGMENT: usize = 1_000_000;

/// Windows-1252 for 0x80..=0x9F, undefined bytes kept as the C1 char ("sloppy" codec): ftfy's
/// `fix_c1_controls` and Python's `html.unescape` of `&#128;`..`&#159;` both use it.
const CP1252_C1: [char; 32] = [
    '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{2c6}', '\u{2030}',
    '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}',
    '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}',
    '\u{17e}', '\u{178}',
];

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII separators U+001C..U+001F.
/// It decides `str.split()` and `str.strip()`.
pub(super) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

/// The compiled patterns of the cleaning steps.
pub(super) struct Cleaner {
    /// `html._charref`.
    charref: Regex,
    /// ftfy's `HTML_ENTITY_RE`.
    ftfy_entity: Regex,
    /// ftfy's `ANSI_RE`.
    ansi: Regex,
}

impl Cleaner {
    pub(super) fn new() -> Result<Self, regex::Error> {
        Ok(Self {
            charref: Regex::new(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\x0C <&#;]{1,32};?)")?,
            ftfy_entity: Regex::new(r"&#?[0-9A-Za-z]{1,24};")?,
            ansi: Regex::new(r"\x1B\[(?:\d|;)*[a-zA-Z]")?,
        })
    }

    /// `_clean_lower`: ftfy subset, `html.unescape` x2, strip, collapse whitespace, lowercase.
    pub(super) fn clean(&self, text: &str) -> String {
        let fixed = self.fix_text(text);
        let unescaped = self.html_unescape(&self.html_unescape(&fixed));
        let words: Vec<&str> = unescaped.split(is_py_space).filter(|w| !w.is_empty()).collect();
        words.join(" ").to_lowercase()
    }

    /// `ftfy.fix_text` with its default config minus `fix_encoding`. Segments end after each
    /// `\n`; HTML unescaping ("auto") is switched off for good at the first segment holding `<`.
    fn fix_text(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut unescape = true;
        let mut rest = text;
        while !rest.is_empty() {
            let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            let (line, _) = rest.split_at_checked(line_end).unwrap_or((rest, ""));
            let end = line.char_indices().nth(FTFY_MAX_SEGMENT).map_or(line.len(), |(i, _)| i);
            let (segment, tail) = rest.split_at_checked(end).unwrap_or((rest, ""));
            if segment.contains('<') {
                unescape = false;
            }
            out.push_str(&self.fix_segment(segment, unescape));
            rest = tail;
        }
        out
    }

    /// `ftfy.fix_and_explain`: the fixers in ftfy's order, repeated until nothing changes.
    fn fix_segment(&self, segment: &str, unescape: bool) -> String {
        let mut text = segment.to_string();
        // Every changing round but the first shortens the text (unescaping), so this bound is
        // never reached; it only guards against an endless loop.
        for _ in 0..segment.chars().count() + 8 {
            let orig = text.clone();
            if unescape {
                text = self.ftfy_unescape_html(&text);
            }
            text = text.chars().map(fix_c1_control).collect();
            text = fix_latin_ligatures(&text);
            text = fix_character_width(&text);
            text = text.chars().map(uncurl_quote).collect();
            text = text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n");
            text = self.ansi.replace_all(&text, "").into_owned();
            text.retain(|c| !is_control_to_remove(c));
            text = text.nfc().collect();
            if text == orig {
                break;
            }
        }
        text
    }

    /// ftfy's `unescape_html`: only `;`-terminated names (html5's, plus all-caps variants of
    /// lower-case ones) and numeric references that `html.unescape` decodes completely.
    fn ftfy_unescape_html(&self, text: &str) -> String {
        if !text.contains('&') {
            return text.to_string();
        }
        self.ftfy_entity
            .replace_all(text, |caps: &Captures<'_>| {
                let whole = caps.get(0).map_or("", |m| m.as_str());
                let name = whole.get(1..).unwrap_or_default();
                if let Some(value) = lookup(HTML5, name).or_else(|| lookup(FTFY_UPPER, name)) {
                    return value.to_string();
                }
                if name.starts_with('#') {
                    let decoded = self.html_unescape(whole);
                    if !decoded.contains(';') {
                        return decoded;
                    }
                }
                whole.to_string()
            })
            .into_owned()
    }

    /// Python's `html.unescape` (HTML5 rules: legacy names without `;`, longest-prefix match,
    /// Windows-1252 for `&#128;`..`&#159;`, U+FFFD for surrogates and out-of-range numbers).
    pub(super) fn html_unescape(&self, text: &str) -> String {
        if !text.contains('&') {
            return text.to_string();
        }
        self.charref
            .replace_all(text, |caps: &Captures<'_>| {
                let s = caps.get(1).map_or("", |m| m.as_str());
                match s.strip_prefix('#') {
                    Some(num) => numeric_charref(num),
                    None => named_charref(s),
                }
            })
            .into_owned()
    }
}

/// `_replace_charref` for `#123;` / `#x7B;` (the `#` already stripped).
fn numeric_charref(num: &str) -> String {
    let (digits, radix) = match num.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (num, 10),
    };
    // Saturate: anything past U+10FFFF gives U+FFFD like Python's unbounded int.
    let n = digits
        .trim_end_matches(';')
        .chars()
        .filter_map(|c| c.to_digit(radix))
        .fold(0u32, |acc, d| acc.saturating_mul(radix).saturating_add(d));
    match n {
        0x00 => "\u{fffd}".to_string(),
        0x0D => "\r".to_string(),
        0x80..=0x9F => CP1252_C1.get((n - 0x80) as usize).map_or_else(String::new, |c| c.to_string()),
        0xD800..=0xDFFF | 0x110000.. => "\u{fffd}".to_string(),
        0x01..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0xFDD0..=0xFDEF => String::new(),
        _ if n & 0xFFFE == 0xFFFE => String::new(),
        _ => char::from_u32(n).map_or_else(|| "\u{fffd}".to_string(), |c| c.to_string()),
    }
}

/// `_replace_charref` for a name (with its `;` if any): exact match, else the longest prefix
/// of at least 2 chars that is a legacy entity, else left as is.
fn named_charref(s: &str) -> String {
    if let Some(value) = lookup(HTML5, s) {
        return value.to_string();
    }
    let cuts: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in cuts.iter().rev() {
        let (head, tail) = s.split_at(cut);
        if let Some(value) = lookup(HTML5, head) {
            return format!("{value}{tail}");
        }
    }
    format!("&{s}")
}

fn lookup(table: &'static [(&'static str, &'static str)], name: &str) -> Option<&'static str> {
    table.binary_search_by(|(k, _)| (*k).cmp(name)).ok().and_then(|i| table.get(i)).map(|(_, v)| *v)
}

/// `fix_c1_controls`.
fn fix_c1_control(c: char) -> char {
    match c {
        '\u{80}'..='\u{9f}' => CP1252_C1.get(c as usize - 0x80).copied().unwrap_or(c),
        _ => c,
    }
}

/// `fix_latin_ligatures` (ftfy's `LIGATURES` table; `æ` and non-Latin ligatures stay).
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let rep = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(rep);
    }
    out
}

/// `fix_character_width`: U+3000 to a space, U+FF01..U+FFEF to their NFKC form.
fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ffef}' => out.extend(std::iter::once(c).nfkc()),
            _ => out.push(c),
        }
    }
    out
}

/// `uncurl_quotes`.
fn uncurl_quote(c: char) -> char {
    match c {
        '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
        '\u{201c}'..='\u{201f}' => '"',
        _ => c,
    }
}

/// `remove_control_chars`: C0 controls except tab/newline/FF/CR, DEL, deprecated Arabic
/// format chars, BOM, interlinear annotation marks and U+FFFC.
fn is_control_to_remove(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{e}'..='\u{1f}'
            | '\u{7f}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}'
    )
}
