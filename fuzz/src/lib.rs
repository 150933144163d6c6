//! The bodies of mulki's fuzz targets, one function per target, shared by the libFuzzer binaries
//! in `fuzz/fuzz_targets/` and by `tests/tests/fuzz_regressions.rs` (which includes this file as a
//! module and replays `fuzz/seeds/` and `fuzz/regressions/` through the same functions, so CI
//! checks every known input without running the fuzzer).
//!
//! Each function feeds arbitrary bytes to one parser of `mulki-host` and must return whatever the
//! input: the parser answers with an error, never a panic, an abort, an unbounded allocation or a
//! hang. Where a parse succeeds, a few invariants are checked as well (a manifest re-serialises
//! to itself, a decoded header re-encodes to a value that decodes back, an image transform yields
//! `3 * size * size` finite values); those checks panic, because a violation is a bug.
//!
//! Only `mulki_host`, `mulki_core`, `serde_json` and `toml` are used here: the test crate has the
//! same dependencies, so the file compiles in both places.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use mulki_core::clip::{ClipConfig, ClipLayout, HiddenAct};
use mulki_core::method::MethodConfig;
use mulki_host::checkpoint::{decode_header, encode_header, Kind, Manifest};
use mulki_host::data::codec;
use mulki_host::data::{csv, decode, idx, transform};
use mulki_host::import::{self, load_clip_bytes, read_f32_tensors};
use mulki_host::run::config::RunConfig;
use mulki_host::run::session::CheckpointState;
use mulki_host::tokenizer::Tokenizer;

/// Every target, in the order of TESTING.md's table.
pub const TARGETS: [&str; 11] = [
    "run_config",
    "method_config",
    "checkpoint_manifest",
    "checkpoint_header",
    "safetensors",
    "config_json",
    "tokenizer",
    "idx",
    "csv",
    "image",
    "header_roundtrip",
];

/// Runs target `name` on `data`; `false` if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    let f: fn(&[u8]) = match name {
        "run_config" => run_config,
        "method_config" => method_config,
        "checkpoint_manifest" => checkpoint_manifest,
        "checkpoint_header" => checkpoint_header,
        "safetensors" => safetensors,
        "config_json" => config_json,
        "tokenizer" => tokenizer,
        "idx" => idx,
        "csv" => csv,
        "image" => image,
        "header_roundtrip" => header_roundtrip,
        _ => return false,
    };
    f(data);
    true
}

/// `fuzz/` (this crate's folder, also when the file is compiled into the test crate, whose
/// folder is a sibling).
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// `fixtures/` at the repository root.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

// ------------------------------------------------------------------------------------ configs

/// The TOML run config (`mulki train --config`), and through it the method preset and overrides.
pub fn run_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = RunConfig::parse(&text, Path::new("fuzz.toml")) else {
        return;
    };
    // `parse` validated the method, so resolving it again must succeed.
    let method = cfg.method().expect("a parsed run config has a valid method");
    assert!(method.validate().is_ok());
    assert_eq!(cfg.hash(), cfg.clone().hash(), "the config hash is deterministic");
    for i in 0..cfg.tasks.len() {
        assert!(cfg.iterations(i) >= 1);
        assert!(cfg.lr(i).is_finite() && cfg.lr(i) > 0.0);
    }
}

/// `MethodConfig` from TOML (the `[method]` table without `preset`), its validation, and a
/// preset looked up by the same text.
pub fn method_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(m) = toml::from_str::<MethodConfig>(&text) {
        if m.validate().is_ok() {
            let _ = m.uses_prototypes();
            assert!(m.interval(data.len()) >= 1, "a valid method merges at least every step");
        }
    }
    if let Ok(m) = MethodConfig::preset(text.trim()) {
        assert!(m.validate().is_ok(), "preset {:?} does not validate", text.trim());
    }
}

// ---------------------------------------------------------------------------------- checkpoints

/// `MANIFEST.json`; a manifest that parses re-serialises to one that parses to the same value.
pub fn checkpoint_manifest(data: &[u8]) {
    let path = Path::new("run/task-00/step-000010/MANIFEST.json");
    let Ok(m) = Manifest::parse(data, path) else {
        return;
    };
    let _ = m.rel_dir();
    let json = m.to_json().expect("a parsed manifest serialises");
    let back = Manifest::parse(&json, path).expect("a manifest's own JSON parses");
    assert_eq!(back, m);
}

