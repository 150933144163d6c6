//! `mulki bench cpu`: FMA peak, GEMM GFLOP/s, ViT-B/16 forward and tiny-model training-step
//! throughput, printed beside the same workloads in PyTorch (`bench/torch_cpu.py`) with the
//! same thread count, and their ratio.
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use mulki_core::backend::{Backend, Buf, Gemm};
use mulki_core::clip::init::init_params;
use mulki_core::clip::{Capacity, Clip, ClipConfig, VisionConfig};
use mulki_core::cpu::CpuBackend;
use mulki_core::loss::base::Terms;
use mulki_core::loss::contrastive::Contrastive;
use mulki_core::optim::{AdamWConfig, Optimizer};
use mulki_core::rng::Rng;

use crate::cli::BenchCpuArgs;

const TORCH_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/torch_cpu.py");

fn secs_per_iter(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let t0 = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    Ok(t0.elapsed().as_secs_f64() / iters as f64)
}

fn gemm_gflops(threads: usize, n: usize) -> Result<f64> {
    let mut be = CpuBackend::<f32>::new(threads);
    let mut rng = Rng::new(1);
    let mut buf = |be: &mut CpuBackend<f32>, fill: bool| -> Result<Buf> {
        let a = be.alloc(n * n)?;
        let b = Buf { arena: a, offset: 0, len: n * n };
        if fill {
            be.write(b, &(0..n * n).map(|_| rng.normal() as f32).collect::<Vec<_>>())?;
        }
        Ok(b)
    };
    let (x, y, z) = (buf(&mut be, true)?, buf(&mut be, true)?, buf(&mut be, false)?);
    let sec = secs_per_iter(5, || Ok(be.gemm(z, x, y, Gemm::new(n, n, n, false, false, 1.0, 0.0))?))?;
    Ok(2.0 * (n as f64).powi(3) / sec / 1e9)
}

/// ViT-B/16 as in `openai/clip-vit-base-patch16` (random weights: speed does not depend on them).
fn vit_b16() -> ClipConfig {
    ClipConfig { vision_config: VisionConfig { patch_size: 16, ..VisionConfig::default() }, ..ClipConfig::default() }
}

fn vit_forward(threads: usize, batch: usize, iters: usize) -> Result<f64> {
    let cfg = vit_b16();
    let mut be = CpuBackend::<f32>::new(threads);
    let mut clip = Clip::new(&mut be, &cfg, Capacity { images: batch, texts: 1 })?;
    be.write(clip.params(), &init_params::<f32>(&cfg, &clip.layout, 1))?;
    let mut rng = Rng::new(2);
    let px: Vec<f32> = (0..clip.pixels(batch)?.len).map(|_| rng.normal() as f32).collect();
    be.write(clip.pixels(batch)?, &px)?;
    let sec = secs_per_iter(iters, || {
        clip.encode_image(&mut be, batch)?;
        Ok(())
    })?;
    Ok(batch as f64 / sec)
}

fn tiny_step(threads: usize, b: usize, iters: usize) -> Result<f64> {
    let cfg = ClipConfig::tiny();
    let mut be = CpuBackend::<f32>::new(threads);
    let mut clip = Clip::new(&mut be, &cfg, Capacity { images: b, texts: b })?;
    be.write(clip.params(), &init_params::<f32>(&cfg, &clip.layout, 1))?;
    let mut rng = Rng::new(3);
    let px: Vec<f32> = (0..clip.pixels(b)?.len).map(|_| rng.normal() as f32).collect();
    let t = cfg.text_config.max_position_embeddings;
    let ids: Vec<u32> = (0..b * t)
        .map(|i| match i % t {
            0 => 62,
            j if j == t - 1 => 63,
            _ => 1 + rng.below(60) as u32,
        })
        .collect();
    let mut loss = Contrastive::new(&mut be, b, b, cfg.projection_dim)?;
    let mut opt = Optimizer::new(&mut be, clip.layout.len, AdamWConfig::default())?;
    let r = clip.layout.trainable();
    let (pbuf, gbuf) = (clip.params().slice(r.start, r.len()), clip.grads().slice(r.start, r.len()));
    let s = cfg.logit_scale_init_value.exp();
    let terms = Terms { contrastive: 1.0, labelled: 0.0, smoothing: 0.0 };
    let sec = secs_per_iter(iters, || {
        be.write(clip.pixels(b)?, &px)?;
        let v = clip.encode_image(&mut be, b)?;
        let w = clip.encode_text(&mut be, &ids, b, t)?;
        loss.forward(&mut be, v, w, b, b, s, &[], terms)?;
        clip.zero_grad(&mut be)?;
        loss.backward(&mut be, Some(clip.image_dout()), Some(clip.text_dout()), None)?;
        clip.backward_image(&mut be)?;
        clip.backward_text(&mut be)?;
        opt.step(&mut be, pbuf, gbuf, 1e-3)?;
        Ok(())
    })?;
    Ok(b as f64 / sec)
}

/// Measured f32 FMA peak: independent FMA chains on every thread, 16 wide with AVX-512F, 8 wide
/// with AVX2+FMA, or a scalar `mul_add` estimate where neither exists. (matrixmultiply's
/// kernels use AVX2+FMA at most, so on an AVX-512 machine the GEMM row compares against a peak
/// it cannot reach.)
fn fma_peak(threads: usize) -> f64 {
    const ITERS: u64 = 50_000_000;
    let t0 = Instant::now();
    let flops: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| fma_chains(ITERS))).collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    flops as f64 / t0.elapsed().as_secs_f64() / 1e9
}

