//! `probe()` on whatever machine runs the tests: without CUDA it must return an error naming what
//! is missing (not panic), and the test is skipped; with CUDA, device 0 must be listed.
use mulki_cuda::{probe, CudaError};

#[test]
fn probe_finds_device_0_or_skips() {
    let info = match probe() {
        Ok(info) => info,
        Err(e) if e.is_unavailable() => {
            println!("skipped: {e}");
            return;
        }
        Err(e) => panic!("CUDA is installed but broken: {e}"),
    };
    println!("CUDA driver {}.{}", info.driver_version.0, info.driver_version.1);
    for d in &info.devices {
        println!(
            "device {}: {} (sm_{}{}, {} MiB)",
            d.ordinal,
            d.name,
            d.compute_capability.0,
            d.compute_capability.1,
            d.total_mem >> 20
        );
    }
    assert!(info.device_count() >= 1);
    let d0 = &info.devices[0];
    assert_eq!(d0.ordinal, 0);
    assert!(!d0.name.is_empty(), "device 0 has no name");
    assert!(d0.compute_capability.0 >= 1);
    assert!(d0.total_mem > 0);
}

#[test]
fn missing_library_error_names_the_library() {
    let e = CudaError::LibraryMissing {
        library: mulki_cuda::CudaLibrary::Nvrtc,
        candidates: mulki_cuda::CudaLibrary::Nvrtc.candidates(),
    };
    let msg = e.to_string();
    assert!(msg.contains("libnvrtc"), "{msg}");
    assert!(msg.contains("NVRTC"), "{msg}");
    assert!(e.is_unavailable());
    let core: mulki_core::Error = e.into();
    assert!(matches!(core, mulki_core::Error::Backend(ref m) if m.contains("libnvrtc")));
}
