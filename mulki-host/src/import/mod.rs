//! HF CLIP folders: `model.safetensors` + `config.json` in and out.
