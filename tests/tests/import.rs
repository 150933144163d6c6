//! HF folder import and export (`mulki_host::import`): save -> load round trips, half-precision
//! tensors, and one test per kind of bad file, each checking that the error names the file and the
//! tensor or field. Every input here is also checked not to panic.
use mulki_tests::scratch::Scratch;
use std::fs;
use std::path::Path;

use mulki_core::clip::{ClipConfig, ClipLayout, HiddenAct};
use mulki_host::import::{
    load_clip_bytes, load_clip_dir, load_config, save_clip_dir, LoadedClip, CONFIG_FILE, WEIGHTS_FILE,
};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

/// Hidden 16, 2 heads, 1 layer per tower, 16x16 images in 8x8 patches, vocab 50.
fn tiny_config() -> ClipConfig {
    let mut cfg = ClipConfig::default();
    let t = &mut cfg.text_config;
    t.vocab_size = 50;
    t.hidden_size = 16;
    t.intermediate_size = 32;
    t.num_hidden_layers = 1;
    t.num_attention_heads = 2;
    t.max_position_embeddings = 8;
    t.eos_token_id = 49;
    t.bos_token_id = 48;
    let v = &mut cfg.vision_config;
    v.hidden_size = 16;
    v.intermediate_size = 32;
    v.num_hidden_layers = 1;
    v.num_attention_heads = 2;
    v.image_size = 16;
    v.patch_size = 8;
    v.hidden_act = HiddenAct::Gelu;
    cfg.projection_dim = 8;
    cfg
}

/// A fresh, empty folder unique to this test (and process).
fn temp_dir(test: &str) -> Scratch {
    Scratch::new("import", test)
}

