//! The fuzzers' inputs as a normal test, so CI (which does not run cargo-fuzz) checks them: every
//! file under `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` goes through the same
//! function the libFuzzer binary calls (`fuzz/src/lib.rs`, included here as a module), and must
//! not panic. Also: the seeds reach the success path of their parser, and a few bad inputs that
//! no other test covers give the error text TESTING.md's bad-input table quotes.
//!
//! To add a crash found by `cargo fuzz run <target>`: copy `fuzz/artifacts/<target>/crash-*` to
//! `fuzz/regressions/<target>/`, fix the parser, and this test replays it from then on.
use mulki_tests::scratch::Scratch;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use mulki_host::checkpoint::{decode_header, Manifest};
use mulki_host::import::{load_clip_bytes, read_f32_tensors};
use mulki_host::run::config::RunConfig;
use mulki_host::run::session::CheckpointState;

/// The files of `fuzz/<kind>/<target>/`, sorted; none if the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = targets::fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn seeds_and_regressions_replay_without_panicking() {
    let mut failures = Vec::new();
    let mut count = 0;
    for target in targets::TARGETS {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "fuzz/seeds/{target}/ has no seeds");
        for path in seeds.iter().chain(&inputs("regressions", target)) {
            let data = read(path);
            count += 1;
            // The harness's own assertions and the parsers' panics both count as failures.
            if catch_unwind(AssertUnwindSafe(|| assert!(targets::run(target, &data)))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    targets::remove_scratch();
    assert!(failures.is_empty(), "{} of {count} fuzz inputs panicked:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn no_stray_target_folders() {
    for kind in ["seeds", "regressions"] {
        let Ok(rd) = std::fs::read_dir(targets::fuzz_dir().join(kind)) else { continue };
        for entry in rd.flatten().filter(|e| e.path().is_dir()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(targets::TARGETS.contains(&name.as_str()), "fuzz/{kind}/{name}: no such fuzz target");
        }
    }
}

/// Each seed folder holds at least one input its parser accepts, so the fuzzer starts from the
/// success path and not only from errors.
#[test]
fn seeds_reach_the_success_path() {
    let seed = |target: &str, name: &str| read(&targets::fuzz_dir().join("seeds").join(target).join(name));
    let (config_json, weights) = targets::tiny_model();
    load_clip_bytes(config_json, weights).expect("the fixed tiny model loads");

    let text = String::from_utf8(seed("run_config", "small.toml")).unwrap();
    RunConfig::parse(&text, Path::new("small.toml")).expect("small.toml");
    let text = String::from_utf8(seed("run_config", "zscl_reference_csv.toml")).unwrap();
    RunConfig::parse(&text, Path::new("zscl.toml")).expect("zscl_reference_csv.toml");
    let text = String::from_utf8(seed("run_config", "mtil_fewshot_first_task.toml")).unwrap();
    RunConfig::parse(&text, Path::new("mtil.toml")).expect("mtil_fewshot_first_task.toml");
    assert_eq!(RunConfig::parse(targets::SMALL_RUN_CONFIG, Path::new("x")).unwrap().tasks.len(), 2);

    for name in ["overrides.toml", "mulki.toml", "zscl.toml", "wise-ft.toml"] {
        let m: mulki_core::method::MethodConfig =
            toml::from_str(std::str::from_utf8(&seed("method_config", name)).unwrap()).expect(name);
        m.validate().expect(name);
    }
    for name in ["periodic.json", "task_end.json"] {
        Manifest::parse(&seed("checkpoint_manifest", name), Path::new(name)).expect(name);
    }
    let state: CheckpointState =
        decode_header(&seed("checkpoint_header", "state.postcard"), Path::new("state.postcard")).unwrap();
    state.run().expect("the seed's run state parses");

    for name in ["tiny_f32.safetensors", "tiny_bf16_f64.safetensors"] {
        load_clip_bytes(config_json, &seed("safetensors", name)).expect(name);
    }
    assert_eq!(read_f32_tensors(&seed("safetensors", "state.safetensors"), Path::new("s")).unwrap().len(), 2);
    for name in ["tiny_config.json", "legacy_dicts_nulls.json"] {
        load_clip_bytes(&seed("config_json", name), weights).expect(name);
    }

    let tok = seed("tokenizer", "tiny_vocab_nul_merges");
    let nul = tok.iter().position(|&b| b == 0).unwrap();
    let dir = Scratch::new("fuzz", "seeds");
    std::fs::write(dir.join("vocab.json"), &tok[..nul]).unwrap();
    std::fs::write(dir.join("merges.txt"), &tok[nul + 1..]).unwrap();
    let t = mulki_host::tokenizer::Tokenizer::from_hf_dir(&dir).expect("the tiny vocab loads");
    assert_eq!(t.tokenize("in the", 4).len(), 4);

    for name in ["tiny_3x5.png", "palette_trns.png", "rgb_8x6.jpg", "la_5x3.png", "rgba16_3x4.png"] {
        mulki_host::data::decode::decode_rgb8(&seed("image", name)).expect(name);
    }
    let recs = mulki_host::data::csv::parse(
        std::str::from_utf8(&seed("csv", "rfc4180.csv")).unwrap(),
        Path::new("train.csv"),
        3,
    )
    .unwrap();
    assert_eq!(recs.len(), 5);
}

/// Writes the generated seeds (`targets::generated_seeds`) into `fuzz/seeds/`. Run after a
/// format change: `cargo test -p mulki-tests --test fuzz_regressions -- --ignored`.
#[test]
#[ignore = "writes into fuzz/seeds/"]
fn regenerate_generated_seeds() {
    for (target, name, bytes) in targets::generated_seeds() {
        let dir = targets::fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

// ------------------------------------------------------------------------------------------------
// Bad inputs of TESTING.md's table that no other test covers: the error text a user sees.

fn config_error(text: &str) -> String {
    RunConfig::parse(text, Path::new("run.toml")).map(|_| ()).expect_err("must be refused").to_string()
}

const TASK: &str = "[[tasks]]\nname = \"t\"\nroot = \"d\"\nclasses = [\"a\"]\n\
                    train_templates = [\"a {}\"]\neval_templates = [\"a {}\"]\n";

#[test]
fn run_config_unknown_key_names_file_line_and_key() {
    let msg = config_error(&format!("[model]\nsource = \"m\"\n[train]\nbatch_sise = 8\n{TASK}"));
    assert!(msg.starts_with("run.toml:4:1: unknown field `batch_sise`, expected one of"), "{msg}");
    let msg = config_error(&format!("[model]\nsource = \"m\"\n[method]\nlamda_kd = 1.0\n{TASK}"));
    assert!(msg.starts_with("run.toml: method: unknown field `lamda_kd`"), "{msg}");
}

#[test]
fn run_config_bad_values_name_the_field() {
    let msg = config_error(&format!("[model]\nsource = \"m\"\n[train]\nbatch_size = \"eight\"\n{TASK}"));
    assert!(msg.starts_with("run.toml:4:14: invalid type: string \"eight\", expected usize"), "{msg}");
    let msg = config_error(&format!("[model]\nsource = \"m\"\n[train]\nlr = -1.0\n{TASK}"));
    assert_eq!(msg, "run.toml: train.lr: must be a finite number > 0");
    let msg = config_error(&format!("[model]\nsource = \"m\"\n[method]\ntemperature = 0.0\n{TASK}"));
    // Today the text reads "run.toml: method.`temperature`: must be > 0" (the backticks come
    // from mulki-core's message); either spelling passes.
    assert!(
        msg.starts_with("run.toml: method.") && msg.contains("temperature") && msg.ends_with(": must be > 0"),
        "{msg}"
    );
    let msg = config_error(&format!("[model]\nsource = \"m\"\n[method]\npreset = \"mulky\"\n{TASK}"));
    assert!(msg.starts_with("run.toml: method.preset: `mulky`: "), "{msg}");
    let msg = config_error("tasks = []\n[model]\nsource = \"m\"\n");
    assert_eq!(msg, "run.toml: tasks: at least one [[tasks]] entry is needed");
    let msg = config_error(&format!("[model]\nsource = \"m\"\n[method]\npreset = \"zscl\"\n{TASK}"));
    assert_eq!(msg, "run.toml: reference: the zscl preset needs a [reference] set (images and captions)");
}

/// A PyTorch `.pt` / `pytorch_model.bin` (a zip archive) saved as `model.safetensors`: there is
/// no dedicated message yet; the header check reports a file that is not safetensors.
#[test]
fn pytorch_zip_as_weights_is_refused_as_not_safetensors() {
    let mut pt = b"PK\x03\x04\x00\x00\x08\x08\x00\x00".to_vec();
    pt.extend_from_slice(b"archive/data.pkl");
    pt.resize(200, 0);
    let (config_json, _) = targets::tiny_model();
    let msg = load_clip_bytes(config_json, &pt).unwrap_err().to_string();
    assert!(msg.starts_with("model.safetensors: header: the header length field says "), "{msg}");
    assert!(msg.contains("the file is truncated or not safetensors (safetensors: InvalidHeaderLength)"), "{msg}");
}

/// A model folder without `config.json` names the missing file; one holding only a PyTorch
/// `pytorch_model.bin` is refused with how to convert it.
#[test]
fn missing_model_files_are_named() {
    let dir = Scratch::new("fuzz", "missing");
    let err = |dir: &Path| mulki_host::import::load_clip_dir(dir).unwrap_err().to_string();
    let msg = err(&dir);
    assert!(msg.starts_with(&format!("{}: read: ", dir.join("config.json").display())), "{msg}");
    std::fs::write(dir.join("config.json"), &targets::tiny_model().0).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
    let msg = err(&dir);
    assert!(msg.starts_with(&format!("{}: pickled PyTorch weights", dir.join("pytorch_model.bin").display())), "{msg}");
    assert!(msg.contains("safetensors"), "{msg}");
}

/// A PNG that declares 40000×40000 RGB (4.8 GB decoded) is refused by the decoder's memory
/// limit (`MAX_DECODED_BYTES`, 512 MiB) before anything is allocated.
#[test]
fn decompression_bomb_header_is_refused_by_the_memory_limit() {
    let bomb = targets::png_header_only(40_000, 40_000);
    let msg = mulki_host::data::decode::decode_rgb8(&bomb).unwrap_err().to_string();
    assert_eq!(msg, "Memory limit exceeded", "{msg}");
    let dir = Scratch::new("fuzz", "bomb");
    let path = dir.join("bomb.png");
    std::fs::write(&path, &bomb).unwrap();
    let msg = mulki_host::data::load_rgb8(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}: cannot decode image: ", path.display())), "{msg}");
    // A small header-only PNG is an error too (no image data), not a panic.
    assert!(mulki_host::data::decode::decode_rgb8(&targets::png_header_only(2, 2)).is_err());
}
