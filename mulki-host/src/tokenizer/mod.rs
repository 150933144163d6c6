//! The CLIP BPE tokenizer, a hand port of open_clip's `SimpleTokenizer` (`open_clip/tokenizer.py`,
//! itself OpenAI's CLIP tokenizer): clean, pre-tokenize with the CLIP regex, byte-level BPE with
//! `</w>` word ends, then `[sot] + ids + [eot]` truncated and padded to the context length.
//! Checked id for id against open_clip 3.3.0 on `fixtures/tokenizer/corpus.jsonl`.

mod bpe;
mod clean;
mod entities;
mod error;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use regex::Regex;

pub use error::TokenizerError;

/// Id that fills a row after its end-of-text token (open_clip: `torch.zeros`). It is also
/// the id of the token `!`; CLIP pools at the eot position (the largest id, found by argmax)
/// and its attention is causal, so what follows the eot never matters.
pub const PAD_ID: u32 = 0;

/// A small CLIP-compatible vocabulary for tiny models: the 512 byte symbols (plain and `</w>`)
/// in `bytes_to_unicode` order, then each of the first `max_merges` lines of `merges_txt` (a
/// CLIP `merges.txt`) whose two parts are already symbols and whose join is new, then
/// `<|startoftext|>` and `<|endoftext|>`. Returns the tokens in id order and the `merges.txt`
/// text; every string the full tokenizer accepts still tokenizes (down to bytes).
pub fn reduced_vocab(merges_txt: &str, max_merges: usize) -> (Vec<String>, String) {
    let chars = bpe::bytes_to_unicode();
    let order = bpe::byte_order();
    let mut tokens: Vec<String> = order.iter().map(|&b| chars[usize::from(b)].to_string()).collect();
    tokens.extend(order.iter().map(|&b| format!("{}</w>", chars[usize::from(b)])));
    let mut merges = String::from("#version: 0.2\n");
    for line in merges_txt.lines().skip(1).take(max_merges) {
        let Some((l, r)) = line.split_once(' ') else { continue };
        let joined = format!("{l}{r}");
        if tokens.iter().any(|t| t == l) && tokens.iter().any(|t| t == r) && !tokens.contains(&joined) {
            tokens.push(joined);
            merges.push_str(line);
            merges.push('\n');
        }
    }
    tokens.push("<|startoftext|>".into());
    tokens.push("<|endoftext|>".into());
    (tokens, merges)
}

/// `vocab.json` text of tokens in id order.
pub fn vocab_json(tokens: &[String]) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), serde_json::Value::from(i))).collect();
    serde_json::Value::Object(map).to_string()
}

/// Context length of every OpenAI CLIP text tower.
pub const DEFAULT_CONTEXT_LENGTH: usize = 77;

/// Most tokens a `vocab.json` may have (2^20); CLIP has 49408.
pub const MAX_VOCAB: usize = 1 << 20;

/// Most merges a `merges.txt` may have (2^20); CLIP has 48894.
pub const MAX_MERGES: usize = 1 << 20;

/// open_clip's pre-tokenizer: special tokens, contractions, letter runs, single digits, runs of
/// anything else; whitespace is skipped. Only the literals are case-insensitive: open_clip
/// compiles everything with IGNORECASE, but its input is already lowercased, and the `regex`
/// module then leaves `\p{L}` as is while Rust would add U+0345 (which folds to `ι`). The
/// `regex` module also keeps U+0345 out of the last class, so it is dropped like whitespace.
const PATTERN: &str =
    r"(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)|\p{L}+|\p{N}|[^\s\p{L}\p{N}\x{345}]+";

/// Words cached before the cache is cleared (bounds memory on adversarial input).
const CACHE_LIMIT: usize = 1 << 16;

/// A loaded CLIP tokenizer. `encode` / `tokenize` take `&self` (a per-word BPE cache sits
/// behind a mutex), so one tokenizer can be shared between threads.
///
/// Unicode data (letter/number classes, lowercasing, NFC) is Rust's (regex, std,
/// unicode-normalization), which can differ from a Python reference only on characters
/// assigned after that Python's Unicode version (14.0 for Python 3.11).
pub struct Tokenizer {
    bpe: bpe::Bpe,
    cleaner: clean::Cleaner,
    pattern: Regex,
    /// Inverse of `bytes_to_unicode`, for `decode`.
    byte_of: HashMap<char, u8>,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("sot_id", &self.bpe.sot)
            .field("eot_id", &self.bpe.eot)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// From an HF `vocab.json` + `merges.txt` pair (as in an `openai/clip-vit-*` folder).
    pub fn from_hf_files(vocab: &Path, merges: &Path) -> Result<Self, TokenizerError> {
        Self::new(bpe::Bpe::from_hf_files(vocab, merges)?)
    }

