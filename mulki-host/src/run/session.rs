//! A whole run on the configured device (see [`super::device`]): opens the model, tokenizer and data, restores the newest
//! checkpoint of the run directory (or starts with the zero-shot row), trains every task, and
//! after each task commits a checkpoint and rewrites the reports. Periodic checkpoints rotate
//! (last two per task); SIGINT/SIGTERM finish the step, commit, and exit 130/143.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use mulki_core::backend::Backend;
use mulki_core::clip::layout::Group;
use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::device::Device;
use super::folders::FolderSource;
use super::progress::Progress;
use super::source::DataSource;
use super::trainer::{RunState, Settled, Trainer};
use crate::checkpoint::{self, Kind, RealStorage};
use crate::import::{self, LoadedClip};
use crate::report::{self, RunInfo, RunReport, TrainableParameters};
use crate::tokenizer::{Tokenize, Tokenizer};

/// What `state.postcard` holds besides the flat buffers: the resolved run config and the run
/// state, each as JSON text (the report types read NaN back from JSON's `null`, which a
/// non-self-describing format cannot express), inside the versioned postcard header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    pub config_json: String,
    pub run_json: String,
}

impl CheckpointState {
    pub fn run(&self) -> Result<RunState> {
        Ok(serde_json::from_str(&self.run_json)?)
    }
}

/// Options of `mulki train` that are not part of the config.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub quiet: bool,
    /// Resume even when the checkpoint's config hash differs.
    pub force: bool,
    pub skip_bad_images: bool,
    /// Non-finite batches to skip before stopping.
    pub skip_nonfinite: usize,
    /// The zero-shot row, when the caller has already evaluated the same model on the same
    /// test images at the same evaluation batch size (the demo runs every method from one
    /// model): a fresh run starts with it instead of evaluating again. Evaluation does not
    /// depend on the method, so the row is the one the run would compute.
    pub zero_shot_row: Option<Vec<f64>>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// Stopped by a signal after committing a checkpoint: the exit code (130 or 143).
    Interrupted(i32),
}

/// Signal flags: the first SIGINT/SIGTERM asks to stop after the step; a second SIGINT exits.
pub struct Signals {
    int: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let (int, term) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        // Registered first, so it sees the flag as it was before this signal: a second SIGINT
        // exits at once.
        signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(&int))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&int))?;
        signal_hook::flag::register(SIGTERM, Arc::clone(&term))?;
        Ok(Signals { int, term })
    }

    fn exit_code(&self) -> Option<i32> {
        if self.int.load(Ordering::Relaxed) {
            Some(130)
        } else if self.term.load(Ordering::Relaxed) {
            Some(143)
        } else {
            None
        }
    }
}

/// The tokenizer of a run: `[model] tokenizer` (a folder with vocab.json + merges.txt, or the
/// original `.gz`), else the model folder.
pub fn open_tokenizer(cfg: &RunConfig) -> Result<Tokenizer> {
    let path = cfg.model.tokenizer.as_ref().unwrap_or(&cfg.model.source);
    let tok = if path.extension().is_some_and(|e| e == "gz") {
        Tokenizer::from_bpe_gz(path)?
    } else {
        Tokenizer::from_hf_dir(path)?
    };
    Ok(tok)
}

