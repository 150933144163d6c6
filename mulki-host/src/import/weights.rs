//! `model.safetensors` <-> mulki's flat f32 parameter buffer, by HF key. Reading checks the
//! header before the safetensors crate sees it (a truncated file names its first cut tensor, and
//! offsets near `usize::MAX` cannot reach the crate's unchecked addition), then converts F32, F16,
//! BF16 and F64 tensors to f32. Writing stores every layout entry as F32.
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use mulki_core::clip::layout::ParamEntry;
use mulki_core::clip::ClipLayout;
use safetensors::tensor::{Dtype, TensorInfo, TensorView, View};
use safetensors::{SafeTensorError, SafeTensors};
use serde_json::{Map, Value};

use super::error::ImportError;

/// The safetensors crate's limit; longer headers are left to it to reject, unparsed.
const MAX_HEADER: usize = 100_000_000;

/// Parses and validates a safetensors file held in `bytes`; `path` names it in errors.
pub(crate) fn open<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>, ImportError> {
    let header = precheck(bytes, path)?;
    SafeTensors::deserialize(bytes).map_err(|e| describe(e, header.as_ref(), path))
}

/// Fills a buffer of `layout.len` scalars from `st`, in the layout's order. Returns it and the
/// sorted names of the file's tensors that are not parameters.
pub(crate) fn read_params(
    st: &SafeTensors<'_>, path: &Path, layout: &ClipLayout,
) -> Result<(Vec<f32>, Vec<String>), ImportError> {
    // Check every tensor before allocating: then the buffer is no larger than the file allows.
    let mut found = Vec::with_capacity(layout.entries.len());
    for entry in &layout.entries {
        let view = st.tensor(&entry.name).map_err(|e| match e {
            SafeTensorError::TensorNotFound(_) => {
                ImportError::MissingTensor { path: path.to_path_buf(), tensor: entry.name.clone() }
            }
            other => describe(other, None, path),
        })?;
        if element_size(view.dtype()).is_none() {
            return Err(ImportError::Dtype {
                path: path.to_path_buf(),
                tensor: entry.name.clone(),
                dtype: format!("{:?}", view.dtype()),
            });
        }
        // HF stores `logit_scale` as a 0-d tensor; some exporters write it as [1].
        let shape_ok = view.shape() == entry.shape.as_slice() || (entry.shape.is_empty() && view.shape() == [1]);
        if !shape_ok {
            return Err(ImportError::Shape {
                path: path.to_path_buf(),
                tensor: entry.name.clone(),
                expected: entry.shape.clone(),
                got: view.shape().to_vec(),
            });
        }
        found.push((entry, view));
    }

    let mut params = vec![0.0f32; layout.len];
    for (entry, view) in &found {
        decode(entry, view, &mut params, path)?;
    }

    let names: HashSet<&str> = layout.entries.iter().map(|e| e.name.as_str()).collect();
    let mut skipped: Vec<String> = st.names().into_iter().filter(|n| !names.contains(n.as_str())).cloned().collect();
    skipped.sort();
    Ok((params, skipped))
}

/// A parameter borrowed from the buffer, serialised little-endian on demand.
struct F32Tensor<'a> {
    shape: &'a [usize],
    values: &'a [f32],
}

impl View for F32Tensor<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        // A slice of f32 spans at most isize::MAX bytes, so this cannot overflow.
        self.values.len() * 4
    }
}

/// Bytes per element of the dtypes read as f32; `None` for the rest.
fn element_size(dtype: Dtype) -> Option<usize> {
    match dtype {
        Dtype::F32 => Some(4),
        Dtype::F16 | Dtype::BF16 => Some(2),
        Dtype::F64 => Some(8),
        _ => None,
    }
}

