//! The CLIP BPE tokenizer (`mulki_host::tokenizer`) against open_clip 3.3.0's SimpleTokenizer:
//! ids of `fixtures/tokenizer/corpus.jsonl` (written by `fixtures/gen_tokenizer.py`) through
//! both loaders (HF vocab.json + merges.txt, and the original .txt.gz), loader error messages,
//! and random text that must never panic.

use mulki_tests::scratch::Scratch;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mulki_host::tokenizer::{Tokenizer, TokenizerError, DEFAULT_CONTEXT_LENGTH, PAD_ID};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tokenizer")
}

fn hf_tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_hf_dir(&fixture_dir()).expect("load vocab.json + merges.txt"))
}

fn gz_tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_bpe_gz(&fixture_dir().join("bpe_simple_vocab_16e6.txt.gz")).expect("load bpe .txt.gz")
    })
}

struct Row {
    text: String,
    ids: Vec<u32>,
    ftfy_differs: bool,
    /// open_clip's ids with ftfy's `fix_encoding` switched off (only for `ftfy_differs` rows).
    ids_no_fix_encoding: Option<Vec<u32>>,
}

fn ids_of(value: &serde_json::Value) -> Option<Vec<u32>> {
    value.as_array()?.iter().map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok())).collect()
}

fn corpus() -> &'static [Row] {
    static ROWS: OnceLock<Vec<Row>> = OnceLock::new();
    ROWS.get_or_init(|| {
        let raw = std::fs::read_to_string(fixture_dir().join("corpus.jsonl")).expect("read corpus.jsonl");
        raw.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("corpus line is JSON");
                Row {
                    text: v["text"].as_str().expect("text").to_string(),
                    ids: ids_of(&v["ids"]).expect("ids"),
                    ftfy_differs: v["ftfy_differs"].as_bool().expect("ftfy_differs"),
                    ids_no_fix_encoding: v.get("ids_no_fix_encoding").and_then(ids_of),
                }
            })
            .collect()
    })
}

