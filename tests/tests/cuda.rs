//! The CUDA suite (`cuda/suite.rs`) on the machine's GPU; every test is skipped, saying why,
//! where there is none.
use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard};

use mulki_cuda::{CudaBackend, CudaError, Precision};

#[path = "cuda/suite.rs"]
mod suite;

/// The CUDA backend on device 0, or `None` after printing why the test is skipped.
fn backend(precision: Precision) -> Option<CudaBackend> {
    started(|| CudaBackend::new(0, precision))
}

/// [`backend`] running its work as CUDA graphs.
fn graphed_backend(precision: Precision) -> Option<CudaBackend> {
    started(|| CudaBackend::with_graphs(0, precision))
}

/// A backend for this test, which from now on holds the GPU alone: with graphs a capture stays
/// open between the backend's calls, and another test's device-wide synchronisation (cuBLAS
/// synchronises the device when a backend drops its handle) would invalidate it, so the tests
/// of this binary take turns even under `cargo test`'s parallel threads. The turn ends with the
/// test's thread.
fn started(make: impl FnOnce() -> Result<CudaBackend, CudaError>) -> Option<CudaBackend> {
    static GPU: Mutex<()> = Mutex::new(());
    thread_local! {
        static TURN: RefCell<Option<MutexGuard<'static, ()>>> = const { RefCell::new(None) };
    }
    TURN.with(|turn| {
        let mut turn = turn.borrow_mut();
        if turn.is_none() {
            *turn = Some(GPU.lock().unwrap_or_else(|e| e.into_inner()));
        }
    });
    match make() {
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