/// `state.postcard`: the versioned header around [`CheckpointState`], then its run state JSON.
pub fn checkpoint_header(data: &[u8]) {
    let path = Path::new("run/task-00/step-000010/state.postcard");
    let Ok(state) = decode_header::<CheckpointState>(data, path) else {
        return;
    };
    let _ = state.run();
    let _ = serde_json::from_str::<serde_json::Value>(&state.config_json);
    let bytes = encode_header(&state, path).expect("a decoded state encodes");
    let back: CheckpointState = decode_header(&bytes, path).expect("an encoded state decodes");
    assert_eq!((back.config_json, back.run_json), (state.config_json, state.run_json));
}

/// Arbitrary strings through `encode_header` -> `decode_header`: the value comes back and the
/// bytes are canonical. The input is split at its first NUL into the two fields.
pub fn header_roundtrip(data: &[u8]) {
    let (a, b) = split_at_byte(data, 0);
    let state = CheckpointState {
        config_json: String::from_utf8_lossy(a).into_owned(),
        run_json: String::from_utf8_lossy(b).into_owned(),
    };
    let path = Path::new("state.postcard");
    let bytes = encode_header(&state, path).expect("encode");
    let back: CheckpointState = decode_header(&bytes, path).expect("decode what was encoded");
    assert_eq!(back.config_json, state.config_json);
    assert_eq!(back.run_json, state.run_json);
    assert_eq!(encode_header(&back, path).expect("re-encode"), bytes);
    // Every strict prefix is an error (truncated), not a value.
    for cut in [0, bytes.len() / 2, bytes.len() - 1] {
        assert!(decode_header::<CheckpointState>(&bytes[..cut], path).is_err(), "prefix of {cut} bytes decoded");
    }
}

// ------------------------------------------------------------------------------------ HF import

/// A valid tiny CLIP: text width 4 (2 heads, vocab 8, 4 positions), vision width 4 (2 heads,
/// 4×4 images in 2×2 patches), one layer each, projection 4.
pub fn tiny_config() -> ClipConfig {
    let mut cfg = ClipConfig::default();
    let t = &mut cfg.text_config;
    t.vocab_size = 8;
    t.hidden_size = 4;
    t.intermediate_size = 8;
    t.num_hidden_layers = 1;
    t.num_attention_heads = 2;
    t.max_position_embeddings = 4;
    t.bos_token_id = 6;
    t.eos_token_id = 7;
    t.pad_token_id = 1;
    let v = &mut cfg.vision_config;
    v.hidden_size = 4;
    v.intermediate_size = 8;
    v.num_hidden_layers = 1;
    v.num_attention_heads = 2;
    v.image_size = 4;
    v.patch_size = 2;
    v.hidden_act = HiddenAct::Gelu;
    cfg.projection_dim = 4;
    cfg
}

/// `config.json` and `model.safetensors` (F32) of [`tiny_config`], as `save_clip_dir` writes
/// them, with deterministic parameters.
pub fn tiny_model() -> &'static (Vec<u8>, Vec<u8>) {
    static MODEL: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    MODEL.get_or_init(|| {
        let cfg = tiny_config();
        let layout = ClipLayout::new(&cfg);
        let params: Vec<f32> = (0..layout.len).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
        import::clip_to_bytes(&cfg, &layout, &params).expect("the tiny model serialises")
    })
}

/// `model.safetensors` bytes against the fixed tiny `config.json`, and the same bytes as a
/// checkpoint's `state.safetensors` (every tensor read as f32).
pub fn safetensors(data: &[u8]) {
    let (config_json, _) = tiny_model();
    if let Ok(m) = load_clip_bytes(config_json, data) {
        assert_eq!(m.params.len(), m.layout.len);
    }
    if let Ok(tensors) = read_f32_tensors(data, Path::new("state.safetensors")) {
        for (name, shape, values) in &tensors {
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            assert_eq!(n, Some(values.len()), "tensor {name}: shape {shape:?}");
        }
    }
}

