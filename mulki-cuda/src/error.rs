//! The error type of mulki-cuda.
use std::fmt;

use cudarc::driver::DriverError;

/// A CUDA shared library that mulki opens at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CudaLibrary {
    /// The CUDA driver, `libcuda` (installed with the NVIDIA driver, not the toolkit).
    Driver,
    /// The CUDA runtime compiler, `libnvrtc` (CUDA toolkit).
    Nvrtc,
    /// cuBLAS, `libcublas` (CUDA toolkit).
    Cublas,
}

impl CudaLibrary {
    /// All libraries mulki needs, in the order [`probe()`](crate::probe()) checks them.
    pub const ALL: [CudaLibrary; 3] = [CudaLibrary::Driver, CudaLibrary::Nvrtc, CudaLibrary::Cublas];

    /// The library's base name, as cudarc searches for it (`lib<name>.so*` on Linux).
    pub fn base_name(self) -> &'static str {
        match self {
            CudaLibrary::Driver => "cuda",
            CudaLibrary::Nvrtc => "nvrtc",
            CudaLibrary::Cublas => "cublas",
        }
    }

    /// What the library is, for messages.
    pub fn description(self) -> &'static str {
        match self {
            CudaLibrary::Driver => "the CUDA driver, installed with the NVIDIA GPU driver",
            CudaLibrary::Nvrtc => "NVRTC, the CUDA runtime compiler, from the CUDA toolkit",
            CudaLibrary::Cublas => "cuBLAS, from the CUDA toolkit",
        }
    }

    /// The file names cudarc tries, in order, when it opens this library (duplicates removed).
    pub fn candidates(self) -> Vec<String> {
        let mut names = cudarc::get_lib_name_candidates(self.base_name());
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }

    /// Whether cudarc can open this library. Opens it and closes it again; never panics.
    pub fn is_present(self) -> bool {
        // SAFETY: `is_culib_present` only tries `dlopen` on each candidate name and closes what
        // it opened; loading NVIDIA's libraries runs their initialisers, which have no
        // preconditions on our side.
        unsafe {
            match self {
                CudaLibrary::Driver => cudarc::driver::sys::is_culib_present(),
                CudaLibrary::Nvrtc => cudarc::nvrtc::sys::is_culib_present(),
                CudaLibrary::Cublas => cudarc::cublas::sys::is_culib_present(),
            }
        }
    }
}

impl fmt::Display for CudaLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lib{}", self.base_name())
    }
}

/// Everything that can go wrong in mulki-cuda.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// A CUDA shared library could not be opened.
    #[error(
        "CUDA library {library} not found ({}): none of [{}] could be loaded; install it or add \
         its directory to LD_LIBRARY_PATH",
        library.description(),
        candidates.join(", ")
    )]
    LibraryMissing {
        library: CudaLibrary,
        /// The file names that were tried.
        candidates: Vec<String>,
    },
    /// The driver loaded but reports no CUDA device.
    #[error("the CUDA driver is installed but reports no CUDA device")]
    NoDevice,
    /// NVRTC rejected the kernel sources (the log names the file and line).
    #[error("NVRTC could not compile mulki's CUDA kernels: {0}")]
    Compile(String),
    /// A cuBLAS call failed.
    #[error("cuBLAS call {call} failed: {reason}")]
    Cublas { call: &'static str, reason: String },
    /// A CUDA driver call failed.
    #[error("CUDA driver call {call} failed: {source}")]
    Driver {
        /// The driver function, e.g. `cuInit`.
        call: &'static str,
        source: DriverError,
    },
}

impl CudaError {
    /// Whether the error only says that CUDA is not available on this machine (a library is
    /// missing, there is no device, or the `libcuda` found is the toolkit's link-time stub), as
    /// opposed to a CUDA installation that is broken.
    pub fn is_unavailable(&self) -> bool {
        use cudarc::driver::sys::CUresult;
        match self {
            CudaError::LibraryMissing { .. } | CudaError::NoDevice => true,
            CudaError::Compile(_) | CudaError::Cublas { .. } => false,
            CudaError::Driver { source, .. } => {
                matches!(source.0, CUresult::CUDA_ERROR_NO_DEVICE | CUresult::CUDA_ERROR_STUB_LIBRARY)
            }
        }
    }
}

impl From<CudaError> for mulki_core::Error {
    fn from(e: CudaError) -> Self {
        mulki_core::Error::Backend(e.to_string())
    }
}
