//! Every CUDA kernel compiles with NVRTC (no GPU needed, only libnvrtc). Without NVRTC the test
//! is skipped and says so, unless `MULKI_REQUIRE_NVRTC=1` (CI installs NVRTC and sets it), under
//! which a missing NVRTC fails: a kernel that does not compile must fail CI.
use mulki_cuda::kernels::{compile, source, NAMES};
use mulki_cuda::{CudaError, CudaLibrary};

fn required() -> bool {
    std::env::var("MULKI_REQUIRE_NVRTC").is_ok_and(|v| v == "1")
}

#[test]
fn every_kernel_compiles_for_each_architecture() {
    if !CudaLibrary::Nvrtc.is_present() {
        let msg = format!("libnvrtc not found (tried {})", CudaLibrary::Nvrtc.candidates().join(", "));
        assert!(!required(), "MULKI_REQUIRE_NVRTC=1 but {msg}");
        println!("skipped: {msg}");
        return;
    }
    // compute_75 is what `arch_for` gives a pre-Ampere card: the tensor-core kernels still compile
    // there (to a trap; the backend never launches them on one).
    for arch in ["compute_75", "compute_80", "compute_90"] {
        let ptx = match compile(arch) {
            Ok(p) => p.to_src(),
            Err(CudaError::Compile(log)) => panic!("kernels do not compile for {arch}:\n{log}"),
            Err(e) => panic!("{e}"),
        };
        for name in NAMES {
            assert!(ptx.contains(&format!(".entry {name}(")), "{arch}: kernel {name} missing from the PTX");
        }
    }
}

#[test]
fn names_list_exactly_the_kernels_of_the_sources() {
    let src = source();
    // The name follows `void`, or `void __launch_bounds__(...)`.
    let defined: Vec<&str> = src
        .split("extern \"C\" __global__ void ")
        .skip(1)
        .map(|rest| rest.strip_prefix("__launch_bounds__(").and_then(|b| b.split_once(')')).map_or(rest, |(_, r)| r))
        .filter_map(|rest| rest.trim_start().split('(').next())
        .collect();
    let mut a = defined.clone();
    let mut b = NAMES.to_vec();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "kernels::NAMES and the .cu sources disagree");
}
