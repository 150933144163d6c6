//! Byte-level BPE of CLIP: `bytes_to_unicode`, the vocab and merge ranks read from HF's
//! `vocab.json` + `merges.txt` or from OpenAI's `bpe_simple_vocab_16e6.txt.gz`, and the merge
//! loop of open_clip's `SimpleTokenizer.bpe` (`open_clip/tokenizer.py`), run on ids.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::error::TokenizerError;
use super::{MAX_MERGES, MAX_VOCAB};

/// Largest file (after decompression) a loader reads; the real ones are 1-4 MB.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Merges SimpleTokenizer takes from the `.txt.gz` (lines 2..=48895): 49152 - 256 - 2.
pub(super) const GZ_MERGES: usize = 49152 - 256 - 2;

/// HF's names of the two special tokens; open_clip >= 2.x calls them `<start_of_text>` /
/// `<end_of_text>`, which we also accept in `vocab.json`.
const SOT_NAMES: [&str; 2] = ["<|startoftext|>", "<start_of_text>"];
const EOT_NAMES: [&str; 2] = ["<|endoftext|>", "<end_of_text>"];

/// Bytes that stand for themselves in BPE symbols (printable, non-space Latin-1).
fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The bytes in the order `bytes_to_unicode()` lists them (printable ones first), which is
/// also the order of the first 256 vocab ids.
pub(super) fn byte_order() -> Vec<u8> {
    let printable = (0..=255u8).filter(|&b| is_printable(b));
    printable.chain((0..=255u8).filter(|&b| !is_printable(b))).collect()
}

/// `bytes_to_unicode()`: byte -> the printable char standing for it in BPE symbols, so
/// symbols never contain whitespace or control characters.
pub(super) fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        table[usize::from(b)] = if is_printable(b) {
            char::from(b)
        } else {
            // 256 + n for the n-th non-printable byte (n < 256): always a valid scalar value.
            let c = char::from_u32(256 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER);
            shifted += 1;
            c
        };
    }
    table
}

/// Vocab and merge ranks, with symbols as vocab ids.
pub(super) struct Bpe {
    /// id -> token string (HF spelling, e.g. `a</w>`, `<|endoftext|>`).
    pub(super) tokens: Vec<String>,
    pub(super) sot: u32,
    pub(super) eot: u32,
    /// Id of the one-byte symbol of byte `b` (not word-final).
    byte_ids: [u32; 256],
    /// Id of byte `b` + `</w>` (the last symbol of every word).
    byte_end_ids: [u32; 256],
    /// (left id, right id) -> (rank, id of the merged symbol); lower rank merges first.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// byte -> char of `bytes_to_unicode`, for decoding.
    pub(super) byte_chars: [char; 256],
}

impl Bpe {
    /// HF `vocab.json` (token -> id, ids dense in `0..len`) and `merges.txt` (optional
    /// `#version` first line, then `left right` per line in rank order).
    pub(super) fn from_hf_files(vocab_path: &Path, merges_path: &Path) -> Result<Self, TokenizerError> {
        let tokens = read_vocab_json(vocab_path)?;
        let raw = read_limited(merges_path, "merges", false)?;
        let mut merges = Vec::new();
        for (idx, line) in split_lines(&raw).enumerate() {
            if idx == 0 && line.starts_with(b"#version") {
                continue;
            }
            merges.push((idx + 1, line));
        }
        trim_trailing_blank(&mut merges);
        if merges.len() > MAX_MERGES {
            return Err(TokenizerError::TooManyMerges { path: merges_path.to_path_buf(), limit: MAX_MERGES });
        }
        let merges = parse_merges(merges_path, &merges)?;
        Self::build(tokens, vocab_path, &merges, merges_path)
    }

