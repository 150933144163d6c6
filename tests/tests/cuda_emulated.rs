//! The CUDA suite (`cuda/suite.rs`) on the CPU: the unchanged CUDA backend over the stand-in
//! CUDA libraries of `mulki-cuda-emulator`, so kernels, launch configurations and cuBLAS
//! arguments are checked on every machine, with or without a GPU.
use mulki_cuda::{CudaBackend, CudaError, Precision};

#[path = "cuda/suite.rs"]
mod suite;

/// The CUDA backend on the emulated device; where the emulator exists (Linux) it must work.
fn backend(precision: Precision) -> Option<CudaBackend> {
    emulated(CudaBackend::new, precision)
}

/// [`backend`] running its work as CUDA graphs.
fn graphed_backend(precision: Precision) -> Option<CudaBackend> {
    emulated(CudaBackend::with_graphs, precision)
}

fn emulated(make: fn(usize, Precision) -> Result<CudaBackend, CudaError>, precision: Precision) -> Option<CudaBackend> {
    if let Some(why) = mulki_cuda_emulator::unavailable() {
        println!("skipped: {why}");
        return None;
    }
    mulki_cuda_emulator::install().unwrap_or_else(|e| panic!("{e}"));
    let be = make(0, precision).unwrap_or_else(|e| panic!("the CUDA backend on the emulator: {e}"));
    assert!(be.device_name().contains("emulator"), "the real CUDA driver was loaded: {}", be.device_name());
    Some(be)
}

/// Graphs this thread's emulated driver has run ([`mulki_cuda_emulator::graph_launches`]).
fn graph_launches() -> Option<u64> {
    Some(mulki_cuda_emulator::graph_launches().unwrap_or_else(|e| panic!("{e}")).0)
}

/// How often this thread waited for the emulated device ([`mulki_cuda_emulator::stream_waits`]).
fn stream_waits() -> Option<u64> {
    Some(mulki_cuda_emulator::stream_waits().unwrap_or_else(|e| panic!("{e}")))
}

/// Steps of the bf16 loss-curve test: an emulated step takes about half a minute, so 5 here; the
/// GPU binary runs 20.
const CURVE_STEPS: usize = 5;
