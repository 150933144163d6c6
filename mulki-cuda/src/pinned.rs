//! Page-locked host buffers, for copies that must not make the host wait for the device. A copy
//! between the device and pageable memory either returns when it is done (device to host) or
//! may wait for the stream to stage it (host to device); from page-locked memory both are
//! asynchronous. Each buffer carries the event recorded after its last copy, so the host waits
//! for that copy only, and only when it touches the buffer again.
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream, PinnedHostSlice};
use mulki_core::Error;

use crate::backend::driver;

pub(crate) struct Pinned {
    host: PinnedHostSlice<f32>,
    /// Elements in use (the last copy's length).
    len: usize,
    event: CudaEvent,
}

impl Pinned {
    /// A buffer of `len` elements (at least one).
    pub fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<Self, Error> {
        // SAFETY: the memory is written (by the host, or by a copy the host waits for) before it
        // is read.
        let host = unsafe { ctx.alloc_pinned_with_flags::<f32>(len.max(1), 0) }.map_err(driver("cuMemHostAlloc"))?;
        let event = ctx.new_event(None).map_err(driver("cuEventCreate"))?;
        Ok(Pinned { host, len: 0, event })
    }

    /// `slot`'s buffer, first replaced by one of at least `len` elements when it is smaller
    /// (dropping the old one waits for its last copy).
    pub fn ensure<'a>(
        slot: &'a mut Option<Pinned>, ctx: &Arc<CudaContext>, len: usize,
    ) -> Result<&'a mut Pinned, Error> {
        if !slot.as_ref().is_some_and(|p| p.fits(len)) {
            *slot = None;
            *slot = Some(Pinned::new(ctx, len)?);
        }
        slot.as_mut().ok_or(Error::Buffer { op: "pinned", reason: "no page-locked buffer" })
    }

    /// Whether `len` elements fit.
    pub fn fits(&self, len: usize) -> bool {
        self.host.len() >= len
    }

    /// Whether the last copy recorded on this buffer has finished (or none was).
    pub fn is_idle(&self) -> bool {
        self.event.is_complete()
    }

    /// Waits for the last copy recorded on this buffer.
    pub fn wait(&self) -> Result<(), Error> {
        self.event.synchronize().map_err(driver("cuEventSynchronize"))
    }

    /// The first `len` elements, for the host to fill or a copy to land in; call
    /// [`Pinned::wait`] first when the buffer may still be in a copy.
    pub fn slice_mut(&mut self, len: usize) -> Result<&mut [f32], Error> {
        self.len = len;
        let all = self.host.as_mut_slice().map_err(driver("cuEventSynchronize"))?;
        all.get_mut(..len).ok_or(Error::Buffer { op: "pinned", reason: "buffer shorter than the copy" })
    }

    /// The elements of the last copy, once it finished.
    pub fn contents(&self) -> Result<&[f32], Error> {
        self.wait()?;
        let all = self.host.as_slice().map_err(driver("cuEventSynchronize"))?;
        Ok(&all[..self.len])
    }

    /// Records the copy just queued on `stream`.
    pub fn record(&self, stream: &CudaStream) -> Result<(), Error> {
        self.event.record(stream).map_err(driver("cuEventRecord"))
    }
}

impl Drop for Pinned {
    /// The memory must outlive a copy still using it (freeing page-locked memory does not wait).
    fn drop(&mut self) {
        let _ = self.wait();
    }
}
