//! HF CLIP folders: `model.safetensors` + `config.json` in and out.
//! [`load_clip_dir`] reads what HF `save_pretrained` writes into mulki's flat parameter buffer;
//! [`save_clip_dir`] writes a folder that HF `from_pretrained` (and [`load_clip_dir`]) read back
//! bit for bit. Files are replaced atomically, so a crash never leaves half a file.
mod config;
mod error;
mod weights;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mulki_core::clip::{ClipConfig, ClipLayout};

pub use config::load_config;
pub use error::ImportError;
pub use weights::{f32_tensors_to_bytes, read_f32_tensors};

/// The config file of an HF model folder.
pub const CONFIG_FILE: &str = "config.json";
/// The weights file of an HF model folder (single-file checkpoints only).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Non-parameter buffers that older HF checkpoints store; skipped without a warning.
pub const KNOWN_BUFFERS: [&str; 2] = ["text_model.embeddings.position_ids", "vision_model.embeddings.position_ids"];

/// A CLIP model read from an HF folder.
#[derive(Clone)]
pub struct LoadedClip {
    pub config: ClipConfig,
    pub layout: ClipLayout,
    /// `layout.len` scalars, each tensor at its layout offset.
    pub params: Vec<f32>,
    /// Tensors of the file that are not parameters, sorted (see [`LoadedClip::unexpected`]).
    pub skipped: Vec<String>,
}

impl LoadedClip {
    /// The skipped tensors that are not [`KNOWN_BUFFERS`]: worth one warning, since a file with
    /// extra weights may be a different architecture.
    pub fn unexpected(&self) -> impl Iterator<Item = &str> {
        self.skipped.iter().map(String::as_str).filter(|n| !KNOWN_BUFFERS.contains(n))
    }
}

