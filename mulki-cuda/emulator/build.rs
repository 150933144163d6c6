//! Builds the stand-in libraries: `libcuda.so` (the driver, with mulki's kernels compiled as
//! C++), `libcublas.so` and `libnvrtc.so`, each with the SONAME that cudarc opens first.
//!
//! The kernel sources are read in the order `mulki-cuda/src/kernels.rs` concatenates them, and a
//! launcher is generated per `extern "C" __global__` kernel: it unpacks cuLaunchKernel's
//! parameter array by the kernel's own signature, and a table of the parameters' sizes lets a
//! captured launch keep copies of their values.
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
    // The parsers below read kernels without `__launch_bounds__(...)` (which the prelude
    // defines away for the compiler).
    let source = without_launch_bounds(&source);
    let kernels = signatures(&source);
    assert!(!kernels.is_empty(), "no kernels found in the CUDA sources");
    for (name, params) in &kernels {
        let args: Vec<String> = params.iter().enumerate().map(|(i, ty)| format!("*({ty}*)p[{i}]")).collect();
        writeln!(dispatch, "static void launch_{name}(void** p) {{ {name}({}); }}", args.join(", "))
            .expect("write to String");
    }
    // Each parameter's size, alignment and whether it is a pointer, by the kernel's signature:
    // a captured launch copies the parameter values (cuLaunchKernel's array points at them).
    for (name, params) in &kernels {
        let infos: Vec<String> =
            params.iter().map(|ty| format!("{{sizeof({ty}), alignof({ty}), std::is_pointer<{ty}>::value}}")).collect();
        writeln!(dispatch, "static const Param params_{name}[] = {{{}}};", infos.join(", ")).expect("write to String");
    }
    let syncing = syncing_functions(&source);
    dispatch.push_str("static Kernel KERNELS[] = {\n");
    for (name, params) in &kernels {
        let syncs = syncing.iter().any(|f| f == name);
        let n = params.len();
        writeln!(dispatch, "    {{\"{name}\", launch_{name}, {syncs}, params_{name}, {n}}},").expect("write to String");
    }
    dispatch.push_str("};\n");
    fs::write(out.join("dispatch.inc"), dispatch).expect("write dispatch.inc");

    for (lib, file) in [("libcuda.so", "driver.cpp"), ("libcublas.so", "cublas.cpp"), ("libnvrtc.so", "nvrtc.cpp")] {
        compile(&cpp.join(file), &out, lib);
    }
}

/// `src` with every `__launch_bounds__(...) ` removed.
fn without_launch_bounds(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(at) = rest.find("__launch_bounds__(") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        rest = after.find(')').map_or("", |close| after[close + 1..].trim_start());
    }
    out.push_str(rest);
    out
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

/// Names of the functions (kernels and `__device__` helpers) that reach `__syncthreads` or a
/// warp shuffle, directly or through a call: their threads must run as fibers. The others run
/// as plain calls, thread after thread.
fn syncing_functions(src: &str) -> Vec<String> {
    let mut bodies: Vec<(String, &str)> = Vec::new();
    for qualifier in ["__device__ ", "__global__ "] {
        let mut rest = src;
        while let Some(at) = rest.find(qualifier) {
            rest = &rest[at + qualifier.len()..];
            let Some(open) = rest.find('(') else { break };
            let name: String = rest[..open]
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let Some(close) = rest[open..].find(')').map(|i| open + i) else { break };
            let after = rest[close + 1..].trim_start();
            if !after.starts_with('{') {
                continue; // a declaration
            }
            let mut depth = 0usize;
            let mut end = after.len();
            for (i, c) in after.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            bodies.push((name, &after[..end]));
        }
    }
    let calls = |body: &str, f: &str| {
        body.match_indices(f).any(|(i, _)| {
            let before = body[..i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            // a call, possibly of a template instance: `f(` or `f<...>(`
            let after = body[i + f.len()..].trim_start();
            let after = if after.starts_with('<') { after.split_once('>').map_or(after, |(_, a)| a) } else { after };
            before && after.trim_start().starts_with('(')
        })
    };
    let mut syncing: Vec<String> = vec!["__syncthreads".into(), "__shfl_xor_sync".into(), "mma_bf16".into()];
    loop {
        let before = syncing.len();
        for (name, body) in &bodies {
            if !syncing.contains(name) && syncing.iter().any(|f| calls(body, f)) {
                syncing.push(name.clone());
            }
        }
        if syncing.len() == before {
            return syncing;
        }
    }
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