/// `config.json` bytes against the fixed tiny `model.safetensors`.
pub fn config_json(data: &[u8]) {
    let (_, weights) = tiny_model();
    if let Ok(m) = load_clip_bytes(data, weights) {
        assert_eq!(m.params.len(), m.layout.len);
        assert!(m.config.validate().is_ok());
    }
}

// ------------------------------------------------------------------------------------ tokenizer

/// The CLIP tokenizer of `fixtures/tokenizer` (HF `vocab.json` + `merges.txt`), loaded once.
pub fn clip_tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_hf_dir(&fixtures_dir().join("tokenizer")).expect("fixtures/tokenizer loads"))
}

/// The input split at its first NUL into `vocab.json` and `merges.txt`, loaded from a scratch
/// folder (the loader only takes paths); then the whole input, as lossy UTF-8 text, through
/// the real CLIP tokenizer and, if they loaded, the fuzzed files.
pub fn tokenizer(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let clip = clip_tokenizer();
    check_row(clip, &clip.tokenize(&text, 77), 77);
    let _ = clip.decode(&clip.encode(&text));

    let (vocab, merges) = split_at_byte(data, 0);
    let scratch = Scratch::new("tokenizer");
    let (v, m) = (scratch.path("vocab.json"), scratch.path("merges.txt"));
    write(&v, vocab);
    write(&m, merges);
    if let Ok(tok) = Tokenizer::from_hf_files(&v, &m) {
        for t in ["a photo of a cat.", text.as_ref()] {
            check_row(&tok, &tok.tokenize(t, 77), 77);
            let _ = tok.decode(&tok.encode(t));
        }
    }
}

fn check_row(tok: &Tokenizer, row: &[u32], context: usize) {
    assert_eq!(row.len(), context);
    assert_eq!(row.first(), Some(&tok.sot_id()));
    assert!(row.contains(&tok.eot_id()));
    let n = tok.vocab_size();
    assert!(row.iter().all(|&id| (id as usize) < n), "id outside the vocab");
}

// ----------------------------------------------------------------------------------- datasets

/// IDX files (the reader only takes paths, so the input is written to a scratch folder). The
/// first byte picks the mode: 0 an images file, 1 a gzipped images file, 2 a labels file
/// (10 classes), 3 a whole split (`train-images` + `train-labels`, the rest of the input split
/// before the first `00 00 08 01` after byte 4).
pub fn idx(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let scratch = Scratch::new("idx");
    match mode % 4 {
        0 | 1 => {
            let name = if mode % 4 == 0 { "train-images-idx3-ubyte" } else { "train-images-idx3-ubyte.gz" };
            let path = scratch.path(name);
            write(&path, rest);
            if let Ok(images) = idx::IdxImages::load(&path) {
                for i in 0..images.count.min(8) {
                    assert_eq!(images.record(i).len(), images.rows * images.cols);
                    let img = images.rgb8(i);
                    assert_eq!(img.dimensions(), (images.cols as u32, images.rows as u32));
                }
            }
        }
        2 => {
            let path = scratch.path("train-labels-idx1-ubyte");
            write(&path, rest);
            if let Ok(labels) = idx::load_labels(&path, 10) {
                assert!(labels.iter().all(|&l| l < 10));
            }
        }
        _ => {
            let cut = rest.windows(4).skip(4).position(|w| w == [0, 0, 8, 1]).map_or(rest.len(), |p| p + 4);
            let (images, labels) = rest.split_at(cut);
            write(&scratch.path("train-images-idx3-ubyte"), images);
            write(&scratch.path("train-labels-idx1-ubyte"), labels);
            if let Ok(split) = idx::list(scratch.dir(), "train", 10) {
                assert!(!split.items.is_empty());
                for item in split.items.iter().take(4) {
                    assert!(item.label < 10);
                    item.load().expect("an IDX record always decodes");
                }
            }
        }
    }
}

