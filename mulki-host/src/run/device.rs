//! `--device`: which backend runs a session. `cpu`, or `cuda[:N][:bf16|:fast-bf16|:fp32]` (GPU N,
//! default 0; tower GEMMs in bf16 by default, `fp32` for verification runs; see [`Precision`]).
use anyhow::Result;
use mulki_core::backend::Precision;

/// A parsed `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda { ordinal: usize, precision: Precision },
}

impl Device {
    pub fn parse(s: &str) -> Result<Device> {
        let mut parts = s.split(':');
        let bad =
            || anyhow::anyhow!("device `{s}`: expected `cpu` or `cuda[:N][:bf16|:fast-bf16|:fp32]`, e.g. `cuda:0`");
        match parts.next() {
            Some("cpu") if parts.next().is_none() => Ok(Device::Cpu),
            Some("cuda") => {
                let (mut ordinal, mut precision) = (0, Precision::Bf16);
                for (i, p) in parts.enumerate() {
                    match (i, p, Precision::from_name(p)) {
                        (0, n, _) if n.parse::<usize>().is_ok() => ordinal = n.parse().map_err(|_| bad())?,
                        (0 | 1, _, Some(named)) => precision = named,
                        _ => return Err(bad()),
                    }
                }
                Ok(Device::Cuda { ordinal, precision })
            }
            _ => Err(bad()),
        }
    }

    /// Label for run.json and reports.
    pub fn label(self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Cuda { ordinal, precision } => format!("cuda:{ordinal}:{}", precision.name()),
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

/// The CUDA backend of `--device cuda:ORDINAL[:PRECISION]`.
#[cfg(feature = "cuda")]
pub fn cuda_backend(ordinal: usize, precision: Precision) -> Result<mulki_cuda::CudaBackend> {
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
            $crate::run::device::Device::Cuda { ordinal, precision } => {
                let $be = $crate::run::device::cuda_backend(ordinal, precision)?;
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
    use super::{Device, Precision};

    #[test]
    fn parses_every_form_and_rejects_the_rest() {
        assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
        let cuda = |ordinal, precision| Device::Cuda { ordinal, precision };
        assert_eq!(Device::parse("cuda").unwrap(), cuda(0, Precision::Bf16));
        assert_eq!(Device::parse("cuda:1").unwrap(), cuda(1, Precision::Bf16));
        assert_eq!(Device::parse("cuda:fp32").unwrap(), cuda(0, Precision::Fp32));
        assert_eq!(Device::parse("cuda:2:fp32").unwrap(), cuda(2, Precision::Fp32));
        assert_eq!(Device::parse("cuda:3:fast-bf16").unwrap(), cuda(3, Precision::FastBf16));
        for p in Precision::ALL {
            assert_eq!(Device::parse(&cuda(4, p).label()).unwrap(), cuda(4, p), "label of {p:?} parses back");
        }
        for bad in ["", "gpu", "cpu:0", "cuda:x", "cuda:0:fp16", "cuda:0:fp32:1", "cuda:fp32:0"] {
            let e = Device::parse(bad).unwrap_err().to_string();
            assert!(e.contains("cuda[:N]"), "{bad}: {e}");
        }
    }
}