impl fmt::Debug for LoadedClip {
    // The parameters are summarised: printing millions of floats helps nobody.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedClip")
            .field("config", &self.config)
            .field("tensors", &self.layout.entries.len())
            .field("params", &self.params.len())
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// Reads `dir/config.json` and `dir/model.safetensors`. F32, F16, BF16 and F64 tensors are
/// converted to f32; see [`load_config`] for how the config is read.
pub fn load_clip_dir(dir: &Path) -> Result<LoadedClip, ImportError> {
    let config_path = dir.join(CONFIG_FILE);
    let weights_path = dir.join(WEIGHTS_FILE);
    // Pickled PyTorch weights are never read (unpickling runs code): say how to convert them.
    let pickled = if dir.is_file() {
        Some(dir.to_path_buf())
    } else {
        ["pytorch_model.bin", "model.pt"].iter().map(|f| dir.join(f)).find(|p| p.is_file() && !weights_path.is_file())
    };
    if let Some(path) = pickled.filter(|p| p.extension().is_some_and(|e| e == "bin" || e == "pt" || e == "pth")) {
        return Err(ImportError::Pickle { path });
    }
    let config_json = read(&config_path)?;
    // Read rather than memory-mapped: no `unsafe`, and no undefined behaviour if another
    // process rewrites the file while we hold it. The copy is freed before this returns.
    let weights = read(&weights_path)?;
    load_named(&config_json, &config_path, &weights, &weights_path)
}

/// [`load_clip_dir`] on the two files' bytes; errors name them `config.json` and
/// `model.safetensors`.
pub fn load_clip_bytes(config_json: &[u8], safetensors: &[u8]) -> Result<LoadedClip, ImportError> {
    load_named(config_json, Path::new(CONFIG_FILE), safetensors, Path::new(WEIGHTS_FILE))
}

fn load_named(
    config_json: &[u8], config_path: &Path, weights: &[u8], weights_path: &Path,
) -> Result<LoadedClip, ImportError> {
    let config = config::parse_config(config_json, config_path)?;
    let st = weights::open(weights, weights_path)?;
    // The layout allocates per layer and the buffer per scalar: a config that asks for more
    // parameters than the file could hold (2 bytes each at least) is refused before either.
    let params = config::param_count(&config).unwrap_or(usize::MAX);
    if params > weights.len() / 2 {
        return Err(ImportError::TooSmall {
            path: weights_path.to_path_buf(),
            config: config_path.to_path_buf(),
            params,
            bytes: weights.len(),
        });
    }
    let layout = ClipLayout::new(&config);
    let (params, skipped) = weights::read_params(&st, weights_path, &layout)?;
    Ok(LoadedClip { config, layout, params, skipped })
}

/// Writes `dir/model.safetensors` (every layout entry as F32 under its HF key) and then
/// `dir/config.json` (HF-shaped), creating `dir` if needed. Each file is written under a
/// temporary name, synced and renamed over the old one, so a crash leaves either the old or the
/// new file, never a partial one; the two renames are not one transaction, so a crash between
/// them pairs new weights with the old config.
pub fn save_clip_dir(dir: &Path, config: &ClipConfig, layout: &ClipLayout, params: &[f32]) -> Result<(), ImportError> {
    let config_path = dir.join(CONFIG_FILE);
    let weights_path = dir.join(WEIGHTS_FILE);
    let (config_json, weights) = clip_bytes(config, layout, params, &config_path, &weights_path)?;
    fs::create_dir_all(dir).map_err(|error| ImportError::Io {
        path: dir.to_path_buf(),
        op: "create directory",
        error,
    })?;
    for (path, bytes) in [(&weights_path, &weights), (&config_path, &config_json)] {
        write_atomic(path, |tmp| {
            let io = |op, error| ImportError::Io { path: tmp.to_path_buf(), op, error };
            let mut file = File::create(tmp).map_err(|e| io("create", e))?;
            file.write_all(bytes).map_err(|e| io("write", e))
        })?;
    }
    Ok(())
}

/// `config.json` and `model.safetensors` of a model as bytes (what `save_clip_dir` writes), for
/// checkpoints that commit files through their own storage.
pub fn clip_to_bytes(
    config: &ClipConfig, layout: &ClipLayout, params: &[f32],
) -> Result<(Vec<u8>, Vec<u8>), ImportError> {
    clip_bytes(config, layout, params, Path::new(CONFIG_FILE), Path::new(WEIGHTS_FILE))
}

/// Checks that the config would load back and that the layout and buffer fit it, then
/// serialises both files; errors name `config_path` and `weights_path`.
fn clip_bytes(
    config: &ClipConfig, layout: &ClipLayout, params: &[f32], config_path: &Path, weights_path: &Path,
) -> Result<(Vec<u8>, Vec<u8>), ImportError> {
    let inconsistent = |path: &Path, field: &str, reason: String| ImportError::Inconsistent {
        path: path.to_path_buf(),
        field: field.into(),
        reason,
    };
    // A config that would not load back is refused before anything is written (this also keeps
    // a NaN, which JSON would store as `null`, out of the file).
    config::check(config, config_path)?;
    let config_json = config::to_hf_json(config).map_err(|e| inconsistent(config_path, "config", e.to_string()))?;
    let expected = ClipLayout::new(config);
    if let Some(i) = (0..expected.entries.len().max(layout.entries.len()))
        .find(|&i| expected.entries.get(i) != layout.entries.get(i))
    {
        let name = layout.entries.get(i).or(expected.entries.get(i)).map_or("", |e| &e.name);
        return Err(inconsistent(
            weights_path,
            "layout",
            format!("tensor `{name}` differs from the layout of the config"),
        ));
    }
    if params.len() != layout.len {
        return Err(inconsistent(
            weights_path,
            "params",
            format!("{} values given, the layout holds {}", params.len(), layout.len),
        ));
    }
    let tensors: Vec<(&str, &[usize], &[f32])> = layout
        .entries
        .iter()
        .filter_map(|e| {
            params.get(e.view.offset..e.view.offset + e.view.len).map(|v| (e.name.as_str(), e.shape.as_slice(), v))
        })
        .collect();
    Ok((config_json, weights::f32_tensors_to_bytes(&tensors, weights_path)?))
}

fn read(path: &Path) -> Result<Vec<u8>, ImportError> {
    fs::read(path).map_err(|error| ImportError::Io { path: path.to_path_buf(), op: "read", error })
}

/// Lets `write` create a temporary file next to `path`, syncs it, renames it to `path` and syncs
/// the directory. The temporary file is removed if anything fails.
fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<(), ImportError>) -> Result<(), ImportError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp: PathBuf = path.with_file_name(format!(".{name}.tmp-{}-{unique}", std::process::id()));
    let result = write(&tmp)
        .and_then(|()| {
            // Opened for writing: Windows refuses to flush a read-only handle.
            let file = OpenOptions::new().write(true).open(&tmp);
            file.and_then(|f| f.sync_all()).map_err(|error| ImportError::Io { path: tmp.clone(), op: "sync", error })
        })
        .and_then(|()| {
            fs::rename(&tmp, path).map_err(|error| ImportError::Io { path: path.to_path_buf(), op: "rename", error })
        });
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_parent(path)
}

/// Makes the rename itself durable (POSIX needs an fsync of the directory for that).
#[cfg(unix)]
fn sync_parent(path: &Path) -> Result<(), ImportError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|error| ImportError::Io {
        path: dir.to_path_buf(),
        op: "sync directory",
        error,
    })
}

#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> Result<(), ImportError> {
    Ok(())
}
