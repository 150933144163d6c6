//! Small generated image folders (3 tasks) and a tiny random CLIP with the CLIP BPE
//! vocabulary, for the end-to-end tests of the runner and the binary.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use mulki_core::clip::init::init_params;
use mulki_core::clip::{ClipConfig, ClipLayout};
use mulki_host::data::codec::{Rgb, RgbImage};
use mulki_host::run::config::RunConfig;

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

#[path = "../../../tests/src/scratch.rs"]
mod scratch;
pub use scratch::Scratch;

/// A fresh scratch directory, removed when the returned guard drops.
pub fn tmp(name: &str) -> Scratch {
    Scratch::new("runner", name)
}

pub const CLASSES: [[&str; 2]; 3] = [["red", "green"], ["circle", "square"], ["left", "right"]];

/// 16×16 images: task 0 by colour, task 1 by shape, task 2 by position, with per-image noise.
pub fn image(task: usize, class: usize, i: usize) -> RgbImage {
    let mut img = RgbImage::from_pixel(16, 16, Rgb([128, 128, 128]));
    let noise = |x: u32, y: u32| ((x * 31 + y * 17 + i as u32 * 7) % 23) as u8;
    for y in 0..16u32 {
        for x in 0..16u32 {
            let inside = match task {
                0 => (4..12).contains(&x) && (4..12).contains(&y),
                1 => {
                    let (dx, dy) = (x as i32 - 8, y as i32 - 8);
                    if class == 0 {
                        dx * dx + dy * dy < 25
                    } else {
                        dx.abs() < 5 && dy.abs() < 5
                    }
                }
                _ => (4..12).contains(&y) && if class == 0 { x < 6 } else { x >= 10 },
            };
            if inside {
                let c: [u8; 3] = if task == 0 && class == 1 {
                    [20, 200, 20]
                } else if task == 0 {
                    [200, 20, 20]
                } else {
                    [240, 240, 240]
                };
                img.put_pixel(x, y, Rgb([c[0].saturating_add(noise(x, y)), c[1], c[2]]));
            }
        }
    }
    img
}

pub fn write_datasets(root: &Path) {
    for (t, classes) in CLASSES.iter().enumerate() {
        for (split, n) in [("train", 8), ("test", 4)] {
            for (c, name) in classes.iter().enumerate() {
                let dir = root.join(format!("task{t}/{split}/{name}"));
                std::fs::create_dir_all(&dir).unwrap();
                for i in 0..n {
                    image(t, c, i + if split == "test" { 100 } else { 0 }).save(dir.join(format!("{i}.png"))).unwrap();
                }
            }
        }
    }
    let refs = root.join("reference/images");
    std::fs::create_dir_all(&refs).unwrap();
    let mut caps = String::new();
    for i in 0..6 {
        image(i % 3, i % 2, i).save(refs.join(format!("{i}.png"))).unwrap();
        caps.push_str(&format!("a photo of a {} thing\n", CLASSES[i % 3][i % 2]));
    }
    std::fs::write(root.join("reference/captions.txt"), caps).unwrap();
}

/// A tiny random CLIP with the CLIP BPE vocabulary, saved as an HF folder.
pub fn write_model(dir: &Path) {
    let mut cfg = ClipConfig::tiny();
    cfg.text_config.vocab_size = 49408;
    cfg.text_config.bos_token_id = 49406;
    cfg.text_config.eos_token_id = 49407;
    cfg.text_config.max_position_embeddings = 16;
    let layout = ClipLayout::new(&cfg);
    let params = init_params::<f32>(&cfg, &layout, 3);
    mulki_host::import::save_clip_dir(dir, &cfg, &layout, &params).unwrap();
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(fixtures_dir().join("tokenizer").join(f), dir.join(f)).unwrap();
    }
}

/// A tiny random CLIP with a small BPE vocabulary (the 512 byte symbols, the first merges of
/// the CLIP merges file whose parts are present, the two specials): about 50k parameters, so a
/// checkpoint is under a megabyte and a whole run takes a second (the kill harness, fault tests).
pub fn write_small_model(dir: &Path) {
    write_small_model_with(dir, |_| {});
}

