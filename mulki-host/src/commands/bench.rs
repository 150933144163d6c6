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
        let b = Buf {
            arena: a,
            offset: 0,
            len: n * n,
        };
        if fill {
            be.write(
                b,
                &(0..n * n).map(|_| rng.normal() as f32).collect::<Vec<_>>(),
            )?;
        }
        Ok(b)
    };
    let (x, y, z) = (
        buf(&mut be, true)?,
        buf(&mut be, true)?,
        buf(&mut be, false)?,
    );
    let sec = secs_per_iter(5, || {
        Ok(be.gemm(z, x, y, Gemm::new(n, n, n, false, false, 1.0, 0.0))?)
    })?;
    Ok(2.0 * (n as f64).powi(3) / sec / 1e9)
}

/// ViT-B/16 as in `openai/clip-vit-base-patch16` (random weights: speed does not depend on them).
fn vit_b16() -> ClipConfig {
    ClipConfig {
        vision_config: VisionConfig {
            patch_size: 16,
            ..VisionConfig::default()
        },
        ..ClipConfig::default()
    }
}

fn vit_forward(threads: usize, batch: usize, iters: usize) -> Result<f64> {
    let cfg = vit_b16();
    let mut be = CpuBackend::<f32>::new(threads);
    let mut clip = Clip::new(
        &mut be,
        &cfg,
        Capacity {
            images: batch,
            texts: 1,
        },
    )?;
    be.write(clip.params(), &init_params::<f32>(&cfg, &clip.layout, 1))?;
    let mut rng = Rng::new(2);
    let px: Vec<f32> = (0..clip.pixels(batch)?.len)
        .map(|_| rng.normal() as f32)
        .collect();
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
    let mut clip = Clip::new(
        &mut be,
        &cfg,
        Capacity {
            images: b,
            texts: b,
        },
    )?;
    be.write(clip.params(), &init_params::<f32>(&cfg, &clip.layout, 1))?;
    let mut rng = Rng::new(3);
    let px: Vec<f32> = (0..clip.pixels(b)?.len)
        .map(|_| rng.normal() as f32)
        .collect();
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
    let (pbuf, gbuf) = (
        clip.params().slice(r.start, r.len()),
        clip.grads().slice(r.start, r.len()),
    );
    let s = cfg.logit_scale_init_value.exp();
    let terms = Terms {
        contrastive: 1.0,
        labelled: 0.0,
        smoothing: 0.0,
    };
    let sec = secs_per_iter(iters, || {
        be.write(clip.pixels(b)?, &px)?;
        let v = clip.encode_image(&mut be, b)?;
        let w = clip.encode_text(&mut be, &ids, b, t)?;
        loss.forward(&mut be, v, w, b, b, s, &[], terms)?;
        clip.zero_grad(&mut be)?;
        loss.backward(
            &mut be,
            Some(clip.image_dout()),
            Some(clip.text_dout()),
            None,
        )?;
        clip.backward_image(&mut be)?;
        clip.backward_text(&mut be)?;
        opt.step(&mut be, pbuf, gbuf, 1e-3)?;
        Ok(())
    })?;
    Ok(b as f64 / sec)
}

/// Measured f32 FMA peak: independent 8-wide FMA chains on every thread (AVX2+FMA), or a
/// scalar `mul_add` estimate where those are missing.
fn fma_peak(threads: usize) -> f64 {
    const ITERS: u64 = 50_000_000;
    let t0 = Instant::now();
    let flops: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| fma_chains(ITERS)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    flops as f64 / t0.elapsed().as_secs_f64() / 1e9
}

#[cfg(target_arch = "x86_64")]
fn fma_chains(iters: u64) -> u64 {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> u64 {
    use std::arch::x86_64::*;
    // 10 independent accumulators hide the 4–5 cycle FMA latency on two ports.
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 10];
    for _ in 0..iters / 10 {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut sink = [0f32; 8];
    let mut sum = _mm256_setzero_ps();
    for x in acc {
        sum = _mm256_add_ps(sum, x);
    }
    _mm256_storeu_ps(sink.as_mut_ptr(), sum);
    std::hint::black_box(sink);
    (iters / 10) * 10 * 8 * 2
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
        .args([
            "--threads",
            &threads.to_string(),
            "--vit-batch",
            &args.vit_batch.to_string(),
        ])
        .args([
            "--tiny-batch",
            &args.tiny_batch.to_string(),
            "--gemm-n",
            &args.gemm_n.to_string(),
        ])
        .args(["--iters", &args.iters.to_string()])
        .output()
        .map_err(|e| format!("skipped: cannot run {}: {e}", args.python))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!(
            "skipped: {} {TORCH_SCRIPT} failed ({last})",
            args.python
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("skipped: unreadable output: {e}"))
}

pub fn run_cpu(args: &BenchCpuArgs) -> Result<()> {
    let threads = super::threads(args.threads);
    println!("mulki bench cpu: {} ({} threads)", cpu_name(), threads);
    let peak = fma_peak(threads);
    println!("measured f32 FMA peak: {peak:.1} GFLOP/s");
    let gemm = gemm_gflops(threads, args.gemm_n).context("GEMM benchmark")?;
    let vit = vit_forward(threads, args.vit_batch, args.iters).context("ViT-B/16 benchmark")?;
    let tiny =
        tiny_step(threads, args.tiny_batch, args.iters * 10).context("tiny training benchmark")?;
    let torch = torch_column(args, threads);
    let get = |k: &str| {
        torch
            .as_ref()
            .ok()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_f64())
    };
    println!();
    println!(
        "{:<40} {:>12} {:>12} {:>14}",
        "workload", "mulki", "PyTorch", "mulki/PyTorch"
    );
    let rows = [
        (
            format!("GEMM {0}x{0}x{0} f32, GFLOP/s", args.gemm_n),
            gemm,
            get("gemm_gflops"),
        ),
        (
            format!("ViT-B/16 forward, batch {}, images/s", args.vit_batch),
            vit,
            get("vit_fwd_img_s"),
        ),
        (
            format!("tiny train step, batch {}, images/s", args.tiny_batch),
            tiny,
            get("tiny_step_img_s"),
        ),
    ];
    for (name, ours, theirs) in rows {
        let (t, r) = match theirs {
            Some(t) => (format!("{t:.2}"), format!("{:.2}", ours / t)),
            None => ("-".into(), "-".into()),
        };
        println!("{name:<40} {ours:>12.2} {t:>12} {r:>14}");
    }
    println!(
        "GEMM efficiency: {:.0}% of the measured FMA peak",
        100.0 * gemm / peak
    );
    match &torch {
        Ok(v) => println!(
            "PyTorch {} with {} threads",
            v["torch"].as_str().unwrap_or("?"),
            v["threads"]
        ),
        Err(msg) => println!("PyTorch column {msg}"),
    }
    if let Some(e) = torch
        .as_ref()
        .ok()
        .and_then(|v| v.get("error"))
        .and_then(|v| v.as_str())
    {
        println!("PyTorch partial: {e}");
    }
    Ok(())
}