/// Writes a checkpoint of the trainer's state into the run directory.
pub fn save<B: Backend<E = f32>>(tr: &mut Trainer<B>, run_dir: &Path, kind: Kind) -> Result<PathBuf> {
    tr.settled()?;
    let mut buffers = Vec::new();
    for (name, buf) in tr.buffers() {
        let mut v = vec![0f32; buf.len];
        tr.be.read(buf, &mut v)?;
        buffers.push((name, v));
    }
    let params = &buffers[0].1;
    let (config_json, model) = import::clip_to_bytes(&tr.student.config, &tr.student.layout, params)?;
    let tensors: Vec<(&str, Vec<usize>, &[f32])> =
        buffers[1..].iter().map(|(n, v)| (*n, vec![v.len()], v.as_slice())).collect();
    let views: Vec<(&str, &[usize], &[f32])> = tensors.iter().map(|(n, s, v)| (*n, s.as_slice(), *v)).collect();
    let state_st = import::f32_tensors_to_bytes(&views, Path::new("state.safetensors"))?;
    let header =
        CheckpointState { config_json: serde_json::to_string(&tr.cfg)?, run_json: serde_json::to_string(&tr.state)? };
    let state_pc = checkpoint::encode_header(&header, Path::new("state.postcard"))?;
    let (task, step) = (tr.state.task, tr.state.step);
    let task = if tr.state.task_done { task.saturating_sub(1) } else { task };
    let files: [(&str, &[u8]); 4] = [
        ("config.json", &config_json),
        ("model.safetensors", &model),
        ("state.safetensors", &state_st),
        ("state.postcard", &state_pc),
    ];
    let dir = checkpoint::commit(run_dir, task, step, kind, &tr.state.config_hash, &files, &RealStorage)?;
    if kind == Kind::Periodic {
        checkpoint::rotate(run_dir, task, 2, &RealStorage)?;
    }
    Ok(dir)
}

/// Keys whose values differ between two JSON configs, dotted.
fn differing_keys(a: &serde_json::Value, b: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => differing_keys(u, v, &p, out),
                    _ => out.push(p),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// Restores a checkpoint into the trainer: buffers, then counters.
fn restore<B: Backend<E = f32>>(tr: &mut Trainer<B>, dir: &Path) -> Result<()> {
    let model = checkpoint::load_file(dir, "model.safetensors")?;
    let config = checkpoint::load_file(dir, "config.json")?;
    let loaded = import::load_clip_bytes(&config, &model).with_context(|| format!("{}", dir.display()))?;
    if loaded.params.len() != tr.student.layout.len {
        bail!("{}: the checkpoint's model has another size than the run's", dir.display());
    }
    let header: CheckpointState =
        checkpoint::decode_header(&checkpoint::load_file(dir, "state.postcard")?, &dir.join("state.postcard"))?;
    let state = checkpoint::load_file(dir, "state.safetensors")?;
    let tensors = import::read_f32_tensors(&state, &dir.join("state.safetensors"))?;
    let run = header.run()?;
    // Π belongs to the task the checkpoint was taken in.
    let ptask = if run.task_done { run.task.saturating_sub(1) } else { run.task };
    let k = tr.cfg.tasks.get(ptask).map_or(0, |t| t.classes.len());
    tr.loss.prototypes.begin(&mut tr.be, k)?;
    let bufs = tr.buffers();
    tr.be.write(bufs[0].1, &loaded.params)?;
    for (name, buf) in bufs.iter().skip(1) {
        let (_, _, v) = tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .with_context(|| format!("{}: state.safetensors has no `{name}`", dir.display()))?;
        if v.len() != buf.len {
            bail!("{}: state.safetensors: `{name}` holds {} values, the run needs {}", dir.display(), v.len(), buf.len);
        }
        tr.be.write(*buf, v)?;
    }
    tr.restore(run)
}

/// Runs (or resumes) the config into `run_dir`.
pub fn run(cfg: RunConfig, run_dir: &Path, opts: &SessionOptions, signals: Option<&Signals>) -> Result<Outcome> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;
    let threads = crate::commands::threads((cfg.threads > 0).then_some(cfg.threads));
    let theta0: LoadedClip = import::load_clip_dir(&cfg.model.source)?;
    let tok = open_tokenizer(&cfg)?;
    let mut progress = Progress::new(opts.quiet, Some(&run_dir.join("log.jsonl")))?;
    for name in theta0.unexpected() {
        progress
            .say(&format!("warning: {}: tensor `{name}` is not a CLIP parameter; ignored", cfg.model.source.display()));
    }
    let side = theta0.config.vision_config.image_size;
    let mut data = FolderSource::open(&cfg, side, threads, opts.skip_bad_images)?;
    run_with(cfg, run_dir, opts, signals, &theta0, &tok, &mut data, threads, &mut progress)
}

