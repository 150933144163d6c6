//! Reader for the committed reference fixtures (`fixtures/`, written by `fixtures/gen_clip.py`).
//!
//! A [`Fixture`] is one safetensors file held in memory. Floating tensors come out as `f64`
//! (F64, F32, F16 and BF16 are accepted; the narrower ones are widened exactly), integer tensors
//! as `i64` (I64, I32, U32, U8 accepted). Shapes are returned as `Vec<usize>`; a 0-d tensor (for
//! example the `logit_scale` parameter) has the empty shape and one value.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

/// `<repo>/fixtures`, independent of the working directory of the test run.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fixtures")
}

/// `<repo>/fixtures/clip/<name>`: one tiny-CLIP fixture folder (`config.json`,
/// `model.safetensors`, `reference.safetensors`).
pub fn clip_fixture_dir(name: &str) -> PathBuf {
    fixtures_dir().join("clip").join(name)
}

/// One tensor as stored: dtype, shape and raw little-endian bytes.
#[derive(Clone, Debug)]
struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// A safetensors file read fully into memory.
#[derive(Clone, Debug)]
pub struct Fixture {
    path: PathBuf,
    tensors: BTreeMap<String, Entry>,
    metadata: BTreeMap<String, String>,
}

impl Fixture {
    /// Reads and parses the safetensors file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Fixture, String> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| format!("{}: bad safetensors header: {e:?}", path.display()))?;
        let metadata = meta
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let st =
            SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: bad safetensors file: {e:?}", path.display()))?;
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let entry = Entry { dtype: view.dtype(), shape: view.shape().to_vec(), data: view.data().to_vec() };
                (name, entry)
            })
            .collect();
        Ok(Fixture { path, tensors, metadata })
    }

    /// The file this fixture was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All tensor names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    /// Whether a tensor called `name` is stored.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The `__metadata__` string map of the file (empty if it has none).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, String> {
        Ok(self.entry(name)?.shape.clone())
    }

    /// Tensor `name` as `(shape, row-major values)` in `f64`; accepts F64, F32, F16, BF16.
    pub fn f64s(&self, name: &str) -> Result<(Vec<usize>, Vec<f64>), String> {
        let e = self.entry(name)?;
        let d = &e.data;
        let v: Vec<f64> = match e.dtype {
            Dtype::F64 => chunks::<8>(d).map(f64::from_le_bytes).collect(),
            Dtype::F32 => chunks::<4>(d).map(|b| f64::from(f32::from_le_bytes(b))).collect(),
            Dtype::F16 => chunks::<2>(d).map(|b| f16_to_f64(u16::from_le_bytes(b))).collect(),
            Dtype::BF16 => chunks::<2>(d).map(|b| bf16_to_f64(u16::from_le_bytes(b))).collect(),
            other => return Err(self.bad_dtype(name, other, "a float")),
        };
        self.check_len(name, &e.shape, v.len())?;
        Ok((e.shape.clone(), v))
    }

    /// Tensor `name` as `(shape, row-major values)` in `f32` (via [`Fixture::f64s`]).
    pub fn f32s(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let (shape, v) = self.f64s(name)?;
        Ok((shape, v.into_iter().map(|x| x as f32).collect()))
    }

    /// Tensor `name` as `(shape, row-major values)` in `i64`; accepts I64, I32, U32, U8.
    pub fn i64s(&self, name: &str) -> Result<(Vec<usize>, Vec<i64>), String> {
        let e = self.entry(name)?;
        let d = &e.data;
        let v: Vec<i64> = match e.dtype {
            Dtype::I64 => chunks::<8>(d).map(i64::from_le_bytes).collect(),
            Dtype::I32 => chunks::<4>(d).map(|b| i64::from(i32::from_le_bytes(b))).collect(),
            Dtype::U32 => chunks::<4>(d).map(|b| i64::from(u32::from_le_bytes(b))).collect(),
            Dtype::U8 => d.iter().map(|&b| i64::from(b)).collect(),
            other => return Err(self.bad_dtype(name, other, "an integer")),
        };
        self.check_len(name, &e.shape, v.len())?;
        Ok((e.shape.clone(), v))
    }

    /// The single value of a one-element tensor (shape `[]` or `[1]`).
    pub fn scalar(&self, name: &str) -> Result<f64, String> {
        let (shape, v) = self.f64s(name)?;
        match v.as_slice() {
            [x] => Ok(*x),
            _ => Err(format!("{}: `{name}` has shape {shape:?}, not a scalar", self.path.display())),
        }
    }

    fn entry(&self, name: &str) -> Result<&Entry, String> {
        self.tensors.get(name).ok_or_else(|| format!("{}: no tensor `{name}`", self.path.display()))
    }

    fn bad_dtype(&self, name: &str, dtype: Dtype, want: &str) -> String {
        format!("{}: `{name}` has dtype {dtype:?}, not {want} type", self.path.display())
    }

    fn check_len(&self, name: &str, shape: &[usize], len: usize) -> Result<(), String> {
        let numel: usize = shape.iter().product();
        if numel == len {
            Ok(())
        } else {
            Err(format!("{}: `{name}` shape {shape:?} holds {numel} values but {len} are stored", self.path.display()))
        }
    }
}