/// CSV manifests: RFC 4180 records, then `path,label` rows against 10 classes; the same text as
/// a pretraining pairs TSV.
pub fn csv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("train.csv");
    if let Ok(recs) = csv::records(&text, path) {
        assert!(recs.windows(2).all(|w| w[0].line < w[1].line), "record lines increase");
        assert!(recs.iter().all(|r| r.line >= 1 && !r.fields.is_empty()));
    }
    if let Ok(rows) = csv::parse(&text, path, 10) {
        assert!(rows.iter().all(|(p, label, line)| !p.is_empty() && *label < 10 && *line >= 1));
    }
    // The pretraining pairs TSV is the same kind of line format.
    if let Ok(pairs) = mulki_host::data::pairs::parse_pairs(&text, Path::new("data/pairs.tsv")) {
        assert!(!pairs.is_empty());
        assert!(pairs.iter().all(|p| !p.image.as_os_str().is_empty() && !p.caption.trim().is_empty()));
    }
}

/// PNG/JPEG bytes to RGB8, then CLIP's eval transform at 32 px and a RandomResizedCrop.
pub fn image(data: &[u8]) {
    let Ok(img) = decode::decode_rgb8(data) else {
        return;
    };
    let out = transform::eval_transform(&img, 32);
    assert_eq!(out.len(), 3 * 32 * 32);
    assert!(out.iter().all(|v| v.is_finite()));
    if img.width() > 0 && img.height() > 0 {
        let crop = transform::RandomResizedCrop::clip(32).crop(&img, &mut mulki_host::data::augment_rng(1, 0, 0));
        assert_eq!(crop.dimensions(), (32, 32));
    }
}

// ------------------------------------------------------------------------------------- helpers

/// `(before, after)` the first `sep` (the separator dropped); `(data, [])` without one.
fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("fuzz harness: cannot write {}: {e}", path.display()));
}

/// A per-process scratch folder for targets whose parser only reads files, held under a lock
/// (test threads may share it) and emptied of the previous input's files before use.
struct Scratch {
    dir: PathBuf,
    _guard: MutexGuard<'static, ()>,
}

impl Scratch {
    fn new(target: &str) -> Self {
        static LOCK: Mutex<()> = Mutex::new(());
        let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dir = scratch_root().join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("fuzz harness: cannot create {}: {e}", dir.display()));
        Scratch { dir, _guard: guard }
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `$TMPDIR/mulki-fuzz-<pid>`; see [`remove_scratch`].
pub fn scratch_root() -> PathBuf {
    std::env::temp_dir().join(format!("mulki-fuzz-{}", std::process::id()))
}

/// Removes this process's scratch folders.
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch_root());
}

// -------------------------------------------------------------------------------- seed builder

