//! The CUDA suite (`cuda/suite.rs`) on the machine's GPU; every test is skipped, saying why,
//! where there is none.
use mulki_cuda::{CudaBackend, CudaError, Precision};

#[path = "cuda/suite.rs"]
mod suite;

/// The CUDA backend on device 0, or `None` after printing why the test is skipped.
fn backend(precision: Precision) -> Option<CudaBackend> {
    started(CudaBackend::new(0, precision))
}

/// [`backend`] running its work as CUDA graphs.
fn graphed_backend(precision: Precision) -> Option<CudaBackend> {
    started(CudaBackend::with_graphs(0, precision))
}

fn started(made: Result<CudaBackend, CudaError>) -> Option<CudaBackend> {
    match made {
        Ok(b) => Some(b),
        Err(e) if e.is_unavailable() => {
            println!("skipped: {e}");
            None
        }
        Err(e) => panic!("CUDA is present but the backend failed to start: {e}"),
    }
}

/// Graphs the driver ran: counted on the emulator only.
fn graph_launches() -> Option<u64> {
    None
}

/// How often the host waited for the device: counted on the emulator only.
fn stream_waits() -> Option<u64> {
    None
}

/// Steps of the bf16 loss-curve test.
const CURVE_STEPS: usize = 20;