#[cfg(target_arch = "x86_64")]
fn fma_chains(iters: u64) -> u64 {
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just detected.
        unsafe { fma_avx512(iters) }
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        unsafe { fma_avx2(iters) }
    } else {
        fma_scalar(iters)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_chains(iters: u64) -> u64 {
    fma_scalar(iters)
}

/// Twelve independent accumulators in named locals (an array can be kept in memory, which
/// makes the chains store-forwarding bound), enough to cover FMA latency on two ports.
macro_rules! fma_kernel {
    ($iters:expr, $set1:ident, $fmadd:ident, $add:ident, $lanes:expr, $reduce:expr) => {{
        let (a, b) = ($set1(0.999_999), $set1(1e-7));
        let (mut x0, mut x1, mut x2, mut x3) = ($set1(1.0), $set1(1.0), $set1(1.0), $set1(1.0));
        let (mut x4, mut x5, mut x6, mut x7) = ($set1(1.0), $set1(1.0), $set1(1.0), $set1(1.0));
        let (mut x8, mut x9, mut x10, mut x11) = ($set1(1.0), $set1(1.0), $set1(1.0), $set1(1.0));
        for _ in 0..$iters / 12 {
            x0 = $fmadd(x0, a, b);
            x1 = $fmadd(x1, a, b);
            x2 = $fmadd(x2, a, b);
            x3 = $fmadd(x3, a, b);
            x4 = $fmadd(x4, a, b);
            x5 = $fmadd(x5, a, b);
            x6 = $fmadd(x6, a, b);
            x7 = $fmadd(x7, a, b);
            x8 = $fmadd(x8, a, b);
            x9 = $fmadd(x9, a, b);
            x10 = $fmadd(x10, a, b);
            x11 = $fmadd(x11, a, b);
        }
        let s = $add($add($add(x0, x1), $add(x2, x3)), $add($add(x4, x5), $add(x6, x7)));
        let s = $add(s, $add($add(x8, x9), $add(x10, x11)));
        std::hint::black_box($reduce(s));
        ($iters / 12) * 12 * $lanes * 2
    }};
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> u64 {
    use std::arch::x86_64::*;
    fma_kernel!(iters, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, 8, |s: __m256| {
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> u64 {
    use std::arch::x86_64::*;
    fma_kernel!(iters, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, 16, |s: __m512| _mm512_reduce_add_ps(s))
}

fn fma_scalar(iters: u64) -> u64 {
    let mut acc = [1.0f32; 8];
    for _ in 0..iters / 8 {
        for x in acc.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    (iters / 8) * 8 * 2
}

/// The widest FMA the CPU offers, for the report.
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return "AVX-512F";
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return "AVX2+FMA";
        }
    }
    "scalar"
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn torch_column(args: &BenchCpuArgs, threads: usize) -> Result<serde_json::Value, String> {
    if args.no_torch {
        return Err("skipped (--no-torch)".into());
    }
    let out = Command::new(&args.python)
        .arg(TORCH_SCRIPT)
        .args(["--threads", &threads.to_string(), "--vit-batch", &args.vit_batch.to_string()])
        .args(["--tiny-batch", &args.tiny_batch.to_string(), "--gemm-n", &args.gemm_n.to_string()])
        .args(["--iters", &args.iters.to_string()])
        .output()
        .map_err(|e| format!("skipped: cannot run {}: {e}", args.python))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!("skipped: {} {TORCH_SCRIPT} failed ({last})", args.python));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("skipped: unreadable output: {e}"))
}

pub fn run_cpu(args: &BenchCpuArgs) -> Result<()> {
    let threads = super::threads(args.threads);
    println!("mulki bench cpu: {} ({} threads)", cpu_name(), threads);
    let peak = fma_peak(threads);
    println!("measured f32 FMA peak: {peak:.1} GFLOP/s ({})", simd_level());
    let gemm = gemm_gflops(threads, args.gemm_n).context("GEMM benchmark")?;
    let vit = vit_forward(threads, args.vit_batch, args.iters).context("ViT-B/16 benchmark")?;
    let tiny = tiny_step(threads, args.tiny_batch, args.iters * 10).context("tiny training benchmark")?;
    let torch = torch_column(args, threads);
    let get = |k: &str| torch.as_ref().ok().and_then(|v| v.get(k)).and_then(|v| v.as_f64());
    println!();
    println!("{:<40} {:>12} {:>12} {:>14}", "workload", "mulki", "PyTorch", "mulki/PyTorch");
    let rows = [
        (format!("GEMM {0}x{0}x{0} f32, GFLOP/s", args.gemm_n), gemm, get("gemm_gflops")),
        (format!("ViT-B/16 forward, batch {}, images/s", args.vit_batch), vit, get("vit_fwd_img_s")),
        (format!("tiny train step, batch {}, images/s", args.tiny_batch), tiny, get("tiny_step_img_s")),
    ];
    for (name, ours, theirs) in rows {
        let (t, r) = match theirs {
            Some(t) => (format!("{t:.2}"), format!("{:.2}", ours / t)),
            None => ("-".into(), "-".into()),
        };
        println!("{name:<40} {ours:>12.2} {t:>12} {r:>14}");
    }
    println!("GEMM efficiency: {:.0}% of the measured FMA peak", 100.0 * gemm / peak);
    match &torch {
        Ok(v) => println!("PyTorch {} with {} threads", v["torch"].as_str().unwrap_or("?"), v["threads"]),
        Err(msg) => println!("PyTorch column {msg}"),
    }
    if let Some(e) = torch.as_ref().ok().and_then(|v| v.get("error")).and_then(|v| v.as_str()) {
        println!("PyTorch partial: {e}");
    }
    Ok(())
}