/// Deterministic values in [-1, 1) (xorshift64*).
fn random_params(n: usize, mut seed: u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bits = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            bits as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The tiny model saved with random parameters into a fresh folder.
fn saved(test: &str) -> (Scratch, ClipConfig, ClipLayout, Vec<f32>) {
    let dir = temp_dir(test);
    let cfg = tiny_config();
    let layout = ClipLayout::new(&cfg);
    let params = random_params(layout.len, 7);
    save_clip_dir(&dir, &cfg, &layout, &params).unwrap();
    (dir, cfg, layout, params)
}

/// The error message of loading `dir`; panics (with the model) if it loads.
fn load_error(dir: &Path) -> String {
    match load_clip_dir(dir) {
        Ok(m) => panic!("expected an error, loaded {m:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "error message does not mention {part:?}:\n{msg}");
    }
}

/// Writes `model.safetensors` into `dir` from (name, dtype, shape, little-endian bytes).
fn write_tensors(dir: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| (name.as_str(), TensorView::new(*dtype, shape.clone(), data).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, &None).unwrap();
    fs::write(dir.join(WEIGHTS_FILE), bytes).unwrap();
}

/// Every layout entry as F32 from `params`, for tests that then change one of them.
fn f32_tensors(layout: &ClipLayout, params: &[f32]) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    layout
        .entries
        .iter()
        .map(|e| {
            let values = &params[e.view.offset..e.view.offset + e.view.len];
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (e.name.clone(), Dtype::F32, e.shape.clone(), bytes)
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn write_json(path: &Path, value: &Value) {
    fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

#[test]
fn round_trip_is_bit_identical() {
    let (dir, cfg, layout, mut params) = saved("round_trip");
    // Values a lossy path would change: NaN payloads, signed zero, infinities, subnormals.
    let specials = [f32::from_bits(0x7fc0_1234), -0.0, f32::INFINITY, f32::NEG_INFINITY, 1e-45];
    params[..specials.len()].copy_from_slice(&specials);
    // Saving again replaces both files.
    save_clip_dir(&dir, &cfg, &layout, &params).unwrap();

    let loaded = load_clip_dir(&dir).unwrap();
    assert_eq!(loaded.config, cfg);
    assert_eq!(loaded.layout.entries, layout.entries);
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&loaded.params), bits(&params));

    // HF-shaped config, and no temporary files left behind.
    let json = read_json(&dir.join(CONFIG_FILE));
    assert_eq!(json["architectures"], json!(["CLIPModel"]));
    assert_eq!(json["model_type"], "clip");
    assert_eq!(json["text_config"]["model_type"], "clip_text_model");
    assert_eq!(json["vision_config"]["model_type"], "clip_vision_model");
    assert_eq!(json["vision_config"]["hidden_act"], "gelu");
    let mut names: Vec<_> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, [CONFIG_FILE, WEIGHTS_FILE]);

    // The in-memory loader agrees.
    let config_json = fs::read(dir.join(CONFIG_FILE)).unwrap();
    let weights = fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let from_bytes = load_clip_bytes(&config_json, &weights).unwrap();
    assert_eq!(bits(&from_bytes.params), bits(&params));
}

#[test]
fn half_precision_and_f64_tensors_load_as_f32() {
    let (dir, _cfg, layout, _params) = saved("half");
    // Small multiples of 1/4 are exact in every format, so the expected f32 is exact too.
    let value = |j: usize| ((j % 17) as f32 - 8.0) / 4.0;
    let dtypes = [Dtype::F16, Dtype::BF16, Dtype::F64, Dtype::F32];
    let mut tensors = Vec::new();
    let mut expected = vec![f32::NAN; layout.len];
    for (i, e) in layout.entries.iter().enumerate() {
        let dtype = dtypes[i % dtypes.len()];
        let mut bytes = Vec::new();
        for j in 0..e.view.len {
            let v = value(i + j);
            expected[e.view.offset + j] = v;
            match dtype {
                Dtype::F16 => bytes.extend(f16_bits(v).to_le_bytes()),
                Dtype::BF16 => bytes.extend(((v.to_bits() >> 16) as u16).to_le_bytes()),
                Dtype::F64 => bytes.extend(f64::from(v).to_le_bytes()),
                _ => bytes.extend(v.to_le_bytes()),
            }
        }
        // `logit_scale` as [1] instead of HF's 0-d tensor is accepted.
        let shape = if e.shape.is_empty() { vec![1] } else { e.shape.clone() };
        tensors.push((e.name.clone(), dtype, shape, bytes));
    }
    // A buffer old HF checkpoints carry, and one tensor that is no CLIP parameter.
    let ids: Vec<u8> = (0..8i64).flat_map(|i| i.to_le_bytes()).collect();
    tensors.push(("text_model.embeddings.position_ids".into(), Dtype::I64, vec![1, 8], ids));
    tensors.push(("extra.weight".into(), Dtype::F32, vec![2], vec![0; 8]));
    write_tensors(&dir, &tensors);

    let loaded = load_clip_dir(&dir).unwrap();
    assert_eq!(loaded.params, expected);
    assert_eq!(loaded.skipped, ["extra.weight", "text_model.embeddings.position_ids"]);
    assert_eq!(loaded.unexpected().collect::<Vec<_>>(), ["extra.weight"]);
}

/// IEEE half-precision bits of `v`, which must be zero or a normal f16 with at most 11
/// significant bits (true of the test values; asserted so the test cannot pass by rounding).
fn f16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    if v == 0.0 {
        return sign;
    }
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    assert!((1..31).contains(&exp) && b & 0x1fff == 0, "{v} is not exact in f16");
    sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

/// The header length prefix of a safetensors file, as usize.
fn header_len(bytes: &[u8]) -> usize {
    u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

#[test]
fn truncated_in_the_data_names_the_cut_tensor() {
    let (dir, ..) = saved("truncated_data");
    let path = dir.join(WEIGHTS_FILE);
    let bytes = fs::read(&path).unwrap();
    let data_start = 8 + header_len(&bytes);
    fs::write(&path, &bytes[..data_start + (bytes.len() - data_start) / 2]).unwrap();
    let msg = load_error(&dir);
    assert_mentions(&msg, &[&path.display().to_string(), "tensor `", "truncated"]);
}

#[test]
fn truncated_in_the_header_is_reported() {
    let (dir, ..) = saved("truncated_header");
    let path = dir.join(WEIGHTS_FILE);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..8 + header_len(&bytes) / 2]).unwrap();
    let msg = load_error(&dir);
    assert_mentions(&msg, &[&path.display().to_string(), "header", "truncated"]);
}

#[test]
fn every_prefix_and_byte_flip_is_an_error_not_a_panic() {
    let (dir, ..) = saved("prefixes");
    let config_json = fs::read(dir.join(CONFIG_FILE)).unwrap();
    let weights = fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let data_start = 8 + header_len(&weights);
    // Every cut through the header, then a stride through the data.
    let cuts = (0..data_start + 64).chain((data_start + 64..weights.len()).step_by(97));
    for cut in cuts {
        let res = load_clip_bytes(&config_json, &weights[..cut]);
        let msg = res.map(|m| format!("{m:?}")).expect_err("a prefix loaded").to_string();
        assert!(msg.contains(WEIGHTS_FILE), "{msg}");
    }
    // Flipped header bytes may still parse (a changed digit in a shape), but must not panic.
    for i in 0..data_start {
        let mut bad = weights.clone();
        bad[i] ^= 0x5a;
        let _ = load_clip_bytes(&config_json, &bad);
    }
    // Every cut before the closing brace.
    for cut in 0..config_json.iter().rposition(|&b| b == b'}').unwrap() {
        assert!(load_clip_bytes(&config_json[..cut], &weights).is_err());
    }
}

#[test]
fn offsets_near_usize_max_are_an_error() {
    // Shape and offsets consistent with each other, but far beyond the file.
    let header = concat!(
        r#"{"x":{"dtype":"F64","shape":[2305843009213693951],"#,
        r#""data_offsets":[0,18446744073709551608]}}"#
    )
    .as_bytes();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 16]);
    let config_json = serde_json::to_vec(&tiny_config()).unwrap();
    let msg = load_clip_bytes(&config_json, &bytes).unwrap_err().to_string();
    assert_mentions(&msg, &[WEIGHTS_FILE, "tensor `x`", "truncated"]);
}

