//! Errors of the CLIP tokenizer loaders. Every variant names the file and, for line-based
//! files, the 1-based line, so a broken `vocab.json` / `merges.txt` / `.txt.gz` is found fast.
//! Tokenizing text never fails: only loading does.

use std::path::PathBuf;

/// A vocab or merges file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file does not exist (`what` is "vocab", "merges" or "BPE file").
    #[error("missing {what}: {}: {source}", .path.display())]
    Missing { what: &'static str, path: PathBuf, source: std::io::Error },
    /// The file exists but reading (or gunzipping) it failed.
    #[error("cannot read {what}: {}: {source}", .path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    /// The file (after decompression) is larger than we are willing to hold in memory.
    #[error("{what} too large: {}: more than {limit} bytes", .path.display())]
    FileTooLarge { what: &'static str, path: PathBuf, limit: u64 },
    /// `vocab.json` is not valid JSON.
    #[error("malformed vocab JSON: {}:{line}:{column}: {message}", .path.display())]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    /// `vocab.json` is valid JSON but not an object of token -> id.
    #[error("malformed vocab JSON: {}: expected an object mapping tokens to ids", .path.display())]
    VocabNotObject { path: PathBuf },
    /// An id that is not an integer in `0..len` (ids must be dense so they index embeddings).
    #[error("bad vocab entry: {}: token {token:?}: {message}", .path.display())]
    VocabEntry { path: PathBuf, token: String, message: String },
    /// More than [`super::MAX_VOCAB`] tokens.
    #[error("vocab too large: {}: {len} entries, the limit is {limit}", .path.display())]
    VocabTooLarge { path: PathBuf, len: usize, limit: usize },
    /// Two tokens share an id.
    #[error("duplicate vocab id: {}: id {id} is given to both {first:?} and {second:?}", .path.display())]
    DuplicateId { path: PathBuf, id: u32, first: String, second: String },
    /// A token the tokenizer cannot work without (a byte symbol, `<|startoftext|>`, ...).
    #[error("incomplete vocab: {}: no token {token:?}", .path.display())]
    MissingToken { path: PathBuf, token: String },
    /// Two merges of the `.txt.gz` produce the same token, so ids would be ambiguous.
    #[error("duplicate token: {}:{line}: merge gives {token:?}, which is already in the vocab", .path.display())]
    DuplicateToken { path: PathBuf, line: usize, token: String },
    /// A merges line that is not valid UTF-8.
    #[error("malformed merges line: {}:{line}: not valid UTF-8", .path.display())]
    NotUtf8 { path: PathBuf, line: usize },
    /// A merges line that is not exactly two whitespace-separated symbols.
    #[error("malformed merges line: {}:{line}: {text:?}: expected two symbols separated by a space", .path.display())]
    MalformedMerge { path: PathBuf, line: usize, text: String },
    /// A merge whose part, or whose result, is not in the vocab.
    #[error("unknown merge symbol: {}:{line}: {symbol:?} is not in the vocab", .path.display())]
    UnknownSymbol { path: PathBuf, line: usize, symbol: String },
    /// More than [`super::MAX_MERGES`] merges.
    #[error("too many merges: {}: more than {limit}", .path.display())]
    TooManyMerges { path: PathBuf, limit: usize },
    /// A built-in pattern failed to compile (a bug, not an input problem).
    #[error("tokenizer pattern: {0}")]
    Pattern(#[from] regex::Error),
}
