//! The CUDA suite (`cuda/suite.rs`) on the machine's GPU; every test is skipped, saying why,
//! where there is none.
use mulki_cuda::{CudaBackend, Precision};

#[path = "cuda/suite.rs"]
mod suite;

/// The CUDA backend on device 0, or `None` after printing why the test is skipped.
fn backend(precision: Precision) -> Option<CudaBackend> {
    match CudaBackend::new(0, precision) {
        Ok(b) => Some(b),
        Err(e) if e.is_unavailable() => {
            println!("skipped: {e}");
            None
        }
        Err(e) => panic!("CUDA is present but the backend failed to start: {e}"),
    }
}

/// How often the host waited for the device: counted on the emulator only.
fn stream_waits() -> Option<u64> {
    None
}

/// Steps of the bf16 loss-curve test.
const CURVE_STEPS: usize = 20;