/// The generated seeds, as `(target, file name, bytes)`: everything under `fuzz/seeds/` that is
/// not a copy of a fixture or written by hand. `tests/tests/fuzz_regressions.rs` (ignored test
/// `regenerate_generated_seeds`) writes them.
pub fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
    let (config_json, weights) = tiny_model();
    out.push(("config_json", "tiny_config.json".into(), config_json.clone()));
    out.push(("safetensors", "tiny_f32.safetensors".into(), weights.clone()));

    // The same model with mixed dtypes (BF16 and F64), written by hand.
    let cfg = tiny_config();
    let layout = ClipLayout::new(&cfg);
    let mixed: Vec<(String, &str, Vec<usize>, Vec<u8>)> = layout
        .entries
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let values = (0..e.view.len).map(|i| (i as f32 - 3.0) / 8.0);
            if k % 2 == 0 {
                (
                    e.name.clone(),
                    "BF16",
                    e.shape.clone(),
                    values.flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect(),
                )
            } else {
                (e.name.clone(), "F64", e.shape.clone(), values.flat_map(|v| f64::from(v).to_le_bytes()).collect())
            }
        })
        .collect();
    out.push(("safetensors", "tiny_bf16_f64.safetensors".into(), safetensors_bytes(&mixed, true)));
    let state = vec![
        ("adam.m".to_string(), "F32", vec![2, 3], (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect()),
        ("step".to_string(), "F32", vec![], 5f32.to_le_bytes().to_vec()),
        ("unsupported".to_string(), "I32", vec![1], 7i32.to_le_bytes().to_vec()),
    ];
    out.push(("safetensors", "state_with_i32.safetensors".into(), safetensors_bytes(&state, false)));
    out.push(("safetensors", "state.safetensors".into(), safetensors_bytes(&state[..2], true)));

    // Tokenizer: the smallest complete vocab (256 byte symbols, the same with `</w>`, a few
    // merges from fixtures/tokenizer/merges.txt, the two specials) NUL its merges.
    let (vocab, merges) = tiny_vocab_and_merges();
    let mut tok = vocab.clone();
    tok.push(0);
    tok.extend_from_slice(&merges);
    out.push(("tokenizer", "tiny_vocab_nul_merges".into(), tok));

    // IDX: images, gzipped images, labels, and a whole split.
    let images = idx_images(3, 2, 4);
    let labels = vec![0, 0, 8, 1, 0, 0, 0, 3, 1, 0, 9];
    out.push(("idx", "images".into(), [&[0u8][..], &images].concat()));
    out.push(("idx", "images_gz".into(), [&[1u8][..], &stored_gzip(&images)].concat()));
    out.push(("idx", "labels".into(), [&[2u8][..], &labels].concat()));
    out.push(("idx", "split".into(), [&[3u8][..], &images, &labels].concat()));

    // Checkpoint state header: a real config and run state.
    let run_cfg = RunConfig::parse(SMALL_RUN_CONFIG, Path::new("run.toml")).expect("the small run config parses");
    let run_state = mulki_host::run::trainer::RunState {
        config_hash: run_cfg.hash(),
        task: 1,
        step: 10,
        rows: vec![vec![50.0, 25.0], vec![75.0, 60.0]],
        alpha_sum: vec![0.5, 0.5],
        alpha_histogram: vec![1, 2, 3],
        last_loss: 1.25,
        ..Default::default()
    };
    let state = CheckpointState {
        config_json: serde_json::to_string(&run_cfg).expect("config JSON"),
        run_json: serde_json::to_string(&run_state).expect("run state JSON"),
    };
    let header = encode_header(&state, Path::new("state.postcard")).expect("encode header");
    out.push(("checkpoint_header", "state.postcard".into(), header));
    out.push((
        "header_roundtrip",
        "config_nul_run".into(),
        [state.config_json.as_bytes(), &[0], state.run_json.as_bytes()].concat(),
    ));

    // Manifests as the checkpoint layer writes them.
    let mut m = Manifest::new(0, 10, Kind::Periodic, &run_cfg.hash());
    for (name, bytes) in
        [("config.json", &b"{}"[..]), ("model.safetensors", &[1, 2, 3]), ("state.postcard", b"MULKICKP")]
    {
        m.files.insert(
            name.into(),
            mulki_host::checkpoint::FileEntry {
                sha256: mulki_host::checkpoint::sha256_hex(bytes),
                bytes: bytes.len() as u64,
            },
        );
    }
    out.push(("checkpoint_manifest", "periodic.json".into(), m.to_json().expect("manifest JSON")));
    let task_end = Manifest { kind: Kind::TaskEnd, task: 3, step: 1000, ..m };
    out.push(("checkpoint_manifest", "task_end.json".into(), task_end.to_json().expect("manifest JSON")));

    // Method presets as TOML.
    for preset in ["mulki", "zscl", "wise-ft"] {
        let m = MethodConfig::preset(preset).expect("preset");
        out.push(("method_config", format!("{preset}.toml"), toml::to_string(&m).expect("TOML").into_bytes()));
    }

    // Images the fixtures do not have in small sizes.
    let rgb = codec::RgbImage::from_fn(8, 6, |x, y| codec::Rgb([(x * 30) as u8, (y * 40) as u8, 128]));
    out.push((
        "image",
        "rgb_8x6.jpg".into(),
        encode_image(codec::DynamicImage::ImageRgb8(rgb.clone()), codec::ImageFormat::Jpeg),
    ));
    out.push((
        "image",
        "rgb_8x6.png".into(),
        encode_image(codec::DynamicImage::ImageRgb8(rgb), codec::ImageFormat::Png),
    ));
    let la = codec::ImageBuffer::from_fn(5, 3, |x, y| codec::LumaA([(x * 50) as u8, (y * 100) as u8]));
    out.push((
        "image",
        "la_5x3.png".into(),
        encode_image(codec::DynamicImage::ImageLumaA8(la), codec::ImageFormat::Png),
    ));
    let rgba16 =
        codec::ImageBuffer::from_fn(3, 4, |x, y| codec::Rgba([(x * 9000) as u16, (y * 9000) as u16, 65535, 30000]));
    out.push(("image", "bomb_header_40000x40000.png".into(), png_header_only(40_000, 40_000)));
    out.push((
        "image",
        "rgba16_3x4.png".into(),
        encode_image(codec::DynamicImage::ImageRgba16(rgba16), codec::ImageFormat::Png),
    ));
    out
}