/// Runs the whole corpus and reports every mismatch at once.
fn check_corpus(tok: &Tokenizer, loader: &str) {
    let rows = corpus();
    assert!(rows.len() >= 500, "corpus has only {} strings", rows.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for row in rows {
        let got = tok.tokenize(&row.text, DEFAULT_CONTEXT_LENGTH);
        assert_eq!(got.len(), DEFAULT_CONTEXT_LENGTH);
        let want = if row.ftfy_differs { row.ids_no_fix_encoding.as_ref() } else { Some(&row.ids) };
        if let Some(want) = want {
            checked += 1;
            if &got != want {
                failures.push(format!(
                    "{:?}\n  clean: {:?}\n  want:  {:?}\n  got:   {:?}",
                    row.text,
                    tok.clean(&row.text),
                    want,
                    got
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{loader}: {} of {checked} rows differ:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= rows.len() - 20);
}

#[test]
fn corpus_matches_open_clip_via_hf_files() {
    check_corpus(hf_tokenizer(), "vocab.json + merges.txt");
}

#[test]
fn corpus_matches_open_clip_via_bpe_gz() {
    check_corpus(gz_tokenizer(), "bpe_simple_vocab_16e6.txt.gz");
}

#[test]
fn loaders_agree_and_basic_ids() {
    for tok in [hf_tokenizer(), gz_tokenizer()] {
        assert_eq!(tok.vocab_size(), 49408);
        assert_eq!(tok.sot_id(), 49406);
        assert_eq!(tok.eot_id(), 49407);
        assert_eq!(PAD_ID, 0);
        let row = tok.tokenize("a photo of a cat.", DEFAULT_CONTEXT_LENGTH);
        assert_eq!(row.get(..8), Some(&[49406, 320, 1125, 539, 320, 2368, 269, 49407][..]));
        assert!(row.get(8..).unwrap_or_default().iter().all(|&id| id == PAD_ID));
        assert_eq!(tok.encode("a photo of a cat."), vec![320, 1125, 539, 320, 2368, 269]);
        assert_eq!(tok.decode(&tok.encode("A Photo of a CAT!")), "a photo of a cat ! ");
        assert_eq!(tok.decode(&tok.encode("café 猫 😀")), "café 猫 😀 ");
        // open_clip's special-token spelling in the text maps to the special ids.
        assert_eq!(tok.encode("<start_of_text>x<END_OF_TEXT>"), vec![49406, 343, 49407]);
    }
}

#[test]
fn loaders_have_the_same_vocab() {
    let (hf, gz) = (hf_tokenizer(), gz_tokenizer());
    // Special tokens decode to their (shared HF) names; everything else is byte symbols.
    for id in 0..hf.vocab_size() as u32 {
        assert_eq!(hf.decode(&[id]), gz.decode(&[id]), "id {id}");
    }
    fn shareable<T: Send + Sync>() {}
    shareable::<Tokenizer>();
}

#[test]
fn truncation_and_short_context_lengths() {
    let tok = hf_tokenizer();
    let long = "word ".repeat(200);
    let row = tok.tokenize(&long, 77);
    assert_eq!(row.len(), 77);
    assert_eq!(row.first(), Some(&tok.sot_id()));
    assert_eq!(row.last(), Some(&tok.eot_id()));
    assert_eq!(tok.tokenize("a cat", 0), Vec::<u32>::new());
    assert_eq!(tok.tokenize("a cat", 1), vec![tok.eot_id()]);
    assert_eq!(tok.tokenize("a cat", 2), vec![tok.sot_id(), tok.eot_id()]);
    assert_eq!(tok.tokenize("", 4), vec![tok.sot_id(), tok.eot_id(), PAD_ID, PAD_ID]);
    let batch = tok.tokenize_batch(&["a cat", "a dog"], 5);
    assert_eq!(batch.len(), 10);
    assert_eq!(batch.get(5..), Some(&tok.tokenize("a dog", 5)[..]));
}

// ---------------------------------------------------------------------------------------------
// Loader errors

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> Scratch {
    Scratch::new("tokenizer", name)
}

fn write(path: &Path, contents: impl AsRef<[u8]>) {
    std::fs::write(path, contents).expect("write scratch file");
}

/// Loads `vocab` + `merges` from a scratch folder and returns the error message.
fn hf_error(name: &str, vocab: impl AsRef<[u8]>, merges: impl AsRef<[u8]>) -> (TokenizerError, String, Scratch) {
    let dir = scratch(name);
    write(&dir.join("vocab.json"), vocab);
    write(&dir.join("merges.txt"), merges);
    let err = Tokenizer::from_hf_dir(&dir).expect_err("loading must fail");
    let msg = err.to_string();
    (err, msg, dir)
}

fn fixture_vocab() -> Vec<u8> {
    std::fs::read(fixture_dir().join("vocab.json")).expect("read vocab.json")
}

fn fixture_merges() -> String {
    std::fs::read_to_string(fixture_dir().join("merges.txt")).expect("read merges.txt")
}

#[test]
fn error_missing_vocab_file() {
    let dir = scratch("missing");
    let vocab = dir.join("vocab.json");
    let err = Tokenizer::from_hf_files(&vocab, &fixture_dir().join("merges.txt")).expect_err("no vocab");
    let msg = err.to_string();
    assert!(matches!(err, TokenizerError::Missing { .. }), "{err:?}");
    assert!(msg.starts_with(&format!("missing vocab: {}: ", vocab.display())), "{msg}");
    let gz = dir.join("nope.txt.gz");
    let msg = Tokenizer::from_bpe_gz(&gz).expect_err("no gz").to_string();
    assert!(msg.starts_with(&format!("missing BPE file: {}: ", gz.display())), "{msg}");
}

#[test]
fn error_malformed_merges_line() {
    let merges = "#version: 0.2\ni n\nt h e\n";
    let (err, msg, dir) = hf_error("merges", fixture_vocab(), merges);
    assert!(matches!(err, TokenizerError::MalformedMerge { line: 3, .. }), "{err:?}");
    let want = format!("malformed merges line: {}:3: ", dir.join("merges.txt").display());
    assert!(msg.starts_with(&want), "{msg}");

    // The same in the real file: line 1000 (merge 999) replaced by a one-symbol line.
    let mut lines: Vec<String> = fixture_merges().lines().map(str::to_string).collect();
    if let Some(line) = lines.get_mut(999) {
        *line = "lonely".to_string();
    }
    let (err, msg, _) = hf_error("merges-real", fixture_vocab(), lines.join("\n"));
    assert!(matches!(err, TokenizerError::MalformedMerge { line: 1000, .. }), "{err:?}");
    assert!(msg.contains("merges.txt:1000: \"lonely\": expected two symbols"), "{msg}");

    let (err, msg, _) = hf_error("merges-utf8", fixture_vocab(), b"#version: 0.2\ni n\n\xff\xfe x\n");
    assert!(matches!(err, TokenizerError::NotUtf8 { line: 3, .. }), "{err:?}");
    assert!(msg.contains("merges.txt:3: not valid UTF-8"), "{msg}");

    let (err, msg, _) = hf_error("merges-blank", fixture_vocab(), "#version: 0.2\ni n\n\nt h\n");
    assert!(matches!(err, TokenizerError::MalformedMerge { line: 3, .. }), "{err:?}: {msg}");
}

#[test]
fn error_merge_with_unknown_symbol() {
    let (err, msg, dir) = hf_error("unknown", fixture_vocab(), "#version: 0.2\ni n\nzq\u{2603} x\n");
    assert!(matches!(err, TokenizerError::UnknownSymbol { line: 3, .. }), "{err:?}");
    let want =
        format!("unknown merge symbol: {}:3: \"zq\u{2603}\" is not in the vocab", dir.join("merges.txt").display());
    assert_eq!(msg, want);
}

#[test]
fn error_malformed_vocab_json() {
    let (err, msg, dir) = hf_error("json", "{\"a\": 0,\n \"b\": 1,,}", "#version: 0.2\n");
    assert!(matches!(err, TokenizerError::Json { line: 2, .. }), "{err:?}");
    assert!(msg.starts_with(&format!("malformed vocab JSON: {}:2:", dir.join("vocab.json").display())), "{msg}");

    let (err, msg, _) = hf_error("json-array", "[1, 2]", "");
    assert!(matches!(err, TokenizerError::VocabNotObject { .. }), "{err:?}");
    assert!(msg.contains("vocab.json: expected an object"), "{msg}");

    let (err, msg, _) = hf_error("json-id", "{\"a\": 0, \"b\": -1}", "");
    assert!(matches!(err, TokenizerError::VocabEntry { .. }), "{err:?}");
    assert!(msg.contains("vocab.json: token \"b\": id -1 is not an integer in 0..2"), "{msg}");

    let (err, msg, _) = hf_error("json-gap", "{\"a\": 0, \"b\": 2}", "");
    assert!(matches!(err, TokenizerError::VocabEntry { .. }), "{err:?}: {msg}");

    let (err, msg, _) = hf_error("json-dup", "{\"a\": 1, \"b\": 1}", "");
    assert!(matches!(err, TokenizerError::DuplicateId { id: 1, .. }), "{err:?}");
    assert!(msg.contains("vocab.json: id 1 is given to both \"a\" and \"b\""), "{msg}");

    let (err, msg, _) = hf_error("json-incomplete", "{\"a\": 0}", "");
    assert!(matches!(err, TokenizerError::MissingToken { .. }), "{err:?}");
    assert!(msg.contains("vocab.json: no token \"<|startoftext|>\""), "{msg}");
}

#[test]
fn error_vocab_too_large() {
    let n = (1usize << 20) + 1;
    let mut json = String::with_capacity(n * 16);
    json.push('{');
    for i in 0..n {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!("\"t{i}\":{i}"));
    }
    json.push('}');
    let (err, msg, _) = hf_error("too-large", json, "");
    assert!(matches!(err, TokenizerError::VocabTooLarge { len, .. } if len == n), "{err:?}");
    assert!(msg.contains("vocab.json: 1048577 entries, the limit is 1048576"), "{msg}");
}

#[test]
fn error_bad_gz() {
    let dir = scratch("gz");
    let path = dir.join("bpe.txt.gz");
    write(&path, b"this is not gzip");
    let err = Tokenizer::from_bpe_gz(&path).expect_err("not gzip");
    assert!(matches!(err, TokenizerError::Read { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("cannot read BPE file: {}: ", path.display())));

    // A valid gzip whose merges line 3 is broken.
    let enc = stored_gzip(b"header\ni n\nthree parts here\n");
    write(&path, &enc);
    let err = Tokenizer::from_bpe_gz(&path).expect_err("bad line");
    assert!(matches!(err, TokenizerError::MalformedMerge { line: 3, .. }), "{err:?}");
}

/// A stored (uncompressed) gzip member, so the test needs no compressor.
fn stored_gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    // One final stored deflate block (data is < 64 KiB here).
    let len = data.len() as u16;
    out.push(1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------------------------
// Random input

/// Knuth's MMIX LCG; the high bits are the random ones.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 32) as u32
    }

    fn below(&mut self, n: u32) -> u32 {
        self.next() % n.max(1)
    }
}

/// Arbitrary Unicode with a bias to the characters the cleaning code treats specially.
fn random_text(rng: &mut Lcg) -> String {
    const PIECES: &[&str] = &[
        "&amp;",
        "&#",
        "&#x",
        ";",
        "&",
        "<",
        "<start_of_text>",
        "<end_of_text>",
        "'s",
        "'LL",
        "\x1b[",
        "\r\n",
        "\u{85}",
        "\u{345}",
        "\u{3a3}",
        "e\u{301}",
        "\u{ff76}\u{ff9e}",
        "\u{fb01}",
        "&eacute",
        "&EACUTE;",
        "&#128512;",
        "&#x110000;",
        "\u{feff}",
        "\u{1f600}",
        "\u{2019}",
    ];
    let len = rng.below(60);
    let mut s = String::new();
    for _ in 0..len {
        match rng.below(6) {
            0 => s.push(char::from(0x20 + rng.below(0x5f) as u8)),
            1 => s.push(char::from_u32(rng.below(0x100)).unwrap_or(' ')),
            2 => s.push(char::from_u32(rng.below(0x3000)).unwrap_or('?')),
            3 => s.push(char::from_u32(rng.below(0x11_0000)).unwrap_or('\u{fffd}')),
            4 => s.push_str(PIECES[rng.below(PIECES.len() as u32) as usize]),
            _ => s.push(if rng.below(2) == 0 { ' ' } else { '\n' }),
        }
    }
    s
}

#[test]
fn random_text_never_panics() {
    let tok = hf_tokenizer();
    let vocab = tok.vocab_size() as u32;
    let mut rng = Lcg(0x5eed_c11b);
    for i in 0..3000 {
        let text = if i % 4 == 3 {
            // Random bytes read as lossy UTF-8.
            let bytes: Vec<u8> = (0..rng.below(80)).map(|_| rng.next() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            random_text(&mut rng)
        };
        let row = tok.tokenize(&text, DEFAULT_CONTEXT_LENGTH);
        assert_eq!(row.len(), DEFAULT_CONTEXT_LENGTH, "{text:?}");
        assert_eq!(row.first(), Some(&tok.sot_id()), "{text:?}");
        assert!(row.contains(&tok.eot_id()), "{text:?}");
        assert!(row.iter().all(|&id| id < vocab), "{text:?}");
        let ids = tok.encode(&text);
        let _ = tok.decode(&ids);
        let short = (rng.below(6)) as usize;
        assert_eq!(tok.tokenize(&text, short).len(), short);
    }
    // Ids outside the vocab are skipped, not a panic.
    assert_eq!(tok.decode(&[u32::MAX, 320]), "a ");
}