    /// OpenAI's gzipped merges list; the vocab is built as SimpleTokenizer does: byte symbols,
    /// byte symbols + `</w>`, the first [`GZ_MERGES`] merges joined, `<|startoftext|>`,
    /// `<|endoftext|>`.
    pub(super) fn from_bpe_gz(path: &Path) -> Result<Self, TokenizerError> {
        let raw = read_limited(path, "BPE file", true)?;
        // Line 1 is a header; SimpleTokenizer uses lines 2..=GZ_MERGES + 1 and ignores the rest.
        let mut lines: Vec<(usize, &[u8])> =
            split_lines(&raw).enumerate().skip(1).take(GZ_MERGES).map(|(idx, line)| (idx + 1, line)).collect();
        trim_trailing_blank(&mut lines);
        let merges = parse_merges(path, &lines)?;

        let byte_chars = bytes_to_unicode();
        let mut tokens: Vec<String> = Vec::with_capacity(512 + merges.len() + 2);
        let order = byte_order();
        tokens.extend(order.iter().map(|&b| byte_chars[usize::from(b)].to_string()));
        tokens.extend(order.iter().map(|&b| format!("{}</w>", byte_chars[usize::from(b)])));
        let mut seen: HashSet<String> = tokens.iter().cloned().collect();
        for m in &merges {
            let joined = format!("{}{}", m.left, m.right);
            if !seen.insert(joined.clone()) {
                return Err(TokenizerError::DuplicateToken { path: path.to_path_buf(), line: m.line, token: joined });
            }
            tokens.push(joined);
        }
        tokens.push(SOT_NAMES[0].to_string());
        tokens.push(EOT_NAMES[0].to_string());
        Self::build(tokens, path, &merges, path)
    }

    /// Resolves symbols to ids and checks that every symbol BPE can produce is in the vocab.
    fn build(
        tokens: Vec<String>, vocab_path: &Path, merges: &[Merge<'_>], merges_path: &Path,
    ) -> Result<Self, TokenizerError> {
        let ids: HashMap<&str, u32> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i as u32)).collect();
        let lookup = |name: &str| -> Result<u32, TokenizerError> {
            ids.get(name)
                .copied()
                .ok_or_else(|| TokenizerError::MissingToken { path: vocab_path.to_path_buf(), token: name.to_string() })
        };
        let special = |names: [&str; 2]| -> Result<u32, TokenizerError> {
            names.iter().find_map(|n| ids.get(n).copied()).map_or_else(|| lookup(names[0]), Ok)
        };
        let sot = special(SOT_NAMES)?;
        let eot = special(EOT_NAMES)?;
        let byte_chars = bytes_to_unicode();
        let mut byte_ids = [0u32; 256];
        let mut byte_end_ids = [0u32; 256];
        for (b, c) in byte_chars.iter().enumerate() {
            byte_ids[b] = lookup(&c.to_string())?;
            byte_end_ids[b] = lookup(&format!("{c}</w>"))?;
        }
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            let unknown = |symbol: String| TokenizerError::UnknownSymbol {
                path: merges_path.to_path_buf(),
                line: m.line,
                symbol,
            };
            let left = ids.get(m.left).copied().ok_or_else(|| unknown(m.left.to_string()))?;
            let right = ids.get(m.right).copied().ok_or_else(|| unknown(m.right.to_string()))?;
            let joined = format!("{}{}", m.left, m.right);
            let merged = ids.get(joined.as_str()).copied().ok_or_else(|| unknown(joined.clone()))?;
            // A repeated pair keeps its last rank, as `dict(zip(merges, range(len(merges))))` does.
            table.insert((left, right), (rank as u32, merged));
        }
        drop(ids);
        Ok(Self { tokens, sot, eot, byte_ids, byte_end_ids, merges: table, byte_chars })
    }

    /// Appends the ids of one pre-tokenized word (its UTF-8 bytes) to `out`.
    ///
    /// Same result as `SimpleTokenizer.bpe`: repeatedly merge every occurrence, left to right,
    /// of the adjacent pair with the lowest rank, until no pair has a rank.
    pub(super) fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        let Some((&last, init)) = word.split_last() else {
            return;
        };
        let mut syms: Vec<u32> = init.iter().map(|&b| self.byte_ids[usize::from(b)]).collect();
        syms.push(self.byte_end_ids[usize::from(last)]);
        let mut next = Vec::with_capacity(syms.len());
        while syms.len() > 1 {
            let best = syms
                .windows(2)
                .filter_map(|w| match *w {
                    [a, b] => self.merges.get(&(a, b)).map(|&(rank, merged)| (rank, a, b, merged)),
                    _ => None,
                })
                .min_by_key(|&(rank, ..)| rank);
            let Some((_, a, b, merged)) = best else {
                break;
            };
            next.clear();
            let mut rest = syms.as_slice();
            while let Some((&first, tail)) = rest.split_first() {
                if first == a && tail.first() == Some(&b) {
                    next.push(merged);
                    rest = tail.get(1..).unwrap_or_default();
                } else {
                    next.push(first);
                    rest = tail;
                }
            }
            std::mem::swap(&mut syms, &mut next);
        }
        out.extend_from_slice(&syms);
    }
}