/// [`run`] with the model, tokenizer and data already open (the demo brings its own).
#[allow(clippy::too_many_arguments)]
pub fn run_with(
    cfg: RunConfig, run_dir: &Path, opts: &SessionOptions, signals: Option<&Signals>, theta0: &LoadedClip,
    tok: &dyn Tokenize, data: &mut dyn DataSource, threads: usize, progress: &mut Progress,
) -> Result<Outcome> {
    let hash = cfg.hash();
    let (found, warnings) = checkpoint::find_latest(run_dir, Some(&hash))?;
    for w in warnings {
        progress.say(&format!("warning: {w}"));
    }
    let captions = data.reference_captions().to_vec();
    let device = Device::parse(&cfg.device)?;
    crate::with_backend!(device, threads, be => {
        let tr = Trainer::new(be, cfg.clone(), &theta0.config, &theta0.params, tok, &captions)?;
        train(tr, device, run_dir, opts, signals, data, progress, found)
    })
}

/// The body of [`run_with`] on one backend.
#[allow(clippy::too_many_arguments)]
fn train<B: Backend<E = f32>>(
    mut tr: Trainer<B>, device: Device, run_dir: &Path, opts: &SessionOptions, signals: Option<&Signals>,
    data: &mut dyn DataSource, progress: &mut Progress, found: Option<checkpoint::Found>,
) -> Result<Outcome> {
    let cfg = tr.cfg.clone();
    let hash = cfg.hash();
    let method_name = cfg.method.get("preset").and_then(|v| v.as_str()).unwrap_or("mulki").to_string();
    let layout = &tr.student.layout;
    let count = |g| layout.group_range(g).len() as u64;
    let trainable = TrainableParameters {
        text: count(Group::Text),
        vision: count(Group::Vision),
        projection: count(Group::Projection),
        logit_scale: 0,
    };
    let info = RunInfo::new(
        serde_json::to_value(&cfg)?,
        hash.clone(),
        device.label(),
        cfg.seed,
        device.determinism(),
        trainable,
    );
    report::write_run_json(run_dir, &info)?;
    let task_names: Vec<String> = cfg.tasks.iter().map(|t| t.name.clone()).collect();

    let mut resumed_mid_task = false;
    match found {
        Some(f) => {
            if !f.config_matches {
                let header: CheckpointState = checkpoint::decode_header(
                    &checkpoint::load_file(&f.dir, "state.postcard")?,
                    &f.dir.join("state.postcard"),
                )?;
                let old: serde_json::Value = serde_json::from_str(&header.config_json)?;
                let mut keys = Vec::new();
                differing_keys(&old, &serde_json::to_value(&cfg)?, "", &mut keys);
                if !opts.force {
                    let keys = keys.join(", ");
                    return Err(super::config::ConfigError::CheckpointMismatch { dir: f.dir.clone(), keys }.into());
                }
                progress.say(&format!(
                    "warning: resuming {} despite a different config ({})",
                    f.dir.display(),
                    keys.join(", ")
                ));
            }
            restore(&mut tr, &f.dir)?;
            tr.state.config_hash = hash.clone();
            resumed_mid_task = !tr.state.task_done;
            progress.say(&format!(
                "resuming from {} (task {}, step {})",
                f.dir.display(),
                tr.state.task + usize::from(!tr.state.task_done),
                tr.state.step
            ));
        }
        None => {
            let row = match &opts.zero_shot_row {
                Some(row) if row.len() == cfg.tasks.len() => row.clone(),
                Some(row) => bail!("zero-shot row of {} tasks for a run of {}", row.len(), cfg.tasks.len()),
                None => {
                    progress.say("evaluating the zero-shot model on every task");
                    tr.evaluate(data)?
                }
            };
            tr.state.rows = vec![row];
            tr.state.task_done = true;
        }
    }
    let write_reports = |tr: &Trainer<B>| -> Result<()> {
        let mut rep = RunReport::new(method_name.clone(), task_names.clone(), tr.state.rows[0].clone());
        for (row, log) in tr.state.rows.iter().skip(1).zip(&tr.state.logs) {
            rep.push(row.clone(), log.clone());
        }
        report::write_reports(run_dir, &rep)?;
        Ok(())
    };
    write_reports(&tr)?;
    if !tr.method.train {
        return Ok(Outcome::Finished);
    }
    let n = cfg.tasks.len();
    while tr.state.task < n {
        let t = tr.state.task;
        let steps = cfg.iterations(t);
        let fresh = !resumed_mid_task;
        resumed_mid_task = false;
        if fresh {
            tr.state.step = 0;
        }
        tr.state.task_done = false;
        tr.begin_task(t, data, fresh)?;
        progress.begin_task(t, &cfg.tasks[t].name, steps, tr.state.step);
        let start = Instant::now();
        let mut k = tr.state.step + 1;
        while k <= steps {
            let settled = tr.step(t, k, data)?;
            take_settled(&mut tr, settled, progress, opts.skip_nonfinite)?;
            let every = cfg.train.checkpoint_every;
            let periodic = every > 0 && k.is_multiple_of(every) && k < steps;
            let signal = signals.and_then(|s| s.exit_code());
            if periodic || signal.is_some() {
                // A checkpoint holds applied steps only: wait for the one in flight.
                let settled = tr.settle()?;
                take_settled(&mut tr, settled, progress, opts.skip_nonfinite)?;
            }
            if periodic {
                save(&mut tr, run_dir, Kind::Periodic)?;
            }
            if let Some(code) = signal {
                let dir = save(&mut tr, run_dir, Kind::Periodic)?;
                progress.say(&format!("stopped by a signal at task {}, step {k}; checkpoint {}", t + 1, dir.display()));
                return Ok(Outcome::Interrupted(code));
            }
            k += 1;
        }
        let settled = tr.settle()?;
        take_settled(&mut tr, settled, progress, opts.skip_nonfinite)?;
        let row = tr.end_task(t, data, start.elapsed().as_secs_f64())?;
        save(&mut tr, run_dir, Kind::TaskEnd)?;
        write_reports(&tr)?;
        progress.end_task(t, &row);
        progress.say(&format!(
            "after task {} ({}): {}",
            t + 1,
            cfg.tasks[t].name,
            row.iter().map(|a| format!("{a:.1}")).collect::<Vec<_>>().join(" ")
        ));
    }
    Ok(Outcome::Finished)
}

