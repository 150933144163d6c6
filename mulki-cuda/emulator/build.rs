//! Builds the stand-in libraries: `libcuda.so` (the driver, with mulki's kernels compiled as
//! C++), `libcublas.so` and `libnvrtc.so`, each with the SONAME that cudarc opens first.
//!
//! The kernel sources are read in the order `mulki-cuda/src/kernels.rs` concatenates them, and a
//! launcher is generated per `extern "C" __global__` kernel: it unpacks cuLaunchKernel's
//! parameter array by the kernel's own signature.
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(emulator)");
    // The stand-ins are ELF shared objects matched by SONAME: Linux only (as is CUDA here).
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo::rustc-cfg=emulator");
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cuda_src = here.join("../src");
    let cpp = here.join("cpp");
    println!("cargo:rerun-if-changed={}", cuda_src.join("kernels.rs").display());
    println!("cargo:rerun-if-changed={}", cuda_src.join("kernels").display());
    println!("cargo:rerun-if-changed={}", cpp.display());

    let order = fs::read_to_string(cuda_src.join("kernels.rs")).expect("read mulki-cuda/src/kernels.rs");
    let mut source = String::new();
    for file in order.split("include_str!(\"").skip(1).filter_map(|s| s.split('"').next()) {
        let text = fs::read_to_string(cuda_src.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
        writeln!(source, "// ---- {file}\n{text}").expect("write to String");
    }
    let mut dispatch = source.clone();
    let kernels = signatures(&source);
    assert!(!kernels.is_empty(), "no kernels found in the CUDA sources");
    for (name, params) in &kernels {
        let args: Vec<String> = params.iter().enumerate().map(|(i, ty)| format!("*({ty}*)p[{i}]")).collect();
        writeln!(dispatch, "static void launch_{name}(void** p) {{ {name}({}); }}", args.join(", "))
            .expect("write to String");
    }
    dispatch.push_str("static Kernel KERNELS[] = {\n");
    for (name, _) in &kernels {
        writeln!(dispatch, "    {{\"{name}\", launch_{name}, 0}},").expect("write to String");
    }
    dispatch.push_str("};\n");
    fs::write(out.join("dispatch.inc"), dispatch).expect("write dispatch.inc");

    for (lib, file) in [("libcuda.so", "driver.cpp"), ("libcublas.so", "cublas.cpp"), ("libnvrtc.so", "nvrtc.cpp")] {
        compile(&cpp.join(file), &out, lib);
    }
}

/// `(name, parameter types)` of every `extern "C" __global__ void` kernel in `src`.
fn signatures(src: &str) -> Vec<(String, Vec<String>)> {
    let mut v = Vec::new();
    for rest in src.split("extern \"C\" __global__ void ").skip(1) {
        let (name, rest) = rest.split_once('(').expect("kernel name followed by '('");
        let (params, _) = rest.split_once(')').expect("kernel parameters closed by ')'");
        let types = params
            .split(',')
            .map(|p| {
                // "const float* x" or "const float *x": the type is everything but the name.
                let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
                let cut = p.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).expect("a typed parameter");
                p[..=cut].trim().to_string()
            })
            .collect();
        v.push((name.trim().to_string(), types));
    }
    v
}

fn compile(file: &Path, out: &Path, lib: &str) {
    let cxx = env::var("CXX").unwrap_or_else(|_| "c++".into());
    let status = Command::new(&cxx)
        .args(["-std=c++17", "-O3", "-fPIC", "-shared", "-fvisibility=hidden", "-w"])
        .arg(format!("-I{}", file.parent().expect("cpp dir").display()))
        .arg(format!("-I{}", out.display()))
        .arg(format!("-Wl,-soname,{lib}"))
        .arg("-o")
        .arg(out.join(lib))
        .arg(file)
        .status()
        .unwrap_or_else(|e| panic!("run the C++ compiler `{cxx}` (set CXX to choose another): {e}"));
    assert!(status.success(), "`{cxx}` failed on {}", file.display());
}
