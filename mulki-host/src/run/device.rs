//! `--device`: which backend runs a session. `cpu`, or `cuda[:N][:bf16|:fp32]` (GPU N, default
//! 0; tower GEMMs in bf16 by default, `fp32` for verification runs).
use anyhow::Result;

/// A parsed `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda { ordinal: usize, bf16: bool },
}

impl Device {
    pub fn parse(s: &str) -> Result<Device> {
        let mut parts = s.split(':');
        let bad = || anyhow::anyhow!("device `{s}`: expected `cpu` or `cuda[:N][:bf16|:fp32]`, e.g. `cuda:0`");
        match parts.next() {
            Some("cpu") if parts.next().is_none() => Ok(Device::Cpu),
            Some("cuda") => {
                let (mut ordinal, mut bf16) = (0, true);
                for (i, p) in parts.enumerate() {
                    match (i, p) {
                        (0, n) if n.parse::<usize>().is_ok() => ordinal = n.parse().map_err(|_| bad())?,
                        (0 | 1, "bf16") => bf16 = true,
                        (0 | 1, "fp32") => bf16 = false,
                        _ => return Err(bad()),
                    }
                }
                Ok(Device::Cuda { ordinal, bf16 })
            }
            _ => Err(bad()),
        }
    }

    /// Label for run.json and reports.
    pub fn label(self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Cuda { ordinal, bf16 } => format!("cuda:{ordinal}:{}", if bf16 { "bf16" } else { "fp32" }),
        }
    }

    /// What a rerun of the same config reproduces on this device.
    pub fn determinism(self) -> &'static str {
        match self {
            Device::Cpu => "cpu: bit-identical for a given seed and config, whatever --threads",
            Device::Cuda { .. } => {
                "cuda: deterministic kernels (no atomics) on one stream; bit-identical on the same GPU model, \
                 driver and cuBLAS version"
            }
        }
    }
}

/// The CUDA backend of `--device cuda:ORDINAL[:bf16|:fp32]`.
#[cfg(feature = "cuda")]
pub fn cuda_backend(ordinal: usize, bf16: bool) -> Result<mulki_cuda::CudaBackend> {
    let precision = if bf16 { mulki_cuda::Precision::Bf16 } else { mulki_cuda::Precision::Fp32 };
    Ok(mulki_cuda::CudaBackend::new(ordinal, precision)?)
}

/// Evaluates `$body` with `$be` bound to the backend of `$device` (the body is compiled once per
/// backend type, so it may be generic code over `Backend<E = f32>`).
#[macro_export]
macro_rules! with_backend {
    ($device:expr, $threads:expr, $be:ident => $body:expr) => {
        match $device {
            $crate::run::device::Device::Cpu => {
                let $be = mulki_core::cpu::CpuBackend::<f32>::new($threads);
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::run::device::Device::Cuda { ordinal, bf16 } => {
                let $be = $crate::run::device::cuda_backend(ordinal, bf16)?;
                $body
            }
            #[cfg(not(feature = "cuda"))]
            $crate::run::device::Device::Cuda { .. } => {
                anyhow::bail!("this mulki was built without CUDA (cargo feature `cuda`, on by default)")
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::Device;

    #[test]
    fn parses_every_form_and_rejects_the_rest() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        assert_eq!(Device::parse("cuda").unwrap(), Device::Cuda { ordinal: 0, bf16: true });
        assert_eq!(Device::parse("cuda:1").unwrap(), Device::Cuda { ordinal: 1, bf16: true });
        assert_eq!(Device::parse("cuda:fp32").unwrap(), Device::Cuda { ordinal: 0, bf16: false });
        assert_eq!(Device::parse("cuda:2:fp32").unwrap(), Device::Cuda { ordinal: 2, bf16: false });
        for bad in ["", "gpu", "cpu:0", "cuda:x", "cuda:0:fp16", "cuda:0:fp32:1", "cuda:fp32:0"] {
            let e = Device::parse(bad).unwrap_err().to_string();
            assert!(e.contains("cuda[:N]"), "{bad}: {e}");
        }
    }
}
