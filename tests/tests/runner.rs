//! End to end: small generated image folders (3 tasks), a tiny random CLIP with the CLIP BPE
//! vocabulary, every preset for a few steps; the accuracy matrix, metrics and reports. Also
//! exact resume after a stop at several steps.
use std::path::{Path, PathBuf};

use mulki_core::clip::init::init_params;
use mulki_core::clip::{ClipConfig, ClipLayout};
use mulki_core::method::PRESETS;
use mulki_host::data::codec::{Rgb, RgbImage};
use mulki_host::run::config::RunConfig;
use mulki_host::run::session::{self, Outcome, SessionOptions};
use mulki_tests::fixture::fixtures_dir;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mulki-runner-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const CLASSES: [[&str; 2]; 3] = [["red", "green"], ["circle", "square"], ["left", "right"]];

/// 16×16 images: task 0 by colour, task 1 by shape, task 2 by position, with per-image noise.
fn image(task: usize, class: usize, i: usize) -> RgbImage {
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

fn write_datasets(root: &Path) {
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
fn write_model(dir: &Path) {
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

fn config(root: &Path, preset: &str, steps: usize, every: usize) -> RunConfig {
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

fn setup(name: &str) -> PathBuf {
    let root = tmp(name);
    write_datasets(&root);
    write_model(&root.join("model"));
    root
}

fn opts() -> SessionOptions {
    SessionOptions { quiet: true, ..SessionOptions::default() }
}

fn read_csv(dir: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(dir.join("accuracy.csv")).unwrap();
    text.lines().skip(1).map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect()).collect()
}

#[test]
fn every_preset_runs_end_to_end_and_reports() {
    let root = setup("presets");
    for preset in PRESETS {
        let cfg = config(&root, preset, 3, 0);
        let dir = root.join("runs").join(preset);
        assert_eq!(session::run(cfg, &dir, &opts(), None).unwrap(), Outcome::Finished, "{preset}");
        let rows = read_csv(&dir);
        let expect_rows = if preset == "zero-shot" { 1 } else { 4 };
        assert_eq!(rows.len(), expect_rows, "{preset}: accuracy rows");
        assert!(rows.iter().all(|r| r.len() == 3 && r.iter().all(|a| (0.0..=100.0).contains(a))));
        for f in ["metrics.json", "report.md", "heatmap.svg", "run.json", "log.jsonl"] {
            assert!(dir.join(f).is_file(), "{preset}: {f} missing");
        }
        if rows.len() == 4 {
            // Metrics against a hand computation from the CSV (2-decimal values).
            let m: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
            let transfer = (rows[1][1] + (rows[1][2] + rows[2][2]) / 2.0) / 2.0;
            let avg = rows[1..].iter().flatten().sum::<f64>() / 9.0;
            let last = rows[3].iter().sum::<f64>() / 3.0;
            let bwt = ((rows[3][0] - rows[1][0]) + (rows[3][1] - rows[2][1])) / 2.0;
            for (k, v) in [("transfer", transfer), ("avg", avg), ("last", last), ("bwt", bwt)] {
                let got = m[k].as_f64().unwrap();
                assert!((got - v).abs() < 0.02, "{preset}: {k} = {got}, by hand {v}");
            }
            // A task-end checkpoint per task.
            for t in 0..3 {
                assert!(
                    mulki_host::checkpoint::task_end(&dir, t).is_some(),
                    "{preset}: no task-end checkpoint for task {t}"
                );
            }
        }
    }
}

/// Final weights of a run directory (its newest checkpoint's model).
fn final_model(dir: &Path) -> Vec<u8> {
    let (found, _) = mulki_host::checkpoint::find_latest(dir, None).unwrap();
    mulki_host::checkpoint::load_file(&found.unwrap().dir, "model.safetensors").unwrap()
}

#[test]
fn a_stopped_run_resumes_to_the_same_weights_and_matrix() {
    let root = setup("resume");
    let full = root.join("runs/full");
    assert_eq!(session::run(config(&root, "mulki", 4, 1), &full, &opts(), None).unwrap(), Outcome::Finished);
    // Stop after a periodic checkpoint by deleting everything newer, inside the ensemble window
    // (task 1, step 2) and at a task boundary (end of task 0), then resume.
    for (task, step) in [(1usize, 2usize), (0, 4), (2, 1)] {
        let dir = root.join(format!("runs/cut-{task}-{step}"));
        copy_dir(&full, &dir);
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(t) = name.strip_prefix("task-").and_then(|t| t.parse::<usize>().ok()) {
                for s in std::fs::read_dir(entry.path()).unwrap().flatten() {
                    let sname = s.file_name().to_string_lossy().into_owned();
                    let st: usize = sname.trim_start_matches("step-").parse().unwrap_or(0);
                    if t > task || (t == task && st > step) {
                        std::fs::remove_dir_all(s.path()).unwrap();
                    }
                }
            }
        }
        let mut cfg = config(&root, "mulki", 4, 1);
        cfg.threads = 1 + task % 2;
        assert_eq!(session::run(cfg, &dir, &opts(), None).unwrap(), Outcome::Finished);
        assert_eq!(read_csv(&dir), read_csv(&full), "matrix after resuming at task {task}, step {step}");
        assert!(final_model(&dir) == final_model(&full), "weights after resuming at task {task}, step {step}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}