/// Accuracy of the model in `model_dir` (an HF folder or a checkpoint) on every task of the
/// config (each dataset's test split): `mulki eval` and `mulki zero-shot`.
pub fn evaluate(cfg: RunConfig, model_dir: &Path, skip_bad_images: bool) -> Result<Vec<f64>> {
    let threads = crate::commands::threads((cfg.threads > 0).then_some(cfg.threads));
    let model = import::load_clip_dir(model_dir)?;
    let tok = open_tokenizer(&cfg)?;
    let side = model.config.vision_config.image_size;
    let mut data = FolderSource::open(&cfg, side, threads, skip_bad_images)?;
    let captions = data.reference_captions().to_vec();
    let device = Device::parse(&cfg.device)?;
    crate::with_backend!(device, threads, be => {
        let mut tr = Trainer::new(be, cfg, &model.config, &model.params, &tok, &captions)?;
        tr.evaluate(&mut data)
    })
}

/// Shows a settled step, or counts a non-finite one against `--skip-nonfinite` (its update was
/// skipped on the device) and fails the run once the limit is passed.
fn take_settled<B: Backend>(
    tr: &mut Trainer<B>, settled: Option<Settled>, progress: &mut Progress, limit: usize,
) -> Result<()> {
    match settled {
        None => Ok(()),
        Some(Ok(r)) => {
            progress.step(&r);
            Ok(())
        }
        Some(Err(nf)) if tr.state.skipped_nonfinite < limit => {
            tr.state.skipped_nonfinite += 1;
            progress.say(&format!("warning: {nf}; skipped ({} of at most {limit})", tr.state.skipped_nonfinite));
            Ok(())
        }
        Some(Err(nf)) => Err(nf.into()),
    }
}