/// [`write_small_model`] with a changed config (e.g. another size).
pub fn write_small_model_with(dir: &Path, change: impl FnOnce(&mut ClipConfig)) {
    let all_merges = std::fs::read_to_string(fixtures_dir().join("tokenizer/merges.txt")).unwrap();
    let (tokens, merges) = mulki_host::tokenizer::reduced_vocab(&all_merges, 200);
    let n = tokens.len();
    let mut cfg = ClipConfig::tiny();
    cfg.text_config.vocab_size = n;
    cfg.text_config.bos_token_id = (n - 2) as u32;
    cfg.text_config.eos_token_id = (n - 1) as u32;
    cfg.text_config.max_position_embeddings = 16;
    change(&mut cfg);
    let layout = ClipLayout::new(&cfg);
    let params = init_params::<f32>(&cfg, &layout, 3);
    mulki_host::import::save_clip_dir(dir, &cfg, &layout, &params).unwrap();
    std::fs::write(dir.join("vocab.json"), mulki_host::tokenizer::vocab_json(&tokens)).unwrap();
    std::fs::write(dir.join("merges.txt"), merges).unwrap();
}

pub fn config(root: &Path, preset: &str, steps: usize, every: usize) -> RunConfig {
    let mut tasks = String::new();
    for (t, classes) in CLASSES.iter().enumerate() {
        tasks.push_str(&format!(
            "[[tasks]]\nname = \"task{t}\"\nroot = \"task{t}\"\nclasses = [\"{}\", \"{}\"]\ntrain_templates = [\"a photo of a {{}}.\"]\neval_templates = [\"a photo of a {{}}.\", \"a {{}} thing.\"]\n\n",
            classes[0], classes[1]
        ));
    }
    let text = format!(
        "seed = 7\n[model]\nsource = \"model\"\n[method]\npreset = \"{preset}\"\n[train]\nbatch_size = 4\ngrad_accumulation = 2\niterations = {steps}\nlr = 1e-3\ncheckpoint_every = {every}\neval_batch_size = 8\n[reference]\nimages = \"reference/images\"\ncaptions = \"reference/captions.txt\"\nbatch_size = 3\n\n{tasks}"
    );
    let path = root.join(format!("{preset}.toml"));
    std::fs::write(&path, text).unwrap();
    RunConfig::load(&path).unwrap()
}

/// Writes the config file for `preset` and returns its path (for the binary).
pub fn config_file(root: &Path, preset: &str, steps: usize, every: usize) -> PathBuf {
    config(root, preset, steps, every);
    root.join(format!("{preset}.toml"))
}

pub fn setup(name: &str) -> Scratch {
    let root = tmp(name);
    write_datasets(&root);
    write_model(&root.join("model"));
    root
}

/// The accuracy matrix of a run directory's `accuracy.csv` (rows after the header, columns after
/// the row label).
pub fn read_csv(dir: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(dir.join("accuracy.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect()).collect()
}

/// Final weights of a run directory (its newest checkpoint's model file).
pub fn final_weights(dir: &Path) -> Vec<u8> {
    let (found, _) = mulki_host::checkpoint::find_latest(dir, None).unwrap();
    mulki_host::checkpoint::load_file(&found.unwrap().dir, "model.safetensors").unwrap()
}

/// A checkpoint's files, by name.
pub fn files(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    ["config.json", "model.safetensors", "state.safetensors", "state.postcard"]
        .into_iter()
        .map(|f| (f, mulki_host::checkpoint::load_file(dir, f).unwrap()))
        .collect()
}

/// The run state a checkpoint holds.
pub fn run_state(dir: &Path) -> mulki_host::run::trainer::RunState {
    let bytes = mulki_host::checkpoint::load_file(dir, "state.postcard").unwrap();
    let header: mulki_host::run::session::CheckpointState =
        mulki_host::checkpoint::decode_header(&bytes, Path::new("state.postcard")).unwrap();
    header.run().unwrap()
}

/// After a run that skipped steps 2 and 3 of task 1 (`--skip-nonfinite`): their checkpoints hold
/// step 1's weights and state (`good`, from [`files`]) byte for byte, with one optimiser step.
pub fn assert_skipped_steps_kept(run: &Path, good: &[(&'static str, Vec<u8>)]) {
    for step in [2, 3] {
        let dir = run.join(format!("task-00/step-{step:06}"));
        let now = files(&dir);
        assert!(now[1] == good[1] && now[2] == good[2], "step {step}: the weights or state changed");
        let state = run_state(&dir);
        assert_eq!((state.step, state.skipped_nonfinite, state.optimizer_steps), (step, step - 1, 1));
    }
}
