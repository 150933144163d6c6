//! Runs mulki's CUDA backend on the CPU, for tests on machines without a GPU.
//!
//! [`install`] loads three stand-in libraries built from `cpp/`: a CUDA driver that executes the
//! kernels' CUDA C++ compiled as C++, cuBLAS's strided batched GEMM from its column-major
//! definition, and an NVRTC that compiles nothing. They are loaded under the SONAMEs cudarc opens
//! first (`libcuda.so`, `libcublas.so`, `libnvrtc.so`), so every later `dlopen` by cudarc in this
//! process gets them: `CudaBackend` then runs unchanged, the backend code under test is the code
//! that runs on a GPU. [`library_paths`] gives them to another process (`LD_PRELOAD`).
//!
//! The driver runs blocks one after another, in an order scrambled from launch to launch (a GPU
//! keeps none), so a kernel whose result depends on the order of its blocks fails. The threads of a kernel that synchronises (build.rs
//! finds `__syncthreads` and warp shuffles in the sources, through calls) run as fibers: warps
//! run on their own between barriers, a shuffle takes one turn of its warp, and the warp order
//! reverses at every barrier, so a missing `__syncthreads` shows up as a wrong result. A shuffle
//! whose partner lane did not take part, or threads that reach different barriers, abort with a
//! message. Device memory is host memory: fresh allocations hold NaN bit patterns, guard words
//! around each one read as NaN (or a huge index) and are checked at every synchronisation, so
//! an out-of-bounds write fails it naming the allocation; cuBLAS checks each operand's whole
//! extent against the allocations, besides its own argument checks.
//!
//! Streams of their own (`cuStreamCreate`) can capture their work into CUDA graphs. While a
//! stream captures, the kernel launches, device-to-device copies, memsets and cuBLAS GEMMs
//! issued on it are checked as when run and recorded, not run: kernel parameters are copied by
//! value, cuBLAS reads alpha and beta at the call (host pointer mode). A graph is the chain of
//! them in issue order; `cuGraphLaunch` runs an instantiated graph's nodes in order, as the
//! direct calls would run (scrambled blocks, guards), after checking that the memory each node
//! uses is still allocated; `cuGraphExecUpdate_v2` follows CUDA's rule for a chain (the same
//! number of nodes, of the same kinds, running the same kernels; a cuBLAS GEMM counts as the
//! same kernel when its transposes, shapes and types are). Refused during a capture, with
//! `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED`, a line on stderr and the capture invalidated (its
//! end gives `CUDA_ERROR_STREAM_CAPTURE_INVALIDATED` and no graph): on the capturing stream,
//! synchronising, querying, recording or waiting for events, and copies between the device and
//! host memory; from the thread that began the capture, `cuCtxSynchronize`, synchronous copies
//! and memsets, allocating and freeing (stream-ordered and page-locked included) and launching
//! graphs. The legacy default stream cannot capture, as in CUDA. Stricter than CUDA: a GPU
//! captures copies from and to page-locked memory, events (fork and join across streams) and
//! stream-ordered allocation, and allows allocation in its relaxed capture mode; every mode is
//! thread-local here, since other test threads run unrelated work meanwhile. [`graph_launches`]
//! counts the graphs a thread ran.
//!
//! What it checks: kernel index arithmetic and reductions, barriers and shuffles, launch
//! configurations and argument order, cuBLAS leading dimensions, strides and transposes, scratch
//! management, out-of-bounds accesses, and blocks that depend on each other's order. What it
//! cannot: speed, races between blocks that a GPU runs at the same time, and the GPU's own rounding of `expf` and friends (the tests'
//! tolerances cover the last).
#[cfg(emulator)]
use std::path::PathBuf;
#[cfg(emulator)]
use std::sync::OnceLock;

/// The libraries in load order (the driver first).
#[cfg(emulator)]
const LIBRARIES: [&str; 3] = ["libcuda.so", "libcublas.so", "libnvrtc.so"];

/// Why this platform has no emulator, or `None` where it has one (Linux: the stand-ins are ELF
/// shared objects). Tests print it as their reason to skip.
pub fn unavailable() -> Option<&'static str> {
    (!cfg!(emulator)).then_some("the CUDA emulator runs on Linux only")
}