fn chunks<const N: usize>(d: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    d.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

/// IEEE binary16 to f64, exact (subnormals, infinities and NaN included).
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let man = f64::from(h & 0x3ff);
    let mag = match exp {
        0 => man * 2f64.powi(-24),
        0x1f if man == 0.0 => f64::INFINITY,
        0x1f => f64::NAN,
        _ => (1.0 + man / 1024.0) * 2f64.powi(exp - 15),
    };
    sign * mag
}

/// bfloat16 to f64, exact: bf16 is the top half of an f32.
fn bf16_to_f64(b: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(b) << 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs and outputs every `fixtures/clip/*/reference.safetensors` must hold.
    const REFERENCE_NAMES: &[&str] = &[
        "pixel_values",
        "input_ids",
        "labels",
        "image_embeds_raw",
        "text_embeds_raw",
        "image_embeds",
        "text_embeds",
        "logits_per_image",
        "logit_scale",
        "loss",
        "adamw_losses",
        "adamw.lr",
        "adamw.weight_decay",
    ];

    const CONFIGS: &[&str] = &["tiny_quick_gelu", "tiny_gelu"];

    #[test]
    fn half_conversions_are_exact() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x7c00), f64::INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(f16_to_f64(0x3555), 0.333_251_953_125);
        assert_eq!(bf16_to_f64(0x3f80), 1.0);
        assert_eq!(bf16_to_f64(0xc0a0), -5.0);
    }

    #[test]
    fn reference_files_hold_every_expected_name() {
        for cfg in CONFIGS {
            let dir = clip_fixture_dir(cfg);
            let reference = Fixture::load(dir.join("reference.safetensors")).unwrap();
            let model = Fixture::load(dir.join("model.safetensors")).unwrap();
            let config: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();

            for name in REFERENCE_NAMES {
                assert!(reference.contains(name), "{cfg}: missing `{name}`");
            }
            // One float64 gradient per saved parameter, same shape, and nothing else.
            let params = model.names();
            assert!(params.contains(&"logit_scale".to_string()));
            assert!(!params.iter().any(|n| n.contains("position_ids")));
            for p in &params {
                let g = format!("grad.{p}");
                assert_eq!(model.shape(p).unwrap(), reference.shape(&g).unwrap(), "{g}");
                let (_, gv) = reference.f64s(&g).unwrap();
                assert!(gv.iter().all(|x| x.is_finite()), "{g} not finite");
            }
            let n_grads = reference.names().iter().filter(|n| n.starts_with("grad.")).count();
            assert_eq!(n_grads, params.len(), "{cfg}");
            assert_eq!(
                reference.names().len(),
                REFERENCE_NAMES.len() + params.len(),
                "{cfg}: unexpected extra tensors"
            );

            // Shapes agree with config.json.
            let proj = config["projection_dim"].as_u64().unwrap() as usize;
            let vc = &config["vision_config"];
            let size = vc["image_size"].as_u64().unwrap() as usize;
            let chans = vc["num_channels"].as_u64().unwrap() as usize;
            let (shape, pixels) = reference.f64s("pixel_values").unwrap();
            assert_eq!(shape, vec![4, chans, size, size]);
            // Inputs are exactly representable in f32.
            assert!(pixels.iter().all(|&x| f64::from(x as f32) == x));
            let (shape, ids) = reference.i64s("input_ids").unwrap();
            assert_eq!(shape[0], 4);
            let vocab = config["text_config"]["vocab_size"].as_i64().unwrap();
            assert!(ids.iter().all(|&i| (0..vocab).contains(&i)));
            let (shape, labels) = reference.i64s("labels").unwrap();
            assert_eq!(shape, vec![4]);
            assert!(labels.iter().all(|&l| (0..4).contains(&l)));
            for name in ["image_embeds_raw", "text_embeds_raw", "image_embeds", "text_embeds"] {
                assert_eq!(reference.shape(name).unwrap(), vec![4, proj], "{name}");
            }
            assert_eq!(reference.shape("logits_per_image").unwrap(), vec![4, 4]);
            assert_eq!(reference.shape("adamw_losses").unwrap(), vec![6]);

            // The f32 model weights read through the F32 path; logit_scale = ln 20.
            let ls = model.scalar("logit_scale").unwrap();
            assert!((ls - 20f64.ln()).abs() < 1e-6, "{cfg}: logit_scale {ls}");
            assert_eq!(reference.scalar("logit_scale").unwrap(), ls);
            assert_eq!(reference.scalar("adamw.lr").unwrap(), 1e-3);
            assert_eq!(reference.scalar("adamw.weight_decay").unwrap(), 0.01);
            let loss = reference.scalar("loss").unwrap();
            let (_, traj) = reference.f64s("adamw_losses").unwrap();
            assert!((traj[0] - loss).abs() < 1e-12, "{cfg}: {} vs {loss}", traj[0]);
            assert!(reference.i64s("loss").is_err());
            assert!(reference.f64s("no_such_tensor").is_err());
        }
    }
}
