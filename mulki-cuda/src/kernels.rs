//! The CUDA C++ kernels, compiled at start-up with NVRTC and loaded once per backend.
//!
//! The sources are header-free (NVRTC ships without the CUDA headers, so bf16 conversion is done
//! by bit operations) and concatenated into one translation unit: `common.cu` first, then one
//! file per family. Every kernel is `extern "C"`; [`NAMES`] lists them all, so compiling and
//! loading checks that each one exists.
use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::error::{CudaError, CudaLibrary};

const SOURCES: [(&str, &str); 5] = [
    ("common.cu", include_str!("kernels/common.cu")),
    ("elementwise.cu", include_str!("kernels/elementwise.cu")),
    ("rows.cu", include_str!("kernels/rows.cu")),
    ("layout.cu", include_str!("kernels/layout.cu")),
    ("attention.cu", include_str!("kernels/attention.cu")),
];

/// Every kernel of `SOURCES`.
pub const NAMES: [&str; 39] = [
    "fill_f32",
    "scale_f32",
    "axpby_f32",
    "act_forward_f32",
    "act_backward_f32",
    "adamw_f32",
    "to_bf16",
    "row_scaled_add_f32",
    "kl_backward_f32",
    "teacher_weights_f32",
    "layer_norm_forward_f32",
    "layer_norm_backward_f32",
    "softmax_forward_f32",
    "softmax_backward_f32",
    "l2_normalize_forward_f32",
    "l2_normalize_backward_f32",
    "row_dot_f32",
    "row_kl_f32",
    "cross_entropy_forward_f32",
    "cross_entropy_backward_f32",
    "prototype_ema_f32",
    "column_sum_partial_f32",
    "column_sum_finish_f32",
    "embedding_forward_f32",
    "embedding_backward_f32",
    "patchify_forward_f32",
    "patchify_backward_f32",
    "vision_embed_forward_f32",
    "vision_embed_backward_patches_f32",
    "broadcast_add_f32",
    "row_dot_partial_f32",
    "row_sum_f32",
    "qkv_heads",
    "heads_rows",
    "attention_softmax",
    "attention_softmax_backward",
    "attention_fused_forward",
    "attention_fused_backward_dq",
    "attention_fused_backward_dkv",
];

/// The whole translation unit.
pub fn source() -> String {
    SOURCES.iter().map(|(name, src)| format!("// ---- {name}\n{src}\n")).collect()
}

/// Compiles every kernel to PTX for `arch` (e.g. `compute_90`; without a GPU any supported
/// virtual architecture serves to check that the sources compile). Needs only NVRTC.
pub fn compile(arch: &'static str) -> Result<Ptx, CudaError> {
    if !CudaLibrary::Nvrtc.is_present() {
        return Err(CudaError::LibraryMissing {
            library: CudaLibrary::Nvrtc,
            candidates: CudaLibrary::Nvrtc.candidates(),
        });
    }
    let opts = CompileOptions {
        arch: Some(arch),
        // IEEE division and square roots, no flush-to-zero: the parity tests compare with the
        // CPU backend to 1e-5 relative.
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        name: Some("mulki_kernels.cu".into()),
        ..Default::default()
    };
    compile_ptx_with_opts(source(), opts).map_err(|e| CudaError::Compile(e.to_string()))
}

/// The NVRTC virtual architecture for a device of compute capability `(major, minor)`.
pub fn arch_for(cc: (i32, i32)) -> &'static str {
    match cc {
        (10, _) => "compute_100",
        (9, _) => "compute_90",
        (8, 9) => "compute_89",
        (8, 6) => "compute_86",
        (8, _) => "compute_80",
        _ => "compute_75",
    }
}

/// The loaded kernels, by name.
pub struct Kernels {
    functions: HashMap<&'static str, CudaFunction>,
    /// Whether the device has bf16 tensor-core products (`mma_bf16`, sm_80 and later).
    pub tensor_cores: bool,
}

impl Kernels {
    /// Compiles for the context's device and loads every function.
    pub fn load(ctx: &Arc<CudaContext>) -> Result<Self, CudaError> {
        let cc =
            ctx.compute_capability().map_err(|source| CudaError::Driver { call: "cuDeviceGetAttribute", source })?;
        let ptx = compile(arch_for(cc))?;
        let module = ctx.load_module(ptx).map_err(|source| CudaError::Driver { call: "cuModuleLoadData", source })?;
        let mut functions = HashMap::new();
        for name in NAMES {
            let f = module
                .load_function(name)
                .map_err(|source| CudaError::Driver { call: "cuModuleGetFunction", source })?;
            functions.insert(name, f);
        }
        Ok(Kernels { functions, tensor_cores: cc.0 >= 8 })
    }

    /// The function `name` (one of [`NAMES`]).
    pub fn get(&self, name: &'static str) -> &CudaFunction {
        // Every name in NAMES was loaded by `load`; callers use only those literals.
        &self.functions[name]
    }
}