/// A small valid run config (2 tasks, the default `mulki` preset, no reference set).
pub const SMALL_RUN_CONFIG: &str = r#"seed = 3
[model]
source = "model"
[method]
preset = "mulki"
lambda_kd = 0.5
[train]
batch_size = 8
iterations = 20
lr = 1e-3
checkpoint_every = 5
[[tasks]]
name = "shapes"
root = "data/shapes"
classes = ["circle", "square"]
train_templates = ["a photo of a {}."]
eval_templates = ["a photo of a {}.", "a drawing of a {}."]
[[tasks]]
name = "digits"
root = "data/mnist"
format = "idx"
classes = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
train_templates = ["a photo of the number: \"{}\"."]
eval_templates = ["a photo of the number: \"{}\"."]
lr = 5e-4
iterations = 10
"#;

/// A safetensors file from `(name, dtype, shape, little-endian data)`; HF's `format: pt`
/// metadata if `metadata`.
fn safetensors_bytes(tensors: &[(String, &str, Vec<usize>, Vec<u8>)], metadata: bool) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if metadata {
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    }
    let mut offset = 0usize;
    for (name, dtype, shape, data) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + data.len()]}),
        );
        offset += data.len();
    }
    let mut text = serde_json::to_vec(&header).expect("header JSON");
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    for (.., data) in tensors {
        out.extend_from_slice(data);
    }
    out
}

/// A tiny CLIP vocabulary: [`mulki_host::tokenizer::reduced_vocab`] of the first 40 merges.
fn tiny_vocab_and_merges() -> (Vec<u8>, Vec<u8>) {
    let merges_txt = std::fs::read_to_string(fixtures_dir().join("tokenizer/merges.txt")).unwrap_or_default();
    let (tokens, merges) = mulki_host::tokenizer::reduced_vocab(&merges_txt, 40);
    (mulki_host::tokenizer::vocab_json(&tokens).into_bytes(), merges.into_bytes())
}

fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v.extend((0..count * rows * cols).map(|i| (i * 37 % 251) as u8));
    v
}

/// One gzip member holding `bytes` in a stored (uncompressed) deflate block (< 64 KiB).
fn stored_gzip(bytes: &[u8]) -> Vec<u8> {
    let crc = crc32(bytes);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1];
    let len = bytes.len() as u16;
    out.extend(len.to_le_bytes());
    out.extend((!len).to_le_bytes());
    out.extend_from_slice(bytes);
    out.extend(crc.to_le_bytes());
    out.extend((bytes.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE), as gzip and PNG use it.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |mut c, &b| {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 };
        }
        c
    })
}

/// A PNG that declares a `width`×`height` 8-bit RGB image and holds (almost) no pixel data: a
/// decompression bomb's header, refused by the decoder's memory limit before any allocation.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let body = [kind, data].concat();
        out.extend_from_slice(&body);
        out.extend(crc32(&body).to_be_bytes());
    };
    let ihdr = [&width.to_be_bytes()[..], &height.to_be_bytes(), &[8, 2, 0, 0, 0]].concat();
    chunk(b"IHDR", &ihdr);
    // The start of a zlib stream: the decoder checks its limits once it reaches image data.
    chunk(b"IDAT", &[0x78, 0x01]);
    chunk(b"IEND", &[]);
    out
}

fn encode_image(img: codec::DynamicImage, format: codec::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode image");
    out.into_inner()
}
