//! The demo pipeline in process, a few steps on the shipped tiny CLIP: the summary has one row
//! per method and the four metrics; a run on 1 thread equals one on 2 threads bit for bit; and a
//! run resumed from a mid-task checkpoint (later checkpoints deleted) equals the fresh run.
use std::path::{Path, PathBuf};

use mulki_host::import::load_clip_dir;
use mulki_host::run::config::RunConfig;
use mulki_host::run::demo::{demo_config, run_demo, SharedKnobs};
use mulki_host::run::progress::Progress;
use mulki_host::run::session::{run_with, Outcome, SessionOptions};
use mulki_host::synth::source::{SynthSource, REFERENCE_SIZE};
use mulki_host::synth::tasks::{default_stream, StreamSize};
use mulki_host::synth::vocab::WordVocab;

const STEPS: usize = 4;
/// 200 training images per task, so MulKI's prototypes (which read every one) stay cheap.
const SIZE: StreamSize = StreamSize { train: 200, test: 16 };

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/synth-clip")
}

#[path = "../../tests/src/scratch.rs"]
mod scratch;

fn tmp(name: &str) -> scratch::Scratch {
    scratch::Scratch::new("demo-pipeline", name)
}

fn knobs() -> SharedKnobs {
    SharedKnobs { steps: STEPS, batch: 8, ..SharedKnobs::new(true) }
}

/// One mulki run of the demo stream (first two tasks) into `dir`, checkpointing every 2 steps.
fn run(dir: &Path, threads: usize) -> Outcome {
    let theta0 = load_clip_dir(&model()).unwrap();
    let tasks: Vec<_> = default_stream(SIZE).into_iter().take(2).collect();
    let mut cfg: RunConfig = demo_config("mulki", 5, knobs(), &model(), &tasks, threads).unwrap();
    cfg.train.checkpoint_every = 2;
    // Prototypes from a few images per class: the initialisation otherwise reads all 3,000.
    cfg.method.insert("proto_max_per_class".into(), toml::Value::Integer(4));
    cfg.train.eval_batch_size = 16;
    let side = theta0.config.vision_config.image_size;
    let mut data = SynthSource::with_reference(tasks, 5, side, REFERENCE_SIZE);
    let mut progress = Progress::new(true, None).unwrap();
    let opts = SessionOptions { quiet: true, ..SessionOptions::default() };
    run_with(cfg, dir, &opts, None, &theta0, &WordVocab::new(), &mut data, threads, &mut progress).unwrap()
}

/// The accuracy matrix and the final weights of a finished run.
fn result(dir: &Path) -> (String, Vec<u8>) {
    let acc = std::fs::read_to_string(dir.join("accuracy.csv")).unwrap();
    let (found, _) = mulki_host::checkpoint::find_latest(dir, None).unwrap();
    let weights = mulki_host::checkpoint::load_file(&found.unwrap().dir, "model.safetensors").unwrap();
    (acc, weights)
}

#[test]
fn the_summary_has_a_row_per_method_and_the_four_metrics() {
    let out = tmp("summary");
    let methods = ["zero-shot", "ft", "lwf", "mulki"];
    let results = run_demo(&model(), &out, &methods, &[1], knobs(), SIZE, 2, true).unwrap();
    assert_eq!(results.len(), methods.len());
    let (md, csv) = mulki_host::report::compare_seeds(&results);
    for m in methods {
        assert!(md.contains(&format!("| {m} |")), "{md}");
    }
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + methods.len(), "{csv}");
    for key in ["transfer_mean", "avg_mean", "last_mean", "bwt_mean"] {
        assert!(lines[0].contains(key), "header without {key}: {}", lines[0]);
    }
    for (method, reports) in &results {
        let rows = reports[0].rows.len();
        assert_eq!(rows, 7, "{method}: zero-shot row and one row per task of the six");
        assert!(reports[0].rows.iter().flatten().all(|a| (0.0..=100.0).contains(a)), "{method}");
    }
    // Later methods start from the first one's zero-shot row instead of evaluating again: lwf
    // run on its own (evaluating itself) gives the same matrix to the bit.
    let alone = tmp("alone");
    let lwf_alone = run_demo(&model(), &alone, &["lwf"], &[1], knobs(), SIZE, 2, true).unwrap();
    let bits = |r: &mulki_host::report::RunReport| r.rows.iter().flatten().map(|a| a.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&lwf_alone[0].1[0]), bits(&results[2].1[0]), "lwf after the shared zero-shot row differs");
}

#[test]
fn one_thread_and_two_threads_and_a_resumed_run_give_the_same_bits() {
    let (one, two, resumed) = (tmp("one"), tmp("two"), tmp("resumed"));
    assert_eq!(run(&one, 1), Outcome::Finished);
    assert_eq!(run(&two, 2), Outcome::Finished);
    assert_eq!(result(&one), result(&two), "1 and 2 threads differ");
    // Resume from the mid-task checkpoint of task 2 (step 2): everything after it is removed.
    assert_eq!(run(&resumed, 2), Outcome::Finished);
    let task2 = resumed.join("task-01");
    for e in std::fs::read_dir(&task2).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().is_some_and(|n| n != "step-000002") {
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    assert!(task2.join("step-000002").is_dir(), "the mid-task checkpoint of task 2 exists");
    std::fs::remove_file(resumed.join("accuracy.csv")).unwrap();
    assert_eq!(run(&resumed, 1), Outcome::Finished);
    assert_eq!(result(&resumed), result(&one), "the resumed run differs from the fresh one");
}
