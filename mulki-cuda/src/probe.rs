//! Finding CUDA: which libraries load, which devices the driver sees.
//!
//! cudarc opens a library on the first call into it and panics if it is absent; [`probe()`]
//! checks each library first, so a machine without CUDA gets a [`CudaError`] instead.
use cudarc::driver::{result, sys, CudaContext};

use crate::error::{CudaError, CudaLibrary};

/// One CUDA device, as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The device ordinal (`CUDA_VISIBLE_DEVICES` applies).
    pub ordinal: usize,
    /// e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Compute capability, `(major, minor)`, e.g. `(9, 0)`.
    pub compute_capability: (i32, i32),
    /// Device memory in bytes.
    pub total_mem: usize,
}

/// What [`probe()`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The CUDA version the driver supports, `(major, minor)`, e.g. `(13, 0)`.
    pub driver_version: (u32, u32),
    /// The visible devices, by ordinal; never empty.
    pub devices: Vec<Device>,
}

impl DeviceInfo {
    /// The number of visible devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }
}

fn driver_err(call: &'static str) -> impl FnOnce(result::DriverError) -> CudaError {
    move |source| CudaError::Driver { call, source }
}

/// Checks that the CUDA driver, NVRTC and cuBLAS can be opened (in that order, before any use),
/// then lists the devices through the driver.
///
/// Never panics on a machine without CUDA: a missing library gives
/// [`CudaError::LibraryMissing`] naming it, no device gives [`CudaError::NoDevice`] (see
/// [`CudaError::is_unavailable`]). Creates no CUDA context.
pub fn probe() -> Result<DeviceInfo, CudaError> {
    for library in CudaLibrary::ALL {
        if !library.is_present() {
            return Err(CudaError::LibraryMissing { library, candidates: library.candidates() });
        }
    }

    // `device_count` runs `cuInit` first.
    let count = match CudaContext::device_count() {
        Ok(n) => n,
        Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE => return Err(CudaError::NoDevice),
        Err(e) => return Err(driver_err("cuInit/cuDeviceGetCount")(e)),
    };
    if count <= 0 {
        return Err(CudaError::NoDevice);
    }

    let mut version = 0;
    // SAFETY: the driver is loaded and initialised; `version` is a valid out-pointer.
    unsafe { sys::cuDriverGetVersion(&mut version) }.result().map_err(driver_err("cuDriverGetVersion"))?;
    let driver_version = ((version / 1000) as u32, ((version % 1000) / 10) as u32);

    let devices = (0..count)
        .map(|ordinal| {
            let dev = result::device::get(ordinal).map_err(driver_err("cuDeviceGet"))?;
            let name = result::device::get_name(dev).map_err(driver_err("cuDeviceGetName"))?;
            let attr = |a| {
                // SAFETY: `dev` was returned by `cuDeviceGet`.
                unsafe { result::device::get_attribute(dev, a) }.map_err(driver_err("cuDeviceGetAttribute"))
            };
            use sys::CUdevice_attribute::*;
            let compute_capability = (
                attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
                attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
            );
            // SAFETY: `dev` was returned by `cuDeviceGet`.
            let total_mem = unsafe { result::device::total_mem(dev) }.map_err(driver_err("cuDeviceTotalMem"))?;
            Ok(Device { ordinal: ordinal as usize, name, compute_capability, total_mem })
        })
        .collect::<Result<Vec<_>, CudaError>>()?;

    Ok(DeviceInfo { driver_version, devices })
}