#[test]
fn unsupported_dtype_names_tensor_and_dtype() {
    let (dir, _cfg, layout, params) = saved("dtype");
    let mut tensors = f32_tensors(&layout, &params);
    let name = "text_model.encoder.layers.0.mlp.fc1.bias";
    let t = tensors.iter_mut().find(|t| t.0 == name).unwrap();
    t.1 = Dtype::I32; // Same byte length as F32.
    write_tensors(&dir, &tensors);
    let msg = load_error(&dir);
    let path = dir.join(WEIGHTS_FILE).display().to_string();
    assert_mentions(&msg, &[&path, name, "I32"]);
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let (dir, _cfg, layout, params) = saved("shape");
    let mut tensors = f32_tensors(&layout, &params);
    let name = "vision_model.embeddings.position_embedding.weight";
    let t = tensors.iter_mut().find(|t| t.0 == name).unwrap();
    assert_eq!(t.2, [5, 16]);
    t.2 = vec![16, 5];
    write_tensors(&dir, &tensors);
    let msg = load_error(&dir);
    let path = dir.join(WEIGHTS_FILE).display().to_string();
    assert_mentions(&msg, &[&path, name, "[5, 16]", "[16, 5]"]);
}

#[test]
fn missing_tensor_is_named() {
    let (dir, _cfg, layout, params) = saved("missing");
    let mut tensors = f32_tensors(&layout, &params);
    tensors.retain(|t| t.0 != "visual_projection.weight");
    write_tensors(&dir, &tensors);
    let msg = load_error(&dir);
    let path = dir.join(WEIGHTS_FILE).display().to_string();
    assert_mentions(&msg, &[&path, "`visual_projection.weight`", "missing"]);
}

#[test]
fn malformed_config_json_gives_line_and_column() {
    let (dir, ..) = saved("malformed");
    let path = dir.join(CONFIG_FILE);
    fs::write(&path, "{\n  \"projection_dim\": 8,,\n}\n").unwrap();
    let msg = load_error(&dir);
    assert_mentions(&msg, &[&path.display().to_string(), "line 2 column"]);
    assert!(load_config(&path).is_err());
}

#[test]
fn unknown_hidden_act_names_the_field() {
    let (dir, ..) = saved("hidden_act");
    let path = dir.join(CONFIG_FILE);
    let mut json = read_json(&path);
    json["text_config"]["hidden_act"] = json!("relu");
    write_json(&path, &json);
    let msg = load_error(&dir);
    assert_mentions(&msg, &[&path.display().to_string(), "text_config.hidden_act", "unknown variant `relu`", "line"]);
}

#[test]
fn wrong_type_names_the_field() {
    let (dir, ..) = saved("wrong_type");
    let path = dir.join(CONFIG_FILE);
    let mut json = read_json(&path);
    json["vision_config"]["image_size"] = json!("16");
    write_json(&path, &json);
    let msg = load_config(&path).unwrap_err().to_string();
    assert_mentions(&msg, &[&path.display().to_string(), "vision_config.image_size", "invalid type"]);
}

#[test]
fn zero_sized_field_is_named() {
    let (dir, ..) = saved("zero");
    let path = dir.join(CONFIG_FILE);
    let mut json = read_json(&path);
    json["vision_config"]["patch_size"] = json!(0);
    write_json(&path, &json);
    let msg = load_error(&dir);
    assert_mentions(&msg, &[&path.display().to_string(), "vision_config.patch_size", "positive"]);
}

#[test]
fn config_larger_than_the_weights_is_refused_before_allocating() {
    let (dir, ..) = saved("too_large");
    let path = dir.join(CONFIG_FILE);
    let mut json = read_json(&path);
    json["text_config"]["num_hidden_layers"] = json!(1u64 << 40);
    write_json(&path, &json);
    let msg = load_error(&dir);
    assert_mentions(&msg, &[WEIGHTS_FILE, CONFIG_FILE, "parameters"]);
}