/// One parsed merges line.
struct Merge<'a> {
    line: usize,
    left: &'a str,
    right: &'a str,
}

fn parse_merges<'a>(path: &Path, lines: &[(usize, &'a [u8])]) -> Result<Vec<Merge<'a>>, TokenizerError> {
    let mut out = Vec::with_capacity(lines.len());
    for &(line, bytes) in lines {
        let text =
            std::str::from_utf8(bytes).map_err(|_| TokenizerError::NotUtf8 { path: path.to_path_buf(), line })?;
        let mut parts = text.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(left), Some(right), None) => out.push(Merge { line, left, right }),
            _ => {
                return Err(TokenizerError::MalformedMerge { path: path.to_path_buf(), line, text: text.to_string() });
            }
        }
    }
    Ok(out)
}

/// Lines split on `\n` like Python's `str.split('\n')`; a `\r` before it is left to
/// `split_whitespace`.
fn split_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    raw.split(|&b| b == b'\n')
}

/// Drops blank lines at the end (the final newline of the file, editor padding).
fn trim_trailing_blank(lines: &mut Vec<(usize, &[u8])>) {
    while lines.last().is_some_and(|(_, l)| l.iter().all(u8::is_ascii_whitespace)) {
        lines.pop();
    }
}

/// Reads a whole file (gunzipping all members if `gz`), refusing more than `MAX_FILE_BYTES`.
fn read_limited(path: &Path, what: &'static str, gz: bool) -> Result<Vec<u8>, TokenizerError> {
    let file = File::open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            TokenizerError::Missing { what, path: path.to_path_buf(), source }
        } else {
            TokenizerError::Read { what, path: path.to_path_buf(), source }
        }
    })?;
    let reader: Box<dyn Read> = if gz { Box::new(flate2::read::MultiGzDecoder::new(file)) } else { Box::new(file) };
    let mut buf = Vec::new();
    reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf).map_err(|source| TokenizerError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(TokenizerError::FileTooLarge { what, path: path.to_path_buf(), limit: MAX_FILE_BYTES });
    }
    Ok(buf)
}

/// `vocab.json` as an id-indexed token list; ids must be unique and cover `0..len`.
fn read_vocab_json(path: &Path) -> Result<Vec<String>, TokenizerError> {
    let raw = read_limited(path, "vocab", false)?;
    let value: serde_json::Value = serde_json::from_slice(&raw).map_err(|e| TokenizerError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let serde_json::Value::Object(map) = value else {
        return Err(TokenizerError::VocabNotObject { path: path.to_path_buf() });
    };
    let len = map.len();
    if len > MAX_VOCAB {
        return Err(TokenizerError::VocabTooLarge { path: path.to_path_buf(), len, limit: MAX_VOCAB });
    }
    let mut tokens: Vec<Option<String>> = vec![None; len];
    for (token, value) in map {
        let id = value.as_u64().and_then(|id| u32::try_from(id).ok());
        let Some((id, slot)) = id.and_then(|id| Some((id, tokens.get_mut(id as usize)?))) else {
            return Err(TokenizerError::VocabEntry {
                path: path.to_path_buf(),
                token,
                message: format!("id {value} is not an integer in 0..{len} (ids must be dense)"),
            });
        };
        if let Some(first) = slot.take() {
            return Err(TokenizerError::DuplicateId { path: path.to_path_buf(), id, first, second: token });
        }
        *slot = Some(token);
    }
    // Unique ids in 0..len fill every slot.
    Ok(tokens.into_iter().flatten().collect())
}