/// Converts one tensor into its place in `params`.
fn decode(entry: &ParamEntry, view: &TensorView<'_>, params: &mut [f32], path: &Path) -> Result<(), ImportError> {
    let data = view.data();
    let size = element_size(view.dtype()).unwrap_or(0);
    let dst = params.get_mut(entry.view.offset..entry.view.offset.saturating_add(entry.view.len));
    let dst = match dst {
        Some(dst) if entry.view.len.checked_mul(size) == Some(data.len()) => dst,
        _ => {
            // Unreachable after the shape check and the crate's size validation; kept as an
            // error so that a broken invariant cannot become a panic or a short read.
            return Err(ImportError::Safetensors {
                path: path.to_path_buf(),
                at: format!("tensor `{}`", entry.name),
                problem: format!("{} data bytes do not hold {} {:?} values", data.len(), entry.view.len, view.dtype()),
            });
        }
    };
    match view.dtype() {
        Dtype::F32 => {
            for (d, b) in dst.iter_mut().zip(data.chunks_exact(4)) {
                if let &[b0, b1, b2, b3] = b {
                    *d = f32::from_le_bytes([b0, b1, b2, b3]);
                }
            }
        }
        Dtype::F16 => {
            for (d, b) in dst.iter_mut().zip(data.chunks_exact(2)) {
                if let &[b0, b1] = b {
                    *d = half::f16::from_le_bytes([b0, b1]).to_f32();
                }
            }
        }
        Dtype::BF16 => {
            for (d, b) in dst.iter_mut().zip(data.chunks_exact(2)) {
                if let &[b0, b1] = b {
                    *d = half::bf16::from_le_bytes([b0, b1]).to_f32();
                }
            }
        }
        Dtype::F64 => {
            for (d, b) in dst.iter_mut().zip(data.chunks_exact(8)) {
                if let &[b0, b1, b2, b3, b4, b5, b6, b7] = b {
                    // Rounds to nearest; magnitudes beyond f32 become infinite.
                    *d = f64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]) as f32;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Checks the length prefix and that no tensor's data reaches past the end of the file, and
/// returns the parsed header (if it is JSON) to explain the crate's errors with. Anything else
/// is left to the crate.
fn precheck(bytes: &[u8], path: &Path) -> Result<Option<Map<String, Value>>, ImportError> {
    let header_error =
        |problem: String| ImportError::Safetensors { path: path.to_path_buf(), at: "header".into(), problem };
    let Some((prefix, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(header_error(format!(
            "the file is {} bytes, shorter than the 8-byte header length \
             (safetensors: HeaderTooSmall)",
            bytes.len()
        )));
    };
    let n = u64::from_le_bytes(*prefix);
    let split = usize::try_from(n).ok().and_then(|n| rest.split_at_checked(n));
    let Some((header, data)) = split else {
        return Err(header_error(format!(
            "the header length field says {n} bytes but only {} follow: the file is truncated \
             or not safetensors (safetensors: InvalidHeaderLength)",
            rest.len()
        )));
    };
    if header.len() > MAX_HEADER {
        return Ok(None);
    }
    let Ok(text) = std::str::from_utf8(header) else {
        return Ok(None);
    };
    let map: Map<String, Value> = match serde_json::from_str(text) {
        Ok(map) => map,
        Err(e) => return Err(header_error(format!("the header is not valid JSON: {e}"))),
    };
    // The first tensor (in file order) whose data is cut off.
    let mut cut: Option<(&str, u64, u64)> = None;
    for (name, entry) in map.iter().filter(|(name, _)| name.as_str() != "__metadata__") {
        let offsets = entry.get("data_offsets").and_then(Value::as_array).map(Vec::as_slice);
        let (start, end) = match offsets {
            Some([s, e]) => match (s.as_u64(), e.as_u64()) {
                (Some(s), Some(e)) => (s, e),
                _ => continue,
            },
            _ => continue,
        };
        let beyond = usize::try_from(end).map_or(true, |end| end > data.len());
        if beyond && cut.is_none_or(|(_, s, _)| start < s) {
            cut = Some((name, start, end));
        }
    }
    if let Some((name, start, end)) = cut {
        return Err(ImportError::Safetensors {
            path: path.to_path_buf(),
            at: format!("tensor `{name}`"),
            problem: format!(
                "data_offsets [{start}, {end}] reach past the end of the data, which holds only \
                 {} bytes after the {}-byte header: the file is truncated",
                data.len(),
                header.len()
            ),
        });
    }
    Ok(Some(map))
}

/// Turns an error of the safetensors crate into one that says what is wrong and, where the
/// parsed `header` allows, with which tensor.
fn describe(e: SafeTensorError, header: Option<&Map<String, Value>>, path: &Path) -> ImportError {
    let tensors = || header.into_iter().flatten().filter(|(name, _)| name.as_str() != "__metadata__");
    let (at, problem): (Option<String>, String) = match &e {
        SafeTensorError::InvalidOffset(name) => {
            (Some(name.clone()), "data_offsets do not start where the previous tensor ends".into())
        }
        SafeTensorError::TensorInvalidInfo => {
            // The tensor whose byte range does not match its shape and dtype.
            let bad = tensors().find(|(_, v)| {
                serde_json::from_value::<TensorInfo>((*v).clone()).is_ok_and(|info| {
                    let bytes = info.shape.iter().try_fold(info.dtype.size(), |acc, &d| acc.checked_mul(d));
                    bytes != info.data_offsets.1.checked_sub(info.data_offsets.0)
                })
            });
            (bad.map(|(name, _)| name.clone()), "the byte range does not match the shape and dtype".into())
        }
        SafeTensorError::InvalidHeaderDeserialization => {
            let bad = tensors().find_map(|(name, v)| {
                serde_json::from_value::<TensorInfo>(v.clone()).err().map(|err| (name.clone(), err))
            });
            let metadata = header
                .and_then(|h| h.get("__metadata__"))
                .and_then(|m| serde_json::from_value::<Option<HashMap<String, String>>>(m.clone()).err());
            match (bad, metadata) {
                (Some((name, err)), _) => (Some(name), format!("invalid entry: {err}")),
                (None, Some(err)) => (None, format!("invalid __metadata__: {err}")),
                (None, None) => (None, "the header is not a valid safetensors header".into()),
            }
        }
        SafeTensorError::InvalidHeader => (None, "the header is not valid UTF-8".into()),
        SafeTensorError::InvalidHeaderStart => (None, "the header does not start with `{`".into()),
        SafeTensorError::HeaderTooLarge => (None, "the header is larger than 100 MB".into()),
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => {
            (None, "the header length does not fit the file".into())
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            (None, "the tensors' data do not end where the file ends (extra or missing bytes)".into())
        }
        SafeTensorError::ValidationOverflow => (None, "a tensor's size overflows (corrupt shape)".into()),
        _ => (None, "invalid safetensors data".into()),
    };
    ImportError::Safetensors {
        path: path.to_path_buf(),
        at: at.map_or_else(|| "header".to_string(), |name| format!("tensor `{name}`")),
        problem: format!("{problem} (safetensors: {e})"),
    }
}

/// Named f32 tensors as safetensors bytes (a checkpoint's `model.safetensors` and
/// `state.safetensors`); `path` names the file in errors.
pub fn f32_tensors_to_bytes(tensors: &[(&str, &[usize], &[f32])], path: &Path) -> Result<Vec<u8>, ImportError> {
    let views: Vec<(&str, F32Tensor)> =
        tensors.iter().map(|&(name, shape, values)| (name, F32Tensor { shape, values })).collect();
    let info = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize(views, &info).map_err(|e| describe(e, None, path))
}

/// A tensor read back: name, shape, values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Every tensor of a safetensors file read as f32 (F32, F16, BF16, F64), by name, with its
/// shape; the same checks as the model import.
pub fn read_f32_tensors(bytes: &[u8], path: &Path) -> Result<Vec<NamedTensor>, ImportError> {
    let st = open(bytes, path)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
        if element_size(view.dtype()).is_none() || len > bytes.len() {
            return Err(ImportError::Dtype {
                path: path.to_path_buf(),
                tensor: name,
                dtype: format!("{:?}", view.dtype()),
            });
        }
        let entry = ParamEntry {
            name: name.clone(),
            shape: shape.clone(),
            view: mulki_core::clip::layout::ParamView { offset: 0, len },
            group: mulki_core::clip::layout::Group::Text,
        };
        let mut values = vec![0f32; len];
        decode(&entry, &view, &mut values, path)?;
        out.push((name, shape, values));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
