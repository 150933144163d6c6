//! [`ImportError`], the one error type of the HF folder import and export. Every variant names
//! the file it concerns and the tensor or config field at fault, so the message alone locates the
//! problem. Causes (I/O, serde_json, safetensors) are folded into the message rather than chained,
//! so a plain `{}` print is complete and `{:#}` does not repeat them.
use std::path::PathBuf;

/// Why a CLIP folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A pickled PyTorch file (`.bin`, `.pt`), which mulki never unpickles.
    #[error(
        "{path}: pickled PyTorch weights are not read (unpickling can run code); convert the folder to safetensors, e.g. `CLIPModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)` in Python"
    )]
    Pickle { path: PathBuf },
    /// Reading, writing, syncing or renaming a file failed.
    #[error("{}: {op}: {error}", path.display())]
    Io { path: PathBuf, op: &'static str, error: std::io::Error },

    /// `config.json` is not JSON, or a field has the wrong type or an unknown value. `field` is
    /// the dotted path of the field (empty outside any known field); `message` is serde_json's,
    /// with line and column.
    #[error("{}: {}{message}", path.display(), field_prefix(field))]
    ConfigParse { path: PathBuf, field: String, message: String },

    /// A config field is out of range (zero size, sizes that do not divide, overflow).
    #[error("{}: {field}: {reason}", path.display())]
    ConfigInvalid { path: PathBuf, field: String, reason: String },

    /// The safetensors file is truncated or its header or offsets are invalid. `at` is `header`
    /// or the tensor concerned; `problem` includes the safetensors crate's own report.
    #[error("{}: {at}: {problem}", path.display())]
    Safetensors { path: PathBuf, at: String, problem: String },

    /// A parameter of the layout has no tensor in the file.
    #[error("{}: tensor `{tensor}` is missing", path.display())]
    MissingTensor { path: PathBuf, tensor: String },

    /// A tensor's shape differs from the one the config implies.
    #[error("{}: tensor `{tensor}`: expected shape {expected:?}, got {got:?}", path.display())]
    Shape { path: PathBuf, tensor: String, expected: Vec<usize>, got: Vec<usize> },

    /// A parameter is stored with a dtype that is not read as f32.
    #[error(
        "{}: tensor `{tensor}`: unsupported dtype {dtype} (F32, F16, BF16 and F64 are read)",
        path.display()
    )]
    Dtype { path: PathBuf, tensor: String, dtype: String },

    /// The file is smaller than the parameters the config describes could occupy, checked before
    /// the layout is built so an absurd config cannot make us allocate.
    #[error(
        "{}: {bytes} bytes cannot hold the {params} parameters that {} describes \
         (at least 2 bytes each)",
        path.display(),
        config.display()
    )]
    TooSmall { path: PathBuf, config: PathBuf, params: usize, bytes: usize },

    /// What was handed to a save does not fit together (`field`: `params`, `layout`, `config`).
    #[error("{}: {field}: {reason}", path.display())]
    Inconsistent { path: PathBuf, field: String, reason: String },
}

/// `field: `, or nothing for an error outside any known field.
fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}