    /// From a folder holding `vocab.json` and `merges.txt`.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TokenizerError> {
        Self::from_hf_files(&dir.join("vocab.json"), &dir.join("merges.txt"))
    }

    /// From OpenAI's `bpe_simple_vocab_16e6.txt.gz` (shipped with CLIP and open_clip); gives
    /// the same ids as the HF files.
    pub fn from_bpe_gz(path: &Path) -> Result<Self, TokenizerError> {
        Self::new(bpe::Bpe::from_bpe_gz(path)?)
    }

    fn new(bpe: bpe::Bpe) -> Result<Self, TokenizerError> {
        let byte_of = bpe.byte_chars.iter().zip(0..=255u8).map(|(&c, b)| (c, b)).collect();
        Ok(Self {
            bpe,
            cleaner: clean::Cleaner::new()?,
            pattern: Regex::new(PATTERN)?,
            byte_of,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Id of the start-of-text token (49406 for CLIP).
    pub fn sot_id(&self) -> u32 {
        self.bpe.sot
    }

    /// Id of the end-of-text token (49407 for CLIP), the largest id.
    pub fn eot_id(&self) -> u32 {
        self.bpe.eot
    }

    /// Number of tokens; ids are `0..vocab_size()`.
    pub fn vocab_size(&self) -> usize {
        self.bpe.tokens.len()
    }

    /// The text as open_clip sees it before pre-tokenizing: ftfy subset, HTML unescape,
    /// whitespace collapsed, lowercased.
    pub fn clean(&self, text: &str) -> String {
        self.cleaner.clean(text)
    }

    /// Token ids of `text`, without start/end tokens (`SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        self.encode_into(text, usize::MAX, &mut ids);
        ids
    }

    /// `[sot] + encode(text) + [eot]`, cut to `context_length` with the last id forced to eot,
    /// then padded with [`PAD_ID`]: one row of open_clip's `tokenize(texts, context_length)`.
    /// A `context_length` of 0 gives an empty row (open_clip asserts instead).
    pub fn tokenize(&self, text: &str, context_length: usize) -> Vec<u32> {
        let mut ids = Vec::with_capacity(context_length.clamp(2, 1024));
        ids.push(self.bpe.sot);
        // Ids past `context_length - 1` are cut anyway; stop encoding once we have them.
        self.encode_into(text, context_length, &mut ids);
        ids.push(self.bpe.eot);
        if ids.len() > context_length {
            ids.truncate(context_length);
            if let Some(last) = ids.last_mut() {
                *last = self.bpe.eot;
            }
        }
        ids.resize(context_length, PAD_ID);
        ids
    }

    /// [`Self::tokenize`] for each text, rows concatenated (`texts.len() * context_length` ids).
    pub fn tokenize_batch<S: AsRef<str>>(&self, texts: &[S], context_length: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(texts.len().saturating_mul(context_length).min(1 << 20));
        for text in texts {
            out.extend(self.tokenize(text.as_ref(), context_length));
        }
        out
    }

    /// Text of `ids` as `SimpleTokenizer.decode` gives it: tokens joined, bytes decoded as
    /// lossy UTF-8, `</w>` turned into a space. Ids outside the vocab are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            let Some(token) = usize::try_from(id).ok().and_then(|i| self.bpe.tokens.get(i)) else {
                continue;
            };
            // Every char of a vocab token is a byte symbol; others cannot occur but are skipped.
            bytes.extend(token.chars().filter_map(|c| self.byte_of.get(&c).copied()));
        }
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }

    /// Appends ids of `text` to `out` until it holds at least `limit` ids.
    fn encode_into(&self, text: &str, limit: usize, out: &mut Vec<u32>) {
        let cleaned = self.cleaner.clean(text);
        for m in self.pattern.find_iter(&cleaned) {
            if out.len() >= limit {
                break;
            }
            // The special alternatives of the pattern map straight to their ids.
            match m.as_str() {
                "<start_of_text>" => out.push(self.bpe.sot),
                "<end_of_text>" => out.push(self.bpe.eot),
                word => self.encode_word_cached(word, out),
            }
        }
    }

    /// BPE of one word through the cache; the lock is held per lookup, not per text, so
    /// threads sharing a tokenizer do not serialise. A poisoned cache is simply bypassed.
    fn encode_word_cached(&self, word: &str, out: &mut Vec<u32>) {
        if let Some(ids) = self.cache.lock().ok().and_then(|c| c.get(word).cloned()) {
            out.extend_from_slice(&ids);
            return;
        }
        let start = out.len();
        self.bpe.encode_word(word.as_bytes(), out);
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(word.to_string(), out.get(start..).unwrap_or_default().to_vec());
        }
    }
}

/// What the runner needs from a tokenizer: fixed-length id rows (start token, ids, end token,
/// padding). The CLIP BPE implements it; so does the word-level vocabulary of the built-in
/// synthetic world.
pub trait Tokenize {
    /// One row of `context_length` ids per text, concatenated.
    fn tokenize_rows(&self, texts: &[String], context_length: usize) -> Vec<u32>;
    /// The id that pads rows (never pooled: pooling is at the end token).
    fn pad_id(&self) -> u32;
}

impl Tokenize for Tokenizer {
    fn tokenize_rows(&self, texts: &[String], context_length: usize) -> Vec<u32> {
        self.tokenize_batch(texts, context_length)
    }
    fn pad_id(&self) -> u32 {
        PAD_ID
    }
}
