//! CUDA backend of mulki, over [`cudarc`].
//!
//! Every CUDA library (the driver `libcuda`, the runtime compiler `libnvrtc`, `libcublas`) is
//! opened with `dlopen` at run time (cudarc's `dynamic-loading`), never linked: this crate builds,
//! and its tests pass, on machines without a GPU or a CUDA toolkit. Before anything touches a CUDA
//! library, call [`probe()`]: cudarc panics on first use of a library that is absent, while
//! [`probe()`] returns a [`CudaError`] naming the missing library.
//!
//! The bindings are those of CUDA 13.0 (cudarc feature `cuda-13000`).
//!
//! Modules:
//! - [`error`]: [`CudaError`], the error type of this crate;
//! - [`probe`](mod@probe): [`probe()`], which finds the libraries and lists the devices.
//!
//! - [`kernels`]: the CUDA C++ sources, compiled with NVRTC at start-up;
//! - [`backend`]: [`CudaBackend`], the [`mulki_core::Backend`] over cuBLAS and those kernels;
//! - [`graphs`]: CUDA graphs, when the backend runs its work as graphs;
//! - `pinned`: page-locked host buffers, so a step's uploads and its values' copy back never
//!   make the host wait for the device;
//! - `rounded`: which GEMM operands have an up-to-date bf16 copy (bf16 mode).

pub mod backend;
pub mod error;
pub mod graphs;
pub mod kernels;
mod pinned;
pub mod probe;
mod rounded;

pub use backend::CudaBackend;
pub use error::{CudaError, CudaLibrary};
pub use graphs::GraphUse;
pub use mulki_core::backend::Precision;
pub use probe::{probe, Device, DeviceInfo};
pub use rounded::PoolUse;