/// Loads the stand-in libraries into this process (once; later calls return the first result).
/// Must run before anything opens the real CUDA libraries in the process.
#[cfg(not(emulator))]
pub fn install() -> Result<(), String> {
    Err(unavailable().unwrap_or_default().into())
}

/// Times the calling thread waited, or may have waited, for the emulated device so far:
/// synchronisations, synchronous copies, and copies between the device and pageable host memory
/// that a driver completes (or stages) before returning. Asynchronous copies to and from
/// page-locked memory and event waits do not count. Tests use it to show that a training step
/// queues its work without waiting. Needs [`install`] first.
#[cfg(emulator)]
pub fn stream_waits() -> Result<u64, String> {
    let path = library_paths().into_iter().next().ok_or("no driver library")?;
    // SAFETY: the driver stand-in is already loaded (`install`), so this only takes another
    // reference; `emu_stream_waits` reads a thread-local counter.
    unsafe {
        let lib = libloading::os::unix::Library::open(Some(&path), libloading::os::unix::RTLD_NOW)
            .map_err(|e| format!("open the CUDA emulator's driver: {e}"))?;
        let f: libloading::os::unix::Symbol<unsafe extern "C" fn() -> u64> =
            lib.get(b"emu_stream_waits\0").map_err(|e| format!("the emulator's wait counter: {e}"))?;
        Ok(f())
    }
}

/// See the Linux version; there is no emulator here.
#[cfg(not(emulator))]
pub fn stream_waits() -> Result<u64, String> {
    Err(unavailable().unwrap_or_default().into())
}

/// CUDA graphs the calling thread launched on the emulated device so far (`cuGraphLaunch`), and
/// the nodes those launches ran (kernels, copies, memsets, cuBLAS calls; a launch stops at its
/// first failing node). Tests use it to show that a backend's work ran as graphs. Per thread, as
/// tests run side by side. Needs [`install`] first.
#[cfg(emulator)]
pub fn graph_launches() -> Result<(u64, u64), String> {
    let path = library_paths().into_iter().next().ok_or("no driver library")?;
    // SAFETY: the driver stand-in is already loaded (`install`), so this only takes another
    // reference; `emu_graph_counts` reads two thread-local counters into the given places.
    unsafe {
        let lib = libloading::os::unix::Library::open(Some(&path), libloading::os::unix::RTLD_NOW)
            .map_err(|e| format!("open the CUDA emulator's driver: {e}"))?;
        let f: libloading::os::unix::Symbol<unsafe extern "C" fn(*mut u64, *mut u64)> =
            lib.get(b"emu_graph_counts\0").map_err(|e| format!("the emulator's graph counters: {e}"))?;
        let (mut launches, mut nodes) = (0u64, 0u64);
        f(&mut launches, &mut nodes);
        Ok((launches, nodes))
    }
}

/// See the Linux version; there is no emulator here.
#[cfg(not(emulator))]
pub fn graph_launches() -> Result<(u64, u64), String> {
    Err(unavailable().unwrap_or_default().into())
}

/// The stand-in libraries' paths, for another process: `LD_PRELOAD` them (joined by `:`) and
/// its cudarc opens them as it would open CUDA. Empty where the emulator is not supported.
pub fn library_paths() -> Vec<std::path::PathBuf> {
    #[cfg(emulator)]
    return LIBRARIES.iter().map(|name| PathBuf::from(env!("OUT_DIR")).join(name)).collect();
    #[cfg(not(emulator))]
    Vec::new()
}

/// Loads the stand-in libraries into this process (once; later calls return the first result).
/// Must run before anything opens the real CUDA libraries in the process.
#[cfg(emulator)]
pub fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            for path in library_paths() {
                // SAFETY: these are our own libraries with no initialisers; RTLD_GLOBAL makes
                // their SONAMEs match cudarc's later dlopen calls by name.
                let lib = unsafe {
                    libloading::os::unix::Library::open(
                        Some(&path),
                        libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                    )
                }
                .map_err(|e| format!("load the CUDA emulator's {}: {e}", path.display()))?;
                // Stays loaded for the life of the process, as a real driver would.
                std::mem::forget(lib);
            }
            Ok(())
        })
        .clone()
}
