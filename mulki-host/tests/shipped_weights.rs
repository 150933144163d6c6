//! The shipped tiny CLIP (`assets/synth-clip`) is reproducible: rerunning the pretraining
//! command recorded in its `pretrain.json` gives the same bits. Results can differ across SIMD
//! levels (an FMA rounds once where mul + add rounds twice), so the check runs only where the
//! CPU feature level equals the recorded one, and says so when it skips.
//!
//! By default the first `check_step` steps are rerun (seconds) and compared with the hash the
//! pretraining recorded after them; `MULKI_FULL_PRETRAIN_REPRO=1` reruns the whole schedule
//! (about 20 minutes on 2 cores) and compares the final weights.
use std::path::PathBuf;

use mulki_host::import::load_clip_dir;
use mulki_host::run::demo::write_shipped_model;
use mulki_host::run::pretrain::{cpu_features, params_sha256, pretrain_prefix, PretrainRecord};

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/synth-clip")
}

fn record() -> PretrainRecord {
    let text = std::fs::read_to_string(shipped().join("pretrain.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_shipped_weights_are_the_ones_their_record_names() {
    let rec = record();
    let c = &rec.config;
    let want = format!(
        "mulki pretrain --out assets/synth-clip --steps {} --batch {} --lr {} --warmup {} --seed {}",
        c.steps, c.batch, c.lr, c.warmup, c.seed
    );
    assert_eq!(rec.command, want, "the recorded command is the config's");
    let loaded = load_clip_dir(&shipped()).unwrap();
    assert_eq!(params_sha256(&loaded.params), rec.weights_sha256, "model.safetensors differs from pretrain.json");
    assert_eq!(loaded.params.len(), loaded.layout.len);
}

/// The copy built into the binary (what `mulki demo` uses by default) is `assets/synth-clip`, byte
/// for byte, and writing it again over itself, or over a damaged file, gives the same files.
#[test]
fn the_binary_carries_the_shipped_model() {
    let dir = std::env::temp_dir().join(format!("mulki-shipped-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = ["config.json", "model.safetensors", "pretrain.json"];
    for round in 0..3 {
        if round == 2 {
            std::fs::write(dir.join("model.safetensors"), b"damaged").unwrap();
        }
        assert_eq!(write_shipped_model(&dir).unwrap(), dir);
        for f in files {
            assert_eq!(std::fs::read(dir.join(f)).unwrap(), std::fs::read(shipped().join(f)).unwrap(), "{f}");
        }
    }
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, files, "no temporary files left");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rerunning_the_pretraining_gives_the_shipped_bits() {
    let rec = record();
    let here = cpu_features();
    if here != rec.cpu_features {
        eprintln!(
            "skipped: the shipped weights were made on `{}`, this CPU is `{here}`; bit-for-bit \
             reproduction is only defined at the same feature level",
            rec.cpu_features
        );
        return;
    }
    let full = std::env::var_os("MULKI_FULL_PRETRAIN_REPRO").is_some_and(|v| v == "1");
    let (stop, want) = if full { (rec.config.steps, &rec.weights_sha256) } else { (rec.check_step, &rec.check_sha256) };
    assert!(stop > 0 && !want.is_empty(), "pretrain.json has no reproduction hash");
    let params = pretrain_prefix(&rec.config, stop, 2).unwrap();
    assert_eq!(&params_sha256(&params), want, "parameters after step {stop} differ from the shipped run's");
    if !full {
        eprintln!("checked the first {stop} steps; MULKI_FULL_PRETRAIN_REPRO=1 checks all {}", rec.config.steps);
    }
}
