//! `--device`: which backend runs a session. `cpu`, or `cuda[:N][:bf16|:fast-bf16|:fp32][:graphs]`
//! (GPU N, default 0; tower GEMMs in bf16 by default, `fp32` for verification runs, see
//! [`Precision`]; `graphs` runs the work as CUDA graphs, see `mulki_cuda::graphs`).
use anyhow::Result;
use mulki_core::backend::Precision;

/// A parsed `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda { ordinal: usize, precision: Precision, graphs: bool },
}

/// The `--device` suffix that turns CUDA graphs on.
const GRAPHS: &str = "graphs";

impl Device {
    pub fn parse(s: &str) -> Result<Device> {
        let mut parts = s.split(':');
        let bad = || {
            anyhow::anyhow!(
                "device `{s}`: expected `cpu` or `cuda[:N][:bf16|:fast-bf16|:fp32][:graphs]`, e.g. `cuda:0`"
            )
        };
        match parts.next() {
            Some("cpu") if parts.next().is_none() => Ok(Device::Cpu),
            Some("cuda") => {
                let (mut ordinal, mut precision, mut graphs) = (0, Precision::Bf16, false);
                // Each part in its place: the ordinal first, then the precision, then `graphs`.
                let mut next = 0;
                for p in parts {
                    let place = match (p.parse::<usize>(), Precision::from_name(p)) {
                        (Ok(n), _) if next == 0 => {
                            ordinal = n;
                            1
                        }
                        (_, Some(named)) if next <= 1 => {
                            precision = named;
                            2
                        }
                        _ if p == GRAPHS && !graphs => {
                            graphs = true;
                            3
                        }
                        _ => return Err(bad()),
                    };
                    next = place;
                }
                Ok(Device::Cuda { ordinal, precision, graphs })
            }
            _ => Err(bad()),
        }
    }

    /// Label for run.json and reports.
    pub fn label(self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Cuda { ordinal, precision, graphs } => {
                let suffix = if graphs { format!(":{GRAPHS}") } else { String::new() };
                format!("cuda:{ordinal}:{}{suffix}", precision.name())
            }
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

/// The CUDA backend of `--device cuda:ORDINAL[:PRECISION][:graphs]`.
#[cfg(feature = "cuda")]
pub fn cuda_backend(ordinal: usize, precision: Precision, graphs: bool) -> Result<mulki_cuda::CudaBackend> {
    Ok(if graphs {
        mulki_cuda::CudaBackend::with_graphs(ordinal, precision)?
    } else {
        mulki_cuda::CudaBackend::new(ordinal, precision)?
    })
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
            $crate::run::device::Device::Cuda { ordinal, precision, graphs } => {
                let $be = $crate::run::device::cuda_backend(ordinal, precision, graphs)?;
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
        let cuda = |ordinal, precision| Device::Cuda { ordinal, precision, graphs: false };
        let graphed = |ordinal, precision| Device::Cuda { ordinal, precision, graphs: true };
        assert_eq!(Device::parse("cuda").unwrap(), cuda(0, Precision::Bf16));
        assert_eq!(Device::parse("cuda:1").unwrap(), cuda(1, Precision::Bf16));
        assert_eq!(Device::parse("cuda:fp32").unwrap(), cuda(0, Precision::Fp32));
        assert_eq!(Device::parse("cuda:2:fp32").unwrap(), cuda(2, Precision::Fp32));
        assert_eq!(Device::parse("cuda:3:fast-bf16").unwrap(), cuda(3, Precision::FastBf16));
        assert_eq!(Device::parse("cuda:graphs").unwrap(), graphed(0, Precision::Bf16));
        assert_eq!(Device::parse("cuda:1:graphs").unwrap(), graphed(1, Precision::Bf16));
        assert_eq!(Device::parse("cuda:fp32:graphs").unwrap(), graphed(0, Precision::Fp32));
        assert_eq!(Device::parse("cuda:2:bf16:graphs").unwrap(), graphed(2, Precision::Bf16));
        for p in Precision::ALL {
            for d in [cuda(4, p), graphed(4, p)] {
                assert_eq!(Device::parse(&d.label()).unwrap(), d, "label of {d:?} parses back");
            }
        }
        for bad in [
            "",
            "gpu",
            "cpu:0",
            "cuda:x",
            "cuda:0:fp16",
            "cuda:0:fp32:1",
            "cuda:fp32:0",
            "cuda:graphs:0",
            "cuda:graphs:fp32",
            "cuda:0:graphs:graphs",
            "cuda:0:fp32:bf16",
        ] {
            let e = Device::parse(bad).unwrap_err().to_string();
            assert!(e.contains("cuda[:N]"), "{bad}: {e}");
        }
    }
}