#[test]
fn nulls_config_dicts_and_extra_keys() {
    let dir = temp_dir("nulls");
    let path = dir.join(CONFIG_FILE);
    // The shape of old OpenAI configs: `null`s, `*_config_dict`, many keys mulki does not use.
    let json = json!({
        "_name_or_path": "openai/clip-vit-base-patch32",
        "initializer_factor": 1.0,
        "projection_dim": null,
        "text_config": {
            "hidden_size": 16, "vocab_size": null, "bad_words_ids": null,
            "task_specific_params": {"nested": [1, {"deep": null}]}
        },
        "text_config_dict": {"hidden_size": 99, "vocab_size": 50, "num_attention_heads": 2},
        "vision_config": null,
        "vision_config_dict": {"hidden_size": 24, "num_attention_heads": 3, "patch_size": 16},
    });
    write_json(&path, &json);
    let cfg = load_config(&path).unwrap();
    let d = ClipConfig::default();
    assert_eq!(cfg.text_config.hidden_size, 16, "text_config wins over text_config_dict");
    assert_eq!(cfg.text_config.vocab_size, 50, "a null defers to text_config_dict");
    assert_eq!(cfg.text_config.num_attention_heads, 2);
    assert_eq!(cfg.text_config.intermediate_size, d.text_config.intermediate_size);
    assert_eq!(cfg.vision_config.hidden_size, 24);
    assert_eq!(cfg.vision_config.patch_size, 16);
    assert_eq!(cfg.vision_config.image_size, d.vision_config.image_size);
    assert_eq!(cfg.projection_dim, d.projection_dim);
}

#[test]
fn deep_nesting_neither_overflows_the_stack_nor_loads() {
    let (dir, ..) = saved("deep");
    let config_path = dir.join(CONFIG_FILE);
    let depth = 100_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // An unknown key is skipped by serde_json without recursion: deep nesting there is harmless.
    let mut config_json = fs::read_to_string(&config_path).unwrap();
    config_json.insert_str(1, &format!("\"unused\": {deep},"));
    fs::write(&config_path, &config_json).unwrap();
    let loaded = load_clip_dir(&dir).unwrap();
    assert_eq!(loaded.config, tiny_config());
    // In the safetensors header, the recursion limit stops it.
    let header = format!("{{\"x\": {deep}}}");
    let mut bad = (header.len() as u64).to_le_bytes().to_vec();
    bad.extend_from_slice(header.as_bytes());
    let msg = load_clip_bytes(config_json.as_bytes(), &bad).unwrap_err().to_string();
    assert_mentions(&msg, &[WEIGHTS_FILE, "header", "recursion limit"]);
}

#[test]
fn save_refuses_mismatched_params_and_layout() {
    let dir = temp_dir("save_mismatch");
    let cfg = tiny_config();
    let layout = ClipLayout::new(&cfg);
    let params = vec![0.0; layout.len - 1];
    let msg = save_clip_dir(&dir, &cfg, &layout, &params).unwrap_err().to_string();
    assert_mentions(&msg, &[WEIGHTS_FILE, "params"]);
    let mut other = cfg.clone();
    other.projection_dim = 4;
    let params = vec![0.0; layout.len];
    let msg = save_clip_dir(&dir, &other, &layout, &params).unwrap_err().to_string();
    assert_mentions(&msg, &[WEIGHTS_FILE, "layout", "visual_projection.weight"]);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "nothing written");
}

#[test]
fn loads_the_hf_fixture_folders() {
    for name in ["tiny_gelu", "tiny_quick_gelu"] {
        let dir = mulki_tests::fixture::clip_fixture_dir(name);
        if !dir.join(WEIGHTS_FILE).exists() {
            eprintln!("skipped: no fixture at {}", dir.display());
            continue;
        }
        let loaded: LoadedClip = load_clip_dir(&dir).unwrap();
        let fixture = mulki_tests::fixture::Fixture::load(dir.join(WEIGHTS_FILE)).unwrap();
        for e in &loaded.layout.entries {
            let (shape, values) = fixture.f32s(&e.name).unwrap();
            assert_eq!(shape, e.shape, "{}", e.name);
            assert_eq!(&loaded.params[e.view.offset..e.view.offset + e.view.len], values.as_slice());
        }
        assert_eq!(loaded.unexpected().count(), 0, "{:?}", loaded.skipped);
    }
}

#[test]
fn pickled_weights_are_refused_with_how_to_convert() {
    let dir = temp_dir("pickle");
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"PK\x03\x04 pickle").unwrap();
    for path in [dir.to_path_buf(), dir.join("pytorch_model.bin")] {
        let err = mulki_host::import::load_clip_dir(&path).unwrap_err().to_string();
        assert!(err.contains("pytorch_model.bin") && err.contains("safetensors"), "{err}");
    }
}
