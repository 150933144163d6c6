//! [`CudaBackend`]: the [`Backend`] trait on one GPU, one stream.
//!
//! Arenas are single device allocations (f32, or u32 for indices) made once when a run is
//! built; kernels get raw device pointers `base + offset`, after the same bounds and overlap
//! checks as the CPU backend. Index arenas keep a host mirror (they are written from the host
//! only), which lets the backend check ids and group scatter-adds without reading the device.
//! Scratch buffers grow on first need and are then reused, so device memory is constant across
//! tasks once the largest shapes have run.
//!
//! Precision: [`Precision::Fp32`] runs every GEMM in f32 (cuBLAS `CUBLAS_COMPUTE_32F`, no TF32);
//! [`Precision::Bf16`] rounds the operands of the towers' GEMMs ([`Gemm::low_precision`]) to
//! bf16 and accumulates in f32: an arena operand once until it is written again (see
//! `crate::rounded`), attention's operands inside the kernels that produce them;
//! [`Precision::FastBf16`] passes the f32 operands to cuBLAS with
//! `CUBLAS_COMPUTE_32F_FAST_16BF`, which rounds them inside the GEMM. Master
//! weights, optimiser state, normalisation, the similarity GEMMs and every loss kernel stay f32
//! in every mode.
use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{result, CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};
use mulki_core::backend::{
    check_ids, AdamW, ArenaId, Attn, Backend, Bcast, Buf, Ce, Gemm, IdxBuf, Patches, Precision, Rows, WeightRule,
};
use mulki_core::clip::config::HiddenAct;
use mulki_core::Error;

use crate::error::CudaError;
use crate::graphs::{GraphUse, Graphs};
use crate::kernels::Kernels;
use crate::pinned::Pinned;
use crate::rounded::{Form, Placed, PoolUse, Rounded};

/// Threads per block of the row kernels and the elementwise kernels.
const ROW_THREADS: u32 = 256;
const ELEM_THREADS: u32 = 256;
/// Elements of a long row summed by one block of the two-pass row dot product.
const LONG_ROW_CHUNK: usize = 1 << 16;
/// Row chunks of the two-pass column sums.
const COLUMN_CHUNKS: usize = 64;

/// A device allocation and its element count.
struct Arena<T> {
    /// Owns the allocation (freed on drop); kernels use `base`.
    _mem: CudaSlice<T>,
    base: u64,
    len: usize,
}

/// Scratch slots, each grown on demand.
#[derive(Clone, Copy)]
enum Slot {
    /// Per-element temporaries of one kernel (LayerNorm's dy·x̂, attention's S and dS).
    Temp = 0,
    /// Column-sum and long-row partials.
    Partial = 1,
    /// Attention: q, k, v head-major [3, b, nh, t, hs].
    Heads = 2,
    /// Attention backward: dq, dk, dv head-major.
    HeadGrads = 3,
    /// Attention: O (forward) or dO (backward) head-major [b, nh, t, hs].
    HeadRows = 4,
}

/// bf16 scratch slots, each grown on demand.
#[derive(Clone, Copy)]
enum Bf16Slot {
    /// A GEMM's A and B operands, rounded here when the rounded-operand pool has no room.
    A = 0,
    B = 1,
    /// Attention: q, k, v head-major.
    Heads = 2,
    /// Attention backward: dO head-major.
    HeadRows = 3,
    /// Attention: P.
    Probs = 4,
    /// Attention backward: dS.
    Scores = 5,
}

/// The rounded-operand pool takes at most this share of the device's memory, and of the memory
/// still free when it is made (and at most half the f32 arenas' bytes: a bf16 copy of every
/// element). Without room for it, rounding goes through scratch as before.
const POOL_SHARE_OF_TOTAL: usize = 8;
const POOL_SHARE_OF_FREE: usize = 4;
/// Pool copies start at multiples of this many elements (256 bytes, as allocations do).
const POOL_ALIGN: usize = 128;

/// The device pool of rounded GEMM operands and its bookkeeping.
struct Pool {
    mem: Arena<u16>,
    rounded: Rounded,
}

pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    precision: Precision,
    arenas: Vec<Arena<f32>>,
    idx: Vec<Arena<u32>>,
    idx_host: Vec<Vec<u32>>,
    scratch: [Option<Arena<f32>>; 5],
    bf16: [Option<Arena<u16>>; 6],
    /// bf16 mode: rounded arena operands, made on the first GEMM (when every arena of the run
    /// exists).
    pool: Option<Pool>,
    groups: Option<Arena<u32>>,
    /// The ids whose table `groups` holds, and its group count.
    grouped: Vec<u32>,
    group_count: usize,
    /// Per-kernel timing, when on (see [`CudaBackend::set_profiling`]).
    profile: Option<Profiler>,
    /// Where `stage` copies to.
    staging: Option<Pinned>,
    /// Writes larger than [`PAGEABLE_WRITE`] go through these, in turn. One still in a copy is
    /// not waited for: a new buffer joins the ring in its place, so the ring grows to the large
    /// writes in flight (a step's images, each micro-batch's, ZSCL's reference batch), up to
    /// [`MAX_UPLOADS`], and then no write waits.
    uploads: Vec<Pinned>,
    next_upload: usize,
    /// With CUDA graphs: the capture state (see [`crate::graphs`]).
    graphs: Option<Graphs>,
    /// cuBLAS's workspace (see [`CudaBackend::new`]).
    _workspace: Arena<u8>,
}

/// Bytes of cuBLAS's workspace (NVIDIA's recommendation for Hopper).
const CUBLAS_WORKSPACE: usize = 32 << 20;

/// The most page-locked upload buffers; beyond them a write waits for the oldest copy.
const MAX_UPLOADS: usize = 8;

/// A 4-byte word an upload carries, held in the page-locked (f32) buffers by its bits.
trait Word: cudarc::driver::DeviceRepr + Copy {
    fn as_f32_bits(self) -> f32;
}

impl Word for f32 {
    fn as_f32_bits(self) -> f32 {
        self
    }
}

impl Word for u32 {
    fn as_f32_bits(self) -> f32 {
        f32::from_bits(self)
    }
}

/// Bytes a write copies straight from pageable memory; above this a driver may wait for the
/// stream to stage the copy, so larger writes (a batch's images) go through page-locked memory.
const PAGEABLE_WRITE: usize = 64 << 10;

/// Events a profiler holds before it reads them (two per launch).
const PROFILE_EVENTS: usize = 4096;

/// Per-kernel GPU time from CUDA events recorded around each launch.
#[derive(Default)]
struct Profiler {
    /// Per kernel: (calls, seconds).
    totals: HashMap<&'static str, (u64, f64)>,
    /// Launches whose events are not read yet: launch k owns events 2k (start) and 2k + 1 (end).
    pending: Vec<&'static str>,
    /// Timing events, created on first need and reused after each read.
    events: Vec<CudaEvent>,
}

impl Profiler {
    /// Records event `i` (creating it the first time) on the stream.
    fn record(&mut self, ctx: &Arc<CudaContext>, stream: &CudaStream, i: usize) -> Result<(), Error> {
        while self.events.len() <= i {
            let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
            self.events.push(ctx.new_event(flags).map_err(driver("cuEventCreate"))?);
        }
        self.events[i].record(stream).map_err(driver("cuEventRecord"))
    }
}

pub(crate) fn driver(call: &'static str) -> impl FnOnce(result::DriverError) -> Error {
    move |source| CudaError::Driver { call, source }.into()
}

fn cublas(call: &'static str) -> impl FnOnce(cudarc::cublas::result::CublasError) -> Error {
    move |e| CudaError::Cublas { call, reason: format!("{e:?}") }.into()
}

/// Elements (of a streaming kernel) or table rows a thread loads together (`UNROLL` in
/// kernels/common.cu).
const UNROLL: usize = 4;

/// The kernels written with `each_unrolled`: `UNROLL` elements per thread and round.
fn unrolled_cfg(n: usize) -> LaunchConfig {
    elem_cfg(n.div_ceil(UNROLL))
}

fn elem_cfg(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(ELEM_THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (ELEM_THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// Largest grid y dimension CUDA allows.
const MAX_GRID_Y: usize = 65535;

/// A [rows, cols] table: one thread per column, one block row per `UNROLL` table rows (the
/// kernels' `rows_unrolled` strides over rows beyond the grid's y limit).
fn table_cfg(op: &'static str, rows: usize, cols: usize) -> Result<LaunchConfig, Error> {
    // An empty table gets an empty grid, which `launch!` skips.
    let grid_dim = if rows == 0 || cols == 0 {
        (0, 0, 1)
    } else {
        let x = u32::try_from(cols.div_ceil(ELEM_THREADS as usize)).map_err(|_| too_big(op))?;
        (x, rows.div_ceil(UNROLL).min(MAX_GRID_Y) as u32, 1)
    };
    Ok(LaunchConfig { grid_dim, block_dim: (ELEM_THREADS, 1, 1), shared_mem_bytes: 0 })
}

/// Rows per block of the warp-per-row kernels (`WARP_ROWS` in kernels/attention.cu).
const WARP_ROWS: usize = 8;

/// One warp per row, [`WARP_ROWS`] rows per block.
fn warp_rows_cfg(op: &'static str, rows: usize) -> Result<LaunchConfig, Error> {
    let blocks = u32::try_from(rows.div_ceil(WARP_ROWS)).map_err(|_| too_big(op))?;
    Ok(LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (32 * WARP_ROWS as u32, 1, 1), shared_mem_bytes: 0 })
}

fn row_cfg(rows: usize, c: usize) -> LaunchConfig {
    let threads = (c.div_ceil(32) * 32).clamp(32, ROW_THREADS as usize) as u32;
    LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

fn too_big(op: &'static str) -> Error {
    Error::Buffer { op, reason: "dimension too large for a CUDA launch" }
}

fn i32_of(op: &'static str, x: usize) -> Result<i32, Error> {
    i32::try_from(x).map_err(|_| too_big(op))
}

/// Launches kernel `$name` with `$cfg` and the given arguments (each bound to a local first,
/// so the launch sees stable addresses).
macro_rules! launch {
    ($be:expr, $name:literal, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let cfg: LaunchConfig = $cfg;
        // No rows (or no blocks) to work on: a zero-sized grid is a launch error in CUDA.
        if cfg.grid_dim.0 == 0 {
            Ok(())
        } else {
            // A `Result`, never an early return from the caller, so a caller can undo its
            // bookkeeping when the launch fails.
            let shape = [cfg.grid_dim.0, cfg.grid_dim.1, cfg.block_dim.0].map(u64::from);
            $be.captured($name, &shape).and_then(|()| $be.profile_start()).and_then(|t0| {
                let f = $be.k.get($name);
                let mut l = $be.stream.launch_builder(f);
                $(let a = $arg; l.arg(&a);)+
                // SAFETY: every pointer argument was bounds-checked against its arena (and
                // outputs against overlap) by the caller; the argument order and types follow
                // the kernel's signature in kernels/*.cu.
                unsafe { l.launch(cfg) }.map_err(driver($name))?;
                $be.profile_end($name, t0)
            })
        }
    }};
}

impl CudaBackend {
    /// A backend on device `ordinal`: probes the libraries, compiles and loads the kernels.
    pub fn new(ordinal: usize, precision: Precision) -> Result<Self, CudaError> {
        Self::open(ordinal, precision, false)
    }

    /// [`CudaBackend::new`], running its work as CUDA graphs (see [`crate::graphs`]).
    pub fn with_graphs(ordinal: usize, precision: Precision) -> Result<Self, CudaError> {
        Self::open(ordinal, precision, true)
    }

    fn open(ordinal: usize, precision: Precision, graphs: bool) -> Result<Self, CudaError> {
        let info = crate::probe()?;
        if ordinal >= info.device_count() {
            return Err(CudaError::NoDevice);
        }
        let ctx = CudaContext::new(ordinal).map_err(|source| CudaError::Driver { call: "cuCtxCreate", source })?;
        // SAFETY: one stream only; kernels are ordered on it, so cudarc's cross-stream events
        // are not needed. Called before any allocation.
        unsafe { ctx.disable_event_tracking() };
        // CUDA cannot capture the legacy default stream: graphs need a stream of their own.
        let stream = if graphs {
            ctx.new_stream().map_err(|source| CudaError::Driver { call: "cuStreamCreate", source })?
        } else {
            ctx.default_stream()
        };
        let blas = CudaBlas::new(stream.clone())
            .map_err(|e| CudaError::Cublas { call: "cublasCreate", reason: format!("{e:?}") })?;
        // cuBLAS's workspace is ours in both modes, so a GEMM chooses among the same algorithms
        // with graphs as without, and a captured one allocates nothing.
        let mem = stream
            .alloc_zeros::<u8>(CUBLAS_WORKSPACE)
            .map_err(|source| CudaError::Driver { call: "cuMemAlloc", source })?;
        let base = mem.device_ptr(&stream).0;
        // SAFETY: the handle is live and bound to `stream`; the workspace lives as long as the
        // backend (and so the handle).
        unsafe { blas_sys::cublasSetWorkspace_v2(*blas.handle(), base as *mut _, CUBLAS_WORKSPACE) }
            .result()
            .map_err(|e| CudaError::Cublas { call: "cublasSetWorkspace", reason: format!("{e:?}") })?;
        let workspace = Arena { _mem: mem, base, len: CUBLAS_WORKSPACE };
        let k = Kernels::load(&ctx)?;
        Ok(CudaBackend {
            ctx,
            stream,
            blas,
            k,
            precision,
            arenas: Vec::new(),
            idx: Vec::new(),
            idx_host: Vec::new(),
            scratch: [None, None, None, None, None],
            bf16: Default::default(),
            pool: None,
            groups: None,
            grouped: Vec::new(),
            group_count: 0,
            profile: None,
            staging: None,
            uploads: Vec::new(),
            next_upload: 0,
            graphs: graphs.then(Graphs::new),
            _workspace: workspace,
        })
    }

    /// How the work ran as CUDA graphs so far; `None` without graphs.
    pub fn graph_use(&self) -> Option<GraphUse> {
        self.graphs.as_ref().map(Graphs::used)
    }

    /// Before device operation `name` (shaped by `shape`): with graphs, it joins the open
    /// capture (opened here when none is), or runs directly the first time it is seen (see
    /// [`Graphs::operation`]). Profiling records events around every launch, which
    /// a capture cannot hold, so a profiled backend runs without graphs.
    fn captured(&mut self, name: &'static str, shape: &[u64]) -> Result<(), Error> {
        match &mut self.graphs {
            Some(g) if self.profile.is_none() => g.operation(&self.stream, name, shape),
            _ => Ok(()),
        }
    }

    /// Before anything that involves the host (an upload, a copy back, a wait, an allocation):
    /// with graphs, launches the open capture, so the work queued so far runs first.
    fn launch_captured(&mut self) -> Result<(), Error> {
        match &mut self.graphs {
            Some(g) => g.launch(&self.stream),
            None => Ok(()),
        }
    }

    /// Turns per-kernel timing on and clears earlier counts: a pair of CUDA events around every
    /// launch, read in batches, so no launch waits for the one before. While the GPU is busy an
    /// event pair times the kernel itself; when it idles (a queue of short kernels drained),
    /// the pair also spans the host's launch work (and cuBLAS's), so each figure is an upper
    /// bound of the kernel's time.
    /// With graphs, profiling runs the work without them (see `Self::captured`).
    pub fn set_profiling(&mut self, on: bool) -> Result<(), Error> {
        self.launch_captured()?;
        self.profile = on.then(Profiler::default);
        Ok(())
    }

    /// Per kernel: (name, calls, seconds of GPU time), most time first.
    pub fn profile(&mut self) -> Result<Vec<(&'static str, u64, f64)>, Error> {
        self.flush_profile()?;
        let mut v: Vec<_> = self.profile.iter().flat_map(|p| &p.totals).map(|(k, (n, s))| (*k, *n, *s)).collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(v)
    }

    /// Records the start event of a launch when profiling; returns its index.
    fn profile_start(&mut self) -> Result<Option<usize>, Error> {
        let Some(p) = &self.profile else { return Ok(None) };
        if 2 * p.pending.len() + 2 > PROFILE_EVENTS {
            self.flush_profile()?;
        }
        let Some(p) = &mut self.profile else { return Ok(None) };
        let i = 2 * p.pending.len();
        p.record(&self.ctx, &self.stream, i)?;
        Ok(Some(i))
    }

    fn profile_end(&mut self, name: &'static str, start: Option<usize>) -> Result<(), Error> {
        if let (Some(i), Some(p)) = (start, &mut self.profile) {
            p.record(&self.ctx, &self.stream, i + 1)?;
            p.pending.push(name);
        }
        Ok(())
    }

    /// Reads every recorded event pair into the totals.
    fn flush_profile(&mut self) -> Result<(), Error> {
        if self.profile.as_ref().is_none_or(|p| p.pending.is_empty()) {
            return Ok(());
        }
        self.synchronize()?;
        if let Some(p) = &mut self.profile {
            for (k, name) in p.pending.drain(..).enumerate() {
                let ms = p.events[2 * k].elapsed_ms(&p.events[2 * k + 1]).map_err(driver("cuEventElapsedTime"))?;
                let e = p.totals.entry(name).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += f64::from(ms) / 1e3;
            }
        }
        Ok(())
    }

    /// How the rounded-operand pool (bf16 mode) has served GEMM operands so far; `None` before
    /// its first use.
    pub fn pool_use(&self) -> Option<PoolUse> {
        self.pool.as_ref().map(|p| p.rounded.counts())
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Device name, for reports.
    pub fn device_name(&self) -> String {
        self.ctx.name().unwrap_or_else(|_| "CUDA device".into())
    }

    /// Waits for every queued kernel.
    pub fn synchronize(&mut self) -> Result<(), Error> {
        self.launch_captured()?;
        self.stream.synchronize().map_err(driver("cuStreamSynchronize"))
    }

    /// Device memory in use (total − free, all processes), after a synchronize.
    pub fn memory_in_use(&mut self) -> Result<u64, Error> {
        self.synchronize()?;
        self.ctx.bind_to_thread().map_err(driver("cuCtxSetCurrent"))?;
        let (free, total) = result::mem_get_info().map_err(driver("cuMemGetInfo"))?;
        Ok((total - free) as u64)
    }

    fn alloc_arena<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &mut self, len: usize,
    ) -> Result<Arena<T>, Error> {
        self.launch_captured()?;
        let mem = self.stream.alloc_zeros::<T>(len.max(1)).map_err(driver("cuMemAlloc"))?;
        let base = mem.device_ptr(&self.stream).0;
        Ok(Arena { base, _mem: mem, len })
    }

    /// Device pointers of one kernel's operands, each given with the length its dims need:
    /// checks every handle against its arena and its needed length, and that no output overlaps
    /// another operand (as the CPU backend does). Every output is marked written in the
    /// rounded-operand pool: all writes to arenas pass here.
    fn ptrs<const O: usize, const I: usize>(
        &mut self, op: &'static str, outs: [(Buf, usize); O], ins: [(Buf, usize); I],
    ) -> Result<([u64; O], [u64; I]), Error> {
        let resolve = |(b, need): (Buf, usize)| -> Result<u64, Error> {
            let a = self.arenas.get(b.arena as usize).ok_or(Error::Buffer { op, reason: "unknown arena" })?;
            if b.offset.checked_add(b.len).is_none_or(|end| end > a.len) {
                return Err(Error::Buffer { op, reason: "buffer handle outside its arena" });
            }
            if b.len < need {
                return Err(Error::Buffer { op, reason: "buffer shorter than its dims" });
            }
            Ok(a.base + 4 * b.offset as u64)
        };
        for (i, (o, _)) in outs.iter().enumerate() {
            if outs[i + 1..].iter().chain(ins.iter()).any(|(x, _)| o.overlaps(x)) {
                return Err(Error::Buffer { op, reason: "an output overlaps another operand" });
            }
        }
        let mut po = [0u64; O];
        for (p, o) in po.iter_mut().zip(outs) {
            *p = resolve(o)?;
        }
        let mut pi = [0u64; I];
        for (p, i) in pi.iter_mut().zip(ins) {
            *p = resolve(i)?;
        }
        if let Some(pool) = &mut self.pool {
            for (o, _) in outs {
                pool.rounded.written(o.arena, o.offset, o.len);
            }
        }
        Ok((po, pi))
    }

    /// Host → device memory at `d`, never making the host wait: up to [`PAGEABLE_WRITE`] bytes
    /// straight from `src`, larger uploads (a batch's images, the embedding backward's tables
    /// for many prompts) through the ring of page-locked buffers.
    ///
    /// # Safety
    /// `d` must span `src.len()` words of a live allocation.
    unsafe fn upload<T: Word>(&mut self, d: u64, src: &[T]) -> Result<(), Error> {
        self.launch_captured()?;
        if 4 * src.len() <= PAGEABLE_WRITE {
            // SAFETY: the caller's; the copy is ordered on the stream after every kernel queued
            // before it, and a pageable source of this size is staged before the call returns.
            return unsafe { result::memcpy_htod_async(d, src, self.stream.cu_stream()) }
                .map_err(driver("cuMemcpyHtoDAsync"));
        }
        let i = self.next_upload;
        let busy = self.uploads.get(i).is_none_or(|u| !u.is_idle());
        if busy && self.uploads.len() < MAX_UPLOADS {
            self.uploads.insert(i, Pinned::new(&self.ctx, src.len())?);
        }
        if !self.uploads[i].fits(src.len()) {
            self.uploads[i] = Pinned::new(&self.ctx, src.len())?;
        }
        self.next_upload = (i + 1) % self.uploads.len();
        let up = &mut self.uploads[i];
        // Waits only when the ring is full and this buffer's copy is still queued.
        up.wait()?;
        let host = up.slice_mut(src.len())?;
        for (h, &s) in host.iter_mut().zip(src) {
            *h = s.as_f32_bits();
        }
        // SAFETY: the caller's; `host` is page-locked memory that stays untouched until the
        // event recorded next has completed.
        unsafe { result::memcpy_htod_async(d, &*host, self.stream.cu_stream()) }
            .map_err(driver("cuMemcpyHtoDAsync"))?;
        up.record(&self.stream)
    }

    /// Device pointer of an update's guard element, or null (0) for none.
    fn guard_ptr(&mut self, op: &'static str, guard: Option<Buf>) -> Result<u64, Error> {
        guard.map_or(Ok(0), |g| Ok(self.ptrs(op, [], [(g, 1)])?.1[0]))
    }

    /// Device pointer and host mirror of an index handle.
    fn ids(&self, op: &'static str, b: IdxBuf) -> Result<(u64, &[u32]), Error> {
        let (a, host) = match (self.idx.get(b.arena as usize), self.idx_host.get(b.arena as usize)) {
            (Some(a), Some(h)) => (a, h),
            _ => return Err(Error::Buffer { op, reason: "unknown index arena" }),
        };
        let host = b
            .offset
            .checked_add(b.len)
            .and_then(|end| host.get(b.offset..end))
            .ok_or(Error::Buffer { op, reason: "index handle outside its arena" })?;
        Ok((a.base + 4 * b.offset as u64, host))
    }

    /// Scratch slot `slot` with room for `len` floats, grown when needed. Growing never waits for
    /// the device: dropping the old buffer frees it in stream order (`cuMemFreeAsync` on devices
    /// with memory pools, as the H100/H200; cudarc synchronises first elsewhere), so kernels
    /// queued on it finish first. The same holds for the other grown buffers.
    fn scratch(&mut self, slot: Slot, len: usize) -> Result<u64, Error> {
        let s = slot as usize;
        if self.scratch[s].as_ref().is_none_or(|a| a.len < len) {
            // Captured work may use the old buffer: it is queued before the buffer is freed.
            self.launch_captured()?;
            self.scratch[s] = None;
            self.scratch[s] = Some(self.alloc_arena::<f32>(len)?);
        }
        Ok(self.scratch[s].as_ref().map_or(0, |a| a.base))
    }

    fn bf16_scratch(&mut self, slot: Bf16Slot, len: usize) -> Result<u64, Error> {
        let slot = slot as usize;
        if self.bf16[slot].as_ref().is_none_or(|a| a.len < len) {
            self.launch_captured()?;
            self.bf16[slot] = None;
            self.bf16[slot] = Some(self.alloc_arena::<u16>(len)?);
        }
        Ok(self.bf16[slot].as_ref().map_or(0, |a| a.base))
    }

    /// `out[j] += Σ_o inp[o·ld + j]` for `j < n`, deterministic (two passes).
    fn column_sum(&mut self, out: u64, inp: u64, outer: usize, ld: usize, n: usize) -> Result<(), Error> {
        if outer == 0 || n == 0 {
            return Ok(());
        }
        let chunks = outer.min(COLUMN_CHUNKS);
        let partial = self.scratch(Slot::Partial, chunks * n)?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(ELEM_THREADS as usize) as u32, chunks as u32, 1),
            block_dim: (ELEM_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (outer, ld, nn) = (outer as i64, ld as i64, n as i64);
        launch!(self, "column_sum_partial_f32", cfg, partial, inp, outer, ld, nn, chunks as i32)?;
        launch!(self, "column_sum_finish_f32", elem_cfg(n), out, partial, nn, chunks as i32)
    }

    fn elementwise_len(op: &'static str, n: usize) -> Result<i64, Error> {
        i64::try_from(n).map_err(|_| too_big(op))
    }

    /// Whether GEMM `d` reads bf16 operands: then its callers hand [`Self::gemm_ptrs`] rounded ones.
    fn rounds(&self, d: Gemm) -> bool {
        self.precision == Precision::Bf16 && d.low_precision
    }

    /// Attention's GEMMs for `d`; all of them are the towers' (low precision).
    fn head_gemms(&self, d: Attn) -> HeadGemms {
        HeadGemms::new(d, self.precision == Precision::Bf16)
    }

    /// [`Backend::gemm`] on device pointers whose extents the caller checked; the operands are
    /// bf16 where [`Self::rounds`], f32 otherwise.
    fn gemm_ptrs(&mut self, pc: u64, pa: u64, pb: u64, (d, ld): (Gemm, Lds)) -> Result<(), Error> {
        let op = "gemm";
        if d.batch == 0 || d.m == 0 || d.n == 0 {
            return Ok(());
        }
        use blas_sys::{cublasComputeType_t as Compute, cudaDataType::*};
        let (ty, compute, labels) = match (self.precision, d.low_precision) {
            (Precision::Bf16, true) => {
                (CUDA_R_16BF, Compute::CUBLAS_COMPUTE_32F, ["cublas_gemm_bf16", "cublas_gemm_bf16_batched"])
            }
            (Precision::FastBf16, true) => (
                CUDA_R_32F,
                Compute::CUBLAS_COMPUTE_32F_FAST_16BF,
                ["cublas_gemm_fast_bf16", "cublas_gemm_fast_bf16_batched"],
            ),
            _ => (CUDA_R_32F, Compute::CUBLAS_COMPUTE_32F, ["cublas_gemm_f32", "cublas_gemm_f32_batched"]),
        };
        // The profile shows attention's per-head products (batched) apart from the rest.
        let label = labels[usize::from(d.batch > 1)];
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: swap the operands.
        let t = |x: bool| {
            if x {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let (lda, ldb) = (ld.b, ld.a);
        let (alpha, beta) = (d.alpha as f32, d.beta as f32);
        let (n, m, k) = (i32_of(op, d.n)?, i32_of(op, d.m)?, i32_of(op, d.k)?);
        let (lda, ldb, ldc, batch) = (i32_of(op, lda)?, i32_of(op, ldb)?, i32_of(op, ld.c)?, i32_of(op, d.batch)?);
        // Everything cuBLAS may choose its kernels by: sizes, layouts, strides, whether C is
        // read, and the operands' alignment (up to 256 bytes).
        let align = (pa | pb | pc).trailing_zeros().min(8) as usize;
        let (sa, sb, sc) = (d.stride_a, d.stride_b, d.stride_c);
        let (ta, tb, reads_c) = (usize::from(d.trans_a), usize::from(d.trans_b), usize::from(d.beta != 0.0));
        let shape = [d.m, d.n, d.k, d.batch, ta, tb, ld.a, ld.b, ld.c, sa, sb, sc, reads_c, align].map(|x| x as u64);
        self.captured(label, &shape)?;
        let t0 = self.profile_start()?;
        // SAFETY: the operand extents were checked against their arenas (or are scratch sized
        // for them); alpha and beta are host f32 (cuBLAS's default pointer mode); the handle is
        // bound to this stream.
        unsafe {
            blas::gemm_strided_batched_ex(
                *self.blas.handle(),
                t(d.trans_b),
                t(d.trans_a),
                n,
                m,
                k,
                &alpha as *const f32 as *const _,
                pb as *const _,
                ty,
                lda,
                d.stride_b as i64,
                pa as *const _,
                ty,
                ldb,
                d.stride_a as i64,
                &beta as *const f32 as *const _,
                pc as *mut _,
                CUDA_R_32F,
                ldc,
                d.stride_c as i64,
                batch,
                compute,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(cublas("cublasGemmStridedBatchedEx"))?;
        self.profile_end(label, t0)
    }

    /// Whether the fused attention kernels take `d`: bf16 mode, a device with tensor cores, and
    /// [`fused_fits`].
    fn fused(&self, bf16: bool, d: Attn) -> bool {
        bf16 && self.k.tensor_cores && fused_fits(d)
    }

    /// Permutes packed `qkv` (at `x`) to head-major q, k, v; returns their pointers. Where
    /// attention's GEMMs read bf16 they are rounded too, into the rounded-operand pool, so the
    /// backward finds the forward's there unless `qkv` was written since; f32 in scratch
    /// otherwise.
    fn heads_of(&mut self, op: &'static str, qkv: Buf, x: u64, d: Attn, bf16: bool) -> Result<[u64; 3], Error> {
        let n = d.b * d.t * d.nh * d.hs;
        let at = |base: u64, bytes: u64| [0, 1, 2].map(|i| base + i * bytes * n as u64);
        if !bf16 {
            let heads = self.scratch(Slot::Heads, 3 * n)?;
            self.qkv_heads(op, x, 0, heads, d, 1)?;
            return Ok(at(heads, 4));
        }
        let operands = [(qkv, 3 * n)];
        let form = Form::Heads([d.b, d.t, d.nh, d.hs]);
        let heads = match self.pooled(form, operands)? {
            [Placed::Fresh(p)] => return Ok(at(p, 2)),
            [Placed::Round(p)] => p,
            [Placed::NoRoom] => self.bf16_scratch(Bf16Slot::Heads, 3 * n)?,
        };
        let permuted = self.qkv_heads(op, x, 0, heads, d, 2);
        self.unmark_on_error(permuted, operands)?;
        Ok(at(heads, 2))
    }

    /// Kernel `qkv_heads` between packed qkv at `packed` and head-major `heads` in `mode` (see
    /// kernels/attention.cu).
    fn qkv_heads(
        &mut self, op: &'static str, packed: u64, copy: u64, heads: u64, d: Attn, mode: i32,
    ) -> Result<(), Error> {
        let [b, t, nh, hs] = head_dims(op, d)?;
        let cfg = table_cfg(op, d.b * d.t, 3 * d.nh * d.hs)?;
        launch!(self, "qkv_heads", cfg, packed, copy, heads, b, t, nh, hs, mode)
    }

    /// Rounds `n` f32 at `src` to bf16 at `dst`; returns `dst`.
    fn round_to_bf16(&mut self, dst: u64, src: u64, n: usize) -> Result<u64, Error> {
        launch!(self, "to_bf16", unrolled_cfg(n), dst, src, n as i64)?;
        Ok(dst)
    }

    /// The bf16 copies of GEMM operands A and B (`buf`, at `src`, its first `n` elements):
    /// from the pool, rounded only when the source was written since the last time; in the bf16
    /// scratch when the pool has no room.
    fn rounded_operands(&mut self, operands: [(Buf, u64, usize); 2]) -> Result<[u64; 2], Error> {
        let extents = operands.map(|(b, _, n)| (b, n));
        let copies = self.pooled(Form::Plain, extents)?;
        let mut out = [0; 2];
        for (i, ((_, src, n), copy)) in operands.into_iter().zip(copies).enumerate() {
            let rounded = match copy {
                Placed::Fresh(p) => Ok(p),
                Placed::Round(p) => self.round_to_bf16(p, src, n),
                Placed::NoRoom => {
                    self.bf16_scratch([Bf16Slot::A, Bf16Slot::B][i], n).and_then(|dst| self.round_to_bf16(dst, src, n))
                }
            };
            out[i] = self.unmark_on_error(rounded, extents)?;
        }
        Ok(out)
    }

    /// The pool's copies, in `form`, of `(buf, its first n elements)` each, made on first use.
    fn pooled<const N: usize>(&mut self, form: Form, operands: [(Buf, usize); N]) -> Result<[Placed<u64>; N], Error> {
        let pool = self.pool()?;
        let base = pool.mem.base;
        let copies = pool.rounded.lookup(form, operands.map(|(b, n)| (b.arena, b.offset, n)));
        Ok(copies.map(|c| c.map(|at| base + 2 * at as u64)))
    }

    /// Runs `launch(self, copy)`, the kernel about to write `out` (its first `n` elements;
    /// already through [`Self::ptrs`]), with `copy` where it also writes their bf16 rounding for
    /// the tower GEMM that reads them next: a place in the pool in bf16 mode, null (0) otherwise
    /// or without room. A failed launch leaves the copy marked stale.
    fn with_rounded_copy(
        &mut self, out: Buf, n: usize, launch: impl FnOnce(&mut Self, u64) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let copy = if self.precision == Precision::Bf16 {
            let pool = self.pool()?;
            let base = pool.mem.base;
            pool.rounded.produce(out.arena, out.offset, n).map_or(0, |at| base + 2 * at as u64)
        } else {
            0
        };
        let run = launch(self, copy);
        self.unmark_on_error(run, [(out, n)])
    }

    /// The rounded-operand pool, made on first use.
    fn pool(&mut self) -> Result<&mut Pool, Error> {
        let pool = match self.pool.take() {
            Some(pool) => pool,
            None => self.new_pool()?,
        };
        Ok(self.pool.insert(pool))
    }

    /// `r`, after unmarking the pool's copies of `operands` when it is an error: the pool counts
    /// them as up to date from the lookup on, and the rounding that failed did not fill them.
    fn unmark_on_error<T, const N: usize>(
        &mut self, r: Result<T, Error>, operands: [(Buf, usize); N],
    ) -> Result<T, Error> {
        if r.is_err() {
            if let Some(pool) = &mut self.pool {
                for (b, n) in operands {
                    pool.rounded.written(b.arena, b.offset, n);
                }
            }
        }
        r
    }

    /// The rounded-operand pool, sized by [`POOL_SHARE_OF_TOTAL`] and [`POOL_SHARE_OF_FREE`];
    /// empty (every operand rounded into scratch) when the device has no room for it.
    fn new_pool(&mut self) -> Result<Pool, Error> {
        self.launch_captured()?;
        self.ctx.bind_to_thread().map_err(driver("cuCtxSetCurrent"))?;
        let (free, total) = result::mem_get_info().map_err(driver("cuMemGetInfo"))?;
        let arenas: usize = self.arenas.iter().map(|a| a.len).sum();
        // bf16 elements: bytes / 2.
        let capacity = arenas.min(total / 2 / POOL_SHARE_OF_TOTAL).min(free / 2 / POOL_SHARE_OF_FREE);
        match self.alloc_arena::<u16>(capacity) {
            Ok(mem) => Ok(Pool { mem, rounded: Rounded::new(capacity, POOL_ALIGN) }),
            Err(_) => Ok(Pool { mem: self.alloc_arena::<u16>(0)?, rounded: Rounded::new(0, POOL_ALIGN) }),
        }
    }
}

/// Elements of A, B and C a GEMM touches.
fn gemm_extents(d: Gemm) -> (usize, usize, usize) {
    (
        extent(d.batch, d.stride_a, d.m * d.k),
        extent(d.batch, d.stride_b, d.k * d.n),
        extent(d.batch, d.stride_c, d.m * d.n),
    )
}

/// Elements spanned by `batch` matrices of `each` elements `stride` apart.
fn extent(batch: usize, stride: usize, each: usize) -> usize {
    if batch == 0 {
        0
    } else {
        (batch - 1) * stride + each
    }
}

impl Backend for CudaBackend {
    type E = f32;

    fn alloc(&mut self, len: usize) -> Result<ArenaId, Error> {
        let a = self.alloc_arena::<f32>(len)?;
        self.arenas.push(a);
        Ok((self.arenas.len() - 1) as ArenaId)
    }

    fn alloc_idx(&mut self, len: usize) -> Result<ArenaId, Error> {
        let a = self.alloc_arena::<u32>(len)?;
        self.idx.push(a);
        self.idx_host.push(vec![0; len]);
        Ok((self.idx.len() - 1) as ArenaId)
    }

    fn write(&mut self, dst: Buf, src: &[f32]) -> Result<(), Error> {
        if dst.len != src.len() {
            return Err(Error::Buffer { op: "write", reason: "length mismatch" });
        }
        let ([d], []) = self.ptrs("write", [(dst, 0)], [])?;
        // SAFETY: `d` spans `src.len()` floats of a live allocation (checked above).
        unsafe { self.upload(d, src) }
    }

    fn read(&mut self, src: Buf, dst: &mut [f32]) -> Result<(), Error> {
        if src.len != dst.len() {
            return Err(Error::Buffer { op: "read", reason: "length mismatch" });
        }
        let ([], [s]) = self.ptrs("read", [], [(src, 0)])?;
        self.launch_captured()?;
        // SAFETY: as in `write`; the synchronize makes `dst` complete before it is returned.
        unsafe { result::memcpy_dtoh_async(dst, s, self.stream.cu_stream()) }.map_err(driver("cuMemcpyDtoHAsync"))?;
        self.synchronize()
    }

    fn stage(&mut self, src: Buf) -> Result<(), Error> {
        let ([], [s]) = self.ptrs("stage", [], [(src, 0)])?;
        self.launch_captured()?;
        let st = Pinned::ensure(&mut self.staging, &self.ctx, src.len)?;
        // An earlier stage nobody collected may still be copying into the buffer.
        st.wait()?;
        let dst = st.slice_mut(src.len)?;
        // SAFETY: `s` spans `src.len` floats of a live allocation (checked by `ptrs`); `dst` is
        // page-locked memory owned by `self`, read only after the event recorded next.
        unsafe { result::memcpy_dtoh_async(dst, s, self.stream.cu_stream()) }.map_err(driver("cuMemcpyDtoHAsync"))?;
        st.record(&self.stream)
    }

    fn collect(&mut self, dst: &mut [f32]) -> Result<(), Error> {
        // The work captured so far runs while the host waits.
        self.launch_captured()?;
        let st = self.staging.as_ref().ok_or(Error::Buffer { op: "collect", reason: "nothing was staged" })?;
        let got = st.contents()?;
        if got.len() != dst.len() {
            return Err(Error::Buffer { op: "collect", reason: "length mismatch" });
        }
        dst.copy_from_slice(got);
        Ok(())
    }

    fn write_idx(&mut self, dst: IdxBuf, src: &[u32]) -> Result<(), Error> {
        if dst.len != src.len() {
            return Err(Error::Buffer { op: "write_idx", reason: "length mismatch" });
        }
        let (d, held) = self.ids("write_idx", dst)?;
        // The mirror is what the device holds once the queued copies are done (index arenas are
        // written from the host only): the same ids again (a task's prompts, step after step)
        // need no copy.
        if held == src {
            return Ok(());
        }
        if let Some(h) = self.idx_host.get_mut(dst.arena as usize) {
            h[dst.offset..dst.offset + dst.len].copy_from_slice(src);
        }
        // SAFETY: `d` spans `src.len()` u32 of a live allocation (checked by `ids`).
        unsafe { self.upload(d, src) }
    }

    fn fill(&mut self, dst: Buf, value: f64) -> Result<(), Error> {
        let ([d], []) = self.ptrs("fill", [(dst, 0)], [])?;
        let n = Self::elementwise_len("fill", dst.len)?;
        launch!(self, "fill_f32", elem_cfg(dst.len), d, value as f32, n)
    }

    fn copy(&mut self, dst: Buf, src: Buf) -> Result<(), Error> {
        if dst.len != src.len {
            return Err(Error::Buffer { op: "copy", reason: "length mismatch" });
        }
        let ([d], [s]) = self.ptrs("copy", [(dst, 0)], [(src, 0)])?;
        self.captured("copy", &[dst.len as u64])?;
        // SAFETY: both ranges are inside live allocations and do not overlap (checked).
        unsafe { result::memcpy_dtod_async(d, s, 4 * dst.len, self.stream.cu_stream()) }
            .map_err(driver("cuMemcpyDtoDAsync"))
    }

    fn gemm(&mut self, c: Buf, a: Buf, b: Buf, d: Gemm) -> Result<(), Error> {
        let (na, nb, nc) = gemm_extents(d);
        let ([pc], [mut pa, mut pb]) = self.ptrs("gemm", [(c, nc)], [(a, na), (b, nb)])?;
        if self.rounds(d) && d.batch > 0 && d.m > 0 && d.n > 0 {
            [pa, pb] = self.rounded_operands([(a, pa, na), (b, pb, nb)])?;
        }
        self.gemm_ptrs(pc, pa, pb, (d, Lds::packed(d)))
    }

    fn broadcast_add_forward(&mut self, out: Buf, add: Buf, d: Bcast) -> Result<(), Error> {
        let op = "broadcast_add_forward";
        let (inner, n) = (d.inner * d.c, d.outer * d.inner * d.c);
        let ([o], [a]) = self.ptrs(op, [(out, n)], [(add, inner)])?;
        let cfg = table_cfg(op, d.outer, inner)?;
        launch!(self, "broadcast_add_f32", cfg, o, a, i32_of(op, inner)?, d.outer as i64)
    }

    fn broadcast_add_backward(&mut self, dadd: Buf, dout: Buf, d: Bcast) -> Result<(), Error> {
        let inner = d.inner * d.c;
        let ([da], [dy]) = self.ptrs("broadcast_add_backward", [(dadd, inner)], [(dout, d.outer * inner)])?;
        self.column_sum(da, dy, d.outer, inner, inner)
    }

    fn layer_norm_forward(
        &mut self, out: Buf, mean: Buf, rstd: Buf, inp: Buf, weight: Buf, bias: Buf, d: Rows,
    ) -> Result<(), Error> {
        let (rc, c, r) = (d.rows * d.c, d.c, d.rows);
        let ([o, m, s], [x, w, b]) =
            self.ptrs("layer_norm_forward", [(out, rc), (mean, r), (rstd, r)], [(inp, rc), (weight, c), (bias, c)])?;
        let ci = i32_of("layer_norm_forward", c)?;
        self.with_rounded_copy(out, rc, |be, copy| {
            launch!(be, "layer_norm_forward_f32", row_cfg(r, c), o, copy, m, s, x, w, b, ci, d.eps as f32)
        })
    }

    fn layer_norm_backward(
        &mut self, dinp: Buf, dweight: Buf, dbias: Buf, dout: Buf, inp: Buf, weight: Buf, mean: Buf, rstd: Buf, d: Rows,
    ) -> Result<(), Error> {
        let (rc, c, r) = (d.rows * d.c, d.c, d.rows);
        let ([dx, dw, db], [dy, x, w, m, s]) = self.ptrs(
            "layer_norm_backward",
            [(dinp, rc), (dweight, c), (dbias, c)],
            [(dout, rc), (inp, rc), (weight, c), (mean, r), (rstd, r)],
        )?;
        let ci = i32_of("layer_norm_backward", c)?;
        let tmp = self.scratch(Slot::Temp, rc)?;
        self.with_rounded_copy(dinp, rc, |be, copy| {
            launch!(be, "layer_norm_backward_f32", row_cfg(r, c), dx, copy, tmp, dy, x, w, m, s, ci)
        })?;
        self.column_sum(dw, tmp, r, c, c)?;
        self.column_sum(db, dy, r, c, c)
    }

    fn softmax_forward(&mut self, out: Buf, inp: Buf, d: Rows) -> Result<(), Error> {
        self.softmax_fwd("softmax_forward", out, inp, d, 0)
    }

    fn softmax_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, d: Rows) -> Result<(), Error> {
        self.softmax_bwd("softmax_backward", dinp, dout, out, d, 0)
    }

    fn log_softmax_forward(&mut self, out: Buf, inp: Buf, d: Rows) -> Result<(), Error> {
        self.softmax_fwd("log_softmax_forward", out, inp, d, 1)
    }

    fn log_softmax_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, d: Rows) -> Result<(), Error> {
        self.softmax_bwd("log_softmax_backward", dinp, dout, out, d, 1)
    }

    fn attention_forward(&mut self, out: Buf, probs: Buf, qkv: Buf, d: Attn) -> Result<(), Error> {
        let op = "attention_forward";
        let (btc, bhtt) = (d.b * d.t * d.nh * d.hs, d.b * d.nh * d.t * d.t);
        let ([o, p], [x]) = self.ptrs(op, [(out, btc), (probs, bhtt)], [(qkv, 3 * btc)])?;
        let g = self.head_gemms(d);
        let [b, t, nh, hs] = head_dims(op, d)?;
        let (causal, scale) = (d.causal as i32, head_scale(d) as f32);
        if self.fused(g.bf16, d) {
            let cfg = fused_cfg(d, fused_warps(d.t));
            return self.with_rounded_copy(out, btc, |be, copy| {
                launch!(be, "attention_fused_forward", cfg, x, o, copy, p, t, nh, hs, causal, scale)
            });
        }
        let [q, k, v] = self.heads_of(op, qkv, x, d, g.bf16)?;
        // bf16: S into padded scratch, P from there into probs and, rounded, into padded bf16
        // scratch for O = P·v; f32: S in probs, P over it in place.
        let (s, pb) = if g.bf16 {
            (self.scratch(Slot::Temp, g.padded_len)?, self.bf16_scratch(Bf16Slot::Probs, g.padded_len)?)
        } else {
            (p, 0)
        };
        self.gemm_ptrs(s, q, k, g.scores)?;
        let ld = i32_of(op, g.ld)?;
        let rows = d.b * d.nh * d.t;
        launch!(self, "attention_softmax", warp_rows_cfg(op, rows)?, s, p, pb, t, ld, causal, rows as i64)?;
        let oh = self.scratch(Slot::HeadRows, btc)?;
        self.gemm_ptrs(oh, if g.bf16 { pb } else { p }, v, g.pv)?;
        let rows = table_cfg(op, d.b * d.t, d.nh * d.hs)?;
        self.with_rounded_copy(out, btc, |be, copy| launch!(be, "heads_rows", rows, o, copy, oh, b, t, nh, hs, 1i32))
    }

    fn attention_backward(&mut self, dqkv: Buf, dout: Buf, qkv: Buf, probs: Buf, d: Attn) -> Result<(), Error> {
        let op = "attention_backward";
        let (btc, bhtt) = (d.b * d.t * d.nh * d.hs, d.b * d.nh * d.t * d.t);
        let ([dx], [dy, x, p]) = self.ptrs(op, [(dqkv, 3 * btc)], [(dout, btc), (qkv, 3 * btc), (probs, bhtt)])?;
        let g = self.head_gemms(d);
        let bf16 = g.bf16;
        let [b, t, nh, hs] = head_dims(op, d)?;
        let scale = head_scale(d) as f32;
        if self.fused(bf16, d) {
            let (cfg, dkv) = (fused_cfg(d, fused_warps(d.t)), fused_cfg(d, FA_DKV_WARPS));
            let ds = self.scratch(Slot::Temp, bhtt)?;
            return self.with_rounded_copy(dqkv, 3 * btc, |be, copy| {
                launch!(be, "attention_fused_backward_dq", cfg, x, dy, p, dx, copy, ds, t, nh, hs, scale)
                    .and_then(|()| launch!(be, "attention_fused_backward_dkv", dkv, x, dy, p, ds, dx, copy, t, nh, hs))
            });
        }
        let [q, k, v] = self.heads_of(op, qkv, x, d, bf16)?;
        let doh = if bf16 { self.bf16_scratch(Bf16Slot::HeadRows, btc)? } else { self.scratch(Slot::HeadRows, btc)? };
        let rows = table_cfg(op, d.b * d.t, d.nh * d.hs)?;
        launch!(self, "heads_rows", rows, doh, 0u64, dy, b, t, nh, hs, if bf16 { 2i32 } else { 0 })?;
        let ds = self.scratch(Slot::Temp, g.padded_len)?;
        self.gemm_ptrs(ds, doh, v, g.scores_like)?;
        let rows = d.b * d.nh * d.t;
        // bf16: dS and P rounded into bf16 scratch for the GEMMs; otherwise dS in place.
        let (dsb, pb) = if bf16 {
            (self.bf16_scratch(Bf16Slot::Scores, g.padded_len)?, self.bf16_scratch(Bf16Slot::Probs, g.padded_len)?)
        } else {
            (0, 0)
        };
        let (cfg, ld) = (warp_rows_cfg(op, rows)?, i32_of(op, g.ld)?);
        launch!(self, "attention_softmax_backward", cfg, ds, dsb, p, pb, t, ld, scale, rows as i64)?;
        let (ds, p) = if bf16 { (dsb, pb) } else { (ds, p) };
        let grads = self.scratch(Slot::HeadGrads, 3 * btc)?;
        let (dq, dk, dv) = (grads, grads + 4 * btc as u64, grads + 8 * btc as u64);
        self.gemm_ptrs(dq, ds, k, g.pv)?;
        self.gemm_ptrs(dk, ds, q, g.transposed_pv)?;
        self.gemm_ptrs(dv, p, doh, g.transposed_pv)?;
        self.with_rounded_copy(dqkv, 3 * btc, |be, copy| be.qkv_heads(op, dx, copy, grads, d, 0))
    }

    fn act_forward(&mut self, out: Buf, inp: Buf, act: HiddenAct) -> Result<(), Error> {
        let n = out.len;
        let ([o], [x]) = self.ptrs("act_forward", [(out, 0)], [(inp, n)])?;
        self.with_rounded_copy(out, n, |be, copy| {
            launch!(be, "act_forward_f32", unrolled_cfg(n), o, copy, x, act_code(act), n as i64)
        })
    }

    fn act_backward(&mut self, dinp: Buf, dout: Buf, inp: Buf, act: HiddenAct) -> Result<(), Error> {
        let n = dinp.len;
        let ([dx], [dy, x]) = self.ptrs("act_backward", [(dinp, 0)], [(dout, n), (inp, n)])?;
        self.with_rounded_copy(dinp, n, |be, copy| {
            launch!(be, "act_backward_f32", unrolled_cfg(n), dx, copy, dy, x, act_code(act), n as i64)
        })
    }

    fn embedding_forward(&mut self, out: Buf, table: Buf, ids: IdxBuf, c: usize) -> Result<(), Error> {
        let op = "embedding_forward";
        let (pi, host) = self.ids(op, ids)?;
        check_ids(host, table.len, c)?;
        let n = ids.len * c;
        let ([o], [tb]) = self.ptrs(op, [(out, n)], [(table, 0)])?;
        launch!(self, "embedding_forward_f32", elem_cfg(n), o, tb, pi, i32_of(op, c)?, n as i64)
    }

    fn embedding_backward(&mut self, dtable: Buf, dout: Buf, ids: IdxBuf, c: usize) -> Result<(), Error> {
        let op = "embedding_backward";
        let (_, host) = self.ids(op, ids)?;
        check_ids(host, dtable.len, c)?;
        // The same ids as the last call (a task's prompts, step after step) have the table the
        // buffer already holds: no grouping, no copy.
        let mut regroup = host != self.grouped.as_slice();
        let ([dt], [dy]) = self.ptrs(op, [(dtable, 0)], [(dout, ids.len * c)])?;
        if ids.len == 0 {
            return Ok(());
        }
        // Sized for the worst case of the whole index arena (every row its own group), not for
        // this call, so it does not grow when a later task has longer prompts or more distinct
        // ids: device memory stays the same from task to task.
        let room = 3 * self.idx_host.get(ids.arena as usize).map_or(0, Vec::len) + 1;
        if self.groups.as_ref().is_none_or(|a| a.len < room) {
            self.launch_captured()?;
            self.groups = None;
            self.groups = Some(self.alloc_arena::<u32>(room)?);
            regroup = true;
        }
        let base = self.groups.as_ref().map_or(0, |a| a.base);
        if regroup {
            let host = self.ids(op, ids)?.1.to_vec();
            let (table, groups) = group_by_destination(&host);
            // SAFETY: `base` has room for `table` (grown above); stream-ordered after earlier
            // users.
            unsafe { self.upload(base, &table) }?;
            (self.grouped, self.group_count) = (host, groups);
        }
        let groups = self.group_count;
        let (pdest, pstart, prows) = (base, base + 4 * groups as u64, base + 4 * (2 * groups as u64 + 1));
        let cfg = row_cfg(groups, c);
        launch!(self, "embedding_backward_f32", cfg, dt, dy, pdest, pstart, prows, i32_of(op, c)?)
    }

    fn patchify_forward(&mut self, out: Buf, pixels: Buf, d: Patches) -> Result<(), Error> {
        let (n, args) = patch_args("patchify_forward", d)?;
        let ([o], [x]) = self.ptrs("patchify_forward", [(out, n)], [(pixels, n)])?;
        launch!(self, "patchify_forward_f32", elem_cfg(n), o, x, args.0, args.1, args.2, n as i64)
    }

    fn patchify_backward(&mut self, dpixels: Buf, dout: Buf, d: Patches) -> Result<(), Error> {
        let (n, args) = patch_args("patchify_backward", d)?;
        let ([dx], [dy]) = self.ptrs("patchify_backward", [(dpixels, n)], [(dout, n)])?;
        launch!(self, "patchify_backward_f32", elem_cfg(n), dx, dy, args.0, args.1, args.2, n as i64)
    }

    fn vision_embed_forward(
        &mut self, out: Buf, patch_out: Buf, class_emb: Buf, pos: Buf, b: usize, t: usize, c: usize,
    ) -> Result<(), Error> {
        let op = "vision_embed_forward";
        if t == 0 {
            return Err(Error::Buffer { op, reason: "no tokens" });
        }
        let n = b * t * c;
        let ([o], [p, ce, ps]) =
            self.ptrs(op, [(out, n)], [(patch_out, b * (t - 1) * c), (class_emb, c), (pos, t * c)])?;
        launch!(self, "vision_embed_forward_f32", elem_cfg(n), o, p, ce, ps, i32_of(op, t)?, i32_of(op, c)?, n as i64)
    }

    fn vision_embed_backward(
        &mut self, dpatch_out: Buf, dclass_emb: Buf, dpos: Buf, dout: Buf, b: usize, t: usize, c: usize,
    ) -> Result<(), Error> {
        let op = "vision_embed_backward";
        if t == 0 {
            return Err(Error::Buffer { op, reason: "no tokens" });
        }
        let np = b * (t - 1) * c;
        let ([dp, dc, dps], [dy]) =
            self.ptrs(op, [(dpatch_out, np), (dclass_emb, c), (dpos, t * c)], [(dout, b * t * c)])?;
        if np > 0 {
            let (ti, ci) = (i32_of(op, t)?, i32_of(op, c)?);
            launch!(self, "vision_embed_backward_patches_f32", elem_cfg(np), dp, dy, ti, ci, np as i64)?;
        }
        self.column_sum(dps, dy, b, t * c, t * c)?;
        self.column_sum(dc, dy, b, t * c, c)
    }

    fn l2_normalize_forward(&mut self, out: Buf, norm: Buf, inp: Buf, d: Rows) -> Result<(), Error> {
        let op = "l2_normalize_forward";
        let rc = d.rows * d.c;
        let ([o, n], [x]) = self.ptrs(op, [(out, rc), (norm, d.rows)], [(inp, rc)])?;
        launch!(self, "l2_normalize_forward_f32", row_cfg(d.rows, d.c), o, n, x, i32_of(op, d.c)?, d.eps as f32)
    }

    fn l2_normalize_backward(&mut self, dinp: Buf, dout: Buf, out: Buf, norm: Buf, d: Rows) -> Result<(), Error> {
        let op = "l2_normalize_backward";
        let rc = d.rows * d.c;
        let ([dx], [dy, y, n]) = self.ptrs(op, [(dinp, rc)], [(dout, rc), (out, rc), (norm, d.rows)])?;
        let cfg = row_cfg(d.rows, d.c);
        launch!(self, "l2_normalize_backward_f32", cfg, dx, dy, y, n, i32_of(op, d.c)?, d.eps as f32)
    }

    fn row_dot_forward(&mut self, out: Buf, a: Buf, b: Buf, d: Rows) -> Result<(), Error> {
        let op = "row_dot_forward";
        let rc = d.rows * d.c;
        let ([o], [pa, pb]) = self.ptrs(op, [(out, d.rows)], [(a, rc), (b, rc)])?;
        if d.c < LONG_ROW_CHUNK {
            return launch!(self, "row_dot_f32", row_cfg(d.rows, d.c), o, pa, pb, i32_of(op, d.c)?);
        }
        // A few very long rows (‖θ − θ_{t−1}‖² over all parameters): many blocks per row.
        let chunks = d.c.div_ceil(LONG_ROW_CHUNK);
        let partial = self.scratch(Slot::Partial, d.rows * chunks)?;
        let cfg = LaunchConfig {
            grid_dim: (
                u32::try_from(chunks).map_err(|_| too_big(op))?,
                u32::try_from(d.rows).map_err(|_| too_big(op))?,
                1,
            ),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (c, len, ch) = (d.c as i64, LONG_ROW_CHUNK as i64, i32_of(op, chunks)?);
        launch!(self, "row_dot_partial_f32", cfg, partial, pa, pb, c, len, ch)?;
        launch!(self, "row_sum_f32", row_cfg(d.rows, chunks), o, partial, ch)
    }

    fn row_dot_backward(
        &mut self, da: Option<Buf>, db: Option<Buf>, dout: Buf, a: Buf, b: Buf, d: Rows,
    ) -> Result<(), Error> {
        let op = "row_dot_backward";
        let rc = d.rows * d.c;
        for (dst, src) in [(da, b), (db, a)] {
            if let Some(dst) = dst {
                let ([g], [dy, s]) = self.ptrs(op, [(dst, rc)], [(dout, d.rows), (src, rc)])?;
                launch!(self, "row_scaled_add_f32", elem_cfg(rc), g, dy, s, i32_of(op, d.c)?, rc as i64)?;
            }
        }
        Ok(())
    }

    fn row_kl_forward(&mut self, out: Buf, p_log: Buf, q_log: Buf, d: Rows) -> Result<(), Error> {
        let op = "row_kl_forward";
        let rc = d.rows * d.c;
        let ([o], [lp, lq]) = self.ptrs(op, [(out, d.rows)], [(p_log, rc), (q_log, rc)])?;
        launch!(self, "row_kl_f32", row_cfg(d.rows, d.c), o, lp, lq, i32_of(op, d.c)?)
    }

    fn row_kl_backward(
        &mut self, dp_log: Option<Buf>, dq_log: Option<Buf>, dout: Buf, p_log: Buf, q_log: Buf, d: Rows,
    ) -> Result<(), Error> {
        let op = "row_kl_backward";
        let rc = d.rows * d.c;
        for (dst, teacher) in [(dp_log, 1i32), (dq_log, 0)] {
            if let Some(dst) = dst {
                let ([g], [dy, lp, lq]) = self.ptrs(op, [(dst, rc)], [(dout, d.rows), (p_log, rc), (q_log, rc)])?;
                let ci = i32_of(op, d.c)?;
                launch!(self, "kl_backward_f32", elem_cfg(rc), g, dy, lp, lq, teacher, ci, rc as i64)?;
            }
        }
        Ok(())
    }

    fn cross_entropy_forward(&mut self, loss: Buf, lse: Buf, logits: Buf, targets: IdxBuf, d: Ce) -> Result<(), Error> {
        let op = "cross_entropy_forward";
        let pt = self.targets(op, targets, d)?;
        let ([l, s], [z]) = self.ptrs(op, [(loss, d.rows), (lse, d.rows)], [(logits, d.rows * d.nc)])?;
        let nc = i32_of(op, d.nc)?;
        launch!(self, "cross_entropy_forward_f32", row_cfg(d.rows, d.nc), l, s, z, pt, nc, d.smoothing as f32)
    }

    fn cross_entropy_backward(
        &mut self, dlogits: Buf, dloss: Buf, logits: Buf, lse: Buf, targets: IdxBuf, d: Ce,
    ) -> Result<(), Error> {
        let op = "cross_entropy_backward";
        let pt = self.targets(op, targets, d)?;
        let rn = d.rows * d.nc;
        let ([dz], [dl, z, s]) = self.ptrs(op, [(dlogits, rn)], [(dloss, d.rows), (logits, rn), (lse, d.rows)])?;
        let nc = i32_of(op, d.nc)?;
        launch!(self, "cross_entropy_backward_f32", row_cfg(d.rows, d.nc), dz, dl, z, s, pt, nc, d.smoothing as f32)
    }

    fn teacher_weights(
        &mut self, alpha: Buf, stat: Buf, rule: WeightRule, teachers: usize, b: usize,
    ) -> Result<(), Error> {
        let op = "teacher_weights";
        let (code, p0, p1, stat_len) = match rule {
            WeightRule::Confidence { tau } => (0i32, tau, 0.0, teachers * b),
            WeightRule::Discrepancy { scale, threshold } => {
                if teachers != 2 {
                    return Err(Error::Buffer { op, reason: "the discrepancy rule needs two teachers" });
                }
                (1, scale, threshold, b)
            }
        };
        let ([a], [s]) = self.ptrs(op, [(alpha, teachers * b)], [(stat, stat_len)])?;
        let (ti, bi) = (i32_of(op, teachers)?, i32_of(op, b)?);
        launch!(self, "teacher_weights_f32", elem_cfg(b), a, s, code, p0, p1, ti, bi)
    }

    fn prototype_ema(
        &mut self, protos: Buf, sums: Buf, counts: Buf, momentum: f64, d: Rows, guard: Option<Buf>,
    ) -> Result<(), Error> {
        let op = "prototype_ema";
        let rc = d.rows * d.c;
        let ([p], [s, n]) = self.ptrs(op, [(protos, rc)], [(sums, rc), (counts, d.rows)])?;
        let g = self.guard_ptr(op, guard)?;
        let cfg = row_cfg(d.rows, d.c);
        launch!(self, "prototype_ema_f32", cfg, p, s, n, g, momentum as f32, i32_of(op, d.c)?, d.eps as f32)
    }

    fn scale(&mut self, y: Buf, a: f64) -> Result<(), Error> {
        let ([py], []) = self.ptrs("scale", [(y, 0)], [])?;
        launch!(self, "scale_f32", elem_cfg(y.len), py, a as f32, y.len as i64)
    }

    fn axpby(&mut self, y: Buf, x: Buf, a: f64, b: f64) -> Result<(), Error> {
        let ([py], [px]) = self.ptrs("axpby", [(y, 0)], [(x, y.len)])?;
        launch!(self, "axpby_f32", unrolled_cfg(y.len), py, px, a as f32, b as f32, y.len as i64)
    }

    fn adamw(&mut self, params: Buf, grads: Buf, m: Buf, v: Buf, hp: AdamW) -> Result<(), Error> {
        let n = params.len;
        let ([p, pm, pv], [g]) = self.ptrs("adamw", [(params, 0), (m, n), (v, n)], [(grads, n)])?;
        let guard = self.guard_ptr("adamw", hp.guard)?;
        // The same f32 constants as the CPU backend (bias corrections in f64, then rounded).
        let bc1 = 1.0 - hp.beta1.powf(hp.step as f64);
        let bc2_sqrt = (1.0 - hp.beta2.powf(hp.step as f64)).sqrt();
        let decay = (1.0 - hp.lr * hp.weight_decay) as f32;
        let step_size = (hp.lr / bc1) as f32;
        let (b1, b2, bc2s, eps) = (hp.beta1 as f32, hp.beta2 as f32, bc2_sqrt as f32, hp.eps as f32);
        launch!(self, "adamw_f32", elem_cfg(n), p, g, pm, pv, guard, decay, b1, b2, step_size, bc2s, eps, n as i64)
    }

    fn device_memory(&mut self) -> Option<u64> {
        self.memory_in_use().ok()
    }
}

impl Drop for CudaBackend {
    /// Work still in an open capture is launched, so a dropped backend leaves nothing undone
    /// that it queued (as without graphs), and waited for, so that its buffers, graphs and
    /// kernels are released after it whatever order the fields drop in.
    fn drop(&mut self) {
        if self.graphs.is_some() {
            let _ = self.launch_captured();
            let _ = self.stream.synchronize();
            self.graphs = None;
        }
    }
}

impl CudaBackend {
    fn softmax_fwd(&mut self, op: &'static str, out: Buf, inp: Buf, d: Rows, log: i32) -> Result<(), Error> {
        let rc = d.rows * d.c;
        let ([o], [x]) = self.ptrs(op, [(out, rc)], [(inp, rc)])?;
        launch!(self, "softmax_forward_f32", row_cfg(d.rows, d.c), o, x, i32_of(op, d.c)?, log)
    }

    fn softmax_bwd(
        &mut self, op: &'static str, dinp: Buf, dout: Buf, out: Buf, d: Rows, log: i32,
    ) -> Result<(), Error> {
        let rc = d.rows * d.c;
        let ([dx], [dy, y]) = self.ptrs(op, [(dinp, rc)], [(dout, rc), (out, rc)])?;
        launch!(self, "softmax_backward_f32", row_cfg(d.rows, d.c), dx, dy, y, i32_of(op, d.c)?, log)
    }

    /// Device pointer of the targets, after checking them against `nc` on the host mirror.
    fn targets(&self, op: &'static str, targets: IdxBuf, d: Ce) -> Result<u64, Error> {
        let (pt, host) = self.ids(op, targets)?;
        let host = host.get(..d.rows).ok_or(Error::Buffer { op, reason: "fewer targets than rows" })?;
        if let Some(&bad) = host.iter().find(|&&y| y as usize >= d.nc) {
            return Err(Error::Index { what: "class label", index: bad as usize, bound: d.nc });
        }
        Ok(pt)
    }
}

/// The embedding backward's table for `ids`: the rows grouped by destination (stable, so each
/// destination adds in row order) as `[dest; start (groups + 1); order]`, and the group count.
fn group_by_destination(ids: &[u32]) -> (Vec<u32>, usize) {
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    order.sort_by_key(|&r| ids[r as usize]);
    let mut dest = Vec::new();
    let mut start = Vec::new();
    for (k, &r) in order.iter().enumerate() {
        if k == 0 || ids[r as usize] != ids[order[k - 1] as usize] {
            dest.push(ids[r as usize]);
            start.push(k as u32);
        }
    }
    start.push(order.len() as u32);
    let groups = dest.len();
    (dest.into_iter().chain(start).chain(order).collect(), groups)
}

fn act_code(act: HiddenAct) -> i32 {
    match act {
        HiddenAct::QuickGelu => 0,
        HiddenAct::Gelu => 1,
    }
}

/// Most warps per block of the fused attention forward and its dq pass, 16 query rows each
/// (`FA_WARPS` in kernels/attention.cu), and the warps of the dkv pass, 16 keys each
/// (`FA_DKV_WARPS`).
const FA_WARPS: usize = 8;
const FA_DKV_WARPS: usize = 4;

/// Warps per block of the fused forward and dq pass for t rows: the fewest blocks of at most
/// FA_WARPS warps, then as few warps as cover t in them (at least 4, which the kernels' loads
/// assume). 197 rows: two blocks of 7 (224 rows, where 8 gave 256); 77 rows: one block of 5.
fn fused_warps(t: usize) -> usize {
    let tiles = t.div_ceil(16);
    tiles.div_ceil(tiles.div_ceil(FA_WARPS)).max(4)
}

/// One block of `warps` warps per 16·warps rows of each of attention's b·nh heads.
fn fused_cfg(d: Attn, warps: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (d.t.div_ceil(16 * warps) as u32, (d.b * d.nh) as u32, 1),
        block_dim: (32 * warps as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Attention's score scale, 1/√hs.
fn head_scale(d: Attn) -> f64 {
    1.0 / (d.hs as f64).sqrt()
}

/// Whether the fused attention kernels take these shapes: head sizes a multiple of 16 up to 64
/// (ViT-B/16 and CLIP's text tower have 64) and one grid row per head; others take the GEMM
/// path.
fn fused_fits(d: Attn) -> bool {
    d.hs.is_multiple_of(16) && d.hs <= 64 && d.b * d.nh <= MAX_GRID_Y
}

/// A GEMM's row strides (elements) of A, B and C, each stored row-major.
#[derive(Clone, Copy, Debug)]
struct Lds {
    a: usize,
    b: usize,
    c: usize,
}

impl Lds {
    /// Rows packed: each matrix's row stride is its row's length.
    fn packed(d: Gemm) -> Self {
        Lds { a: if d.trans_a { d.m } else { d.k }, b: if d.trans_b { d.k } else { d.n }, c: d.n }
    }
}

/// Attention's per-head products, each one strided batched GEMM over the b·nh heads. In bf16
/// mode the [t, t] matrices (S, dP and the bf16 P and dS) live in scratch with rows `ld` apart,
/// t rounded up to 8 elements: with t = 197 or 77 packed rows every row and every head's
/// matrix started misaligned, and cuBLAS ran its unaligned kernels. In f32 mode S and dS are
/// computed in the probs arena and scratch as they are, rows t apart.
struct HeadGemms {
    bf16: bool,
    /// Row stride of the [t, t] matrices.
    ld: usize,
    /// Elements of b·nh [t, t] matrices with rows `ld` apart.
    padded_len: usize,
    /// S = q·kᵀ/√hs: [t, hs]·[t, hs]ᵀ.
    scores: (Gemm, Lds),
    /// dP = dO·vᵀ: as `scores` without the scale.
    scores_like: (Gemm, Lds),
    /// O = P·v and dq = dS·k: [t, t]·[t, hs].
    pv: (Gemm, Lds),
    /// dk = dSᵀ·q and dv = Pᵀ·dO.
    transposed_pv: (Gemm, Lds),
}

impl HeadGemms {
    fn new(d: Attn, bf16: bool) -> Self {
        let (t, hs, heads) = (d.t, d.hs, d.b * d.nh);
        let ld = if bf16 { t.next_multiple_of(8) } else { t };
        let batched = |g: Gemm, sa: usize, sb: usize, sc: usize| {
            let g = Gemm { batch: heads, stride_a: sa, stride_b: sb, stride_c: sc, ..g.low_precision() };
            (g, Lds::packed(g))
        };
        let scale = head_scale(d);
        let with_c = |(g, l): (Gemm, Lds)| (g, Lds { c: ld, ..l });
        let with_a = |(g, l): (Gemm, Lds)| (g, Lds { a: ld, ..l });
        HeadGemms {
            bf16,
            ld,
            padded_len: heads * t * ld,
            scores: with_c(batched(Gemm::new(t, t, hs, false, true, scale, 0.0), t * hs, t * hs, t * ld)),
            scores_like: with_c(batched(Gemm::new(t, t, hs, false, true, 1.0, 0.0), t * hs, t * hs, t * ld)),
            pv: with_a(batched(Gemm::new(t, hs, t, false, false, 1.0, 0.0), t * ld, t * hs, t * hs)),
            transposed_pv: with_a(batched(Gemm::new(t, hs, t, true, false, 1.0, 0.0), t * ld, t * hs, t * hs)),
        }
    }
}

/// `[b, t, nh, hs]` of attention as the kernels' ints, which also index the b·t token rows (a
/// grid's stride beyond them) and the 3·nh·hs packed columns in 32 bits: checked to fit.
fn head_dims(op: &'static str, d: Attn) -> Result<[i32; 4], Error> {
    i32_of(op, d.b * d.t + MAX_GRID_Y)?;
    i32_of(op, 3 * d.nh * d.hs)?;
    Ok([i32_of(op, d.b)?, i32_of(op, d.t)?, i32_of(op, d.nh)?, i32_of(op, d.hs)?])
}

/// Element count and (channels, side, patch) of a patch layout, checked.
fn patch_args(op: &'static str, d: Patches) -> Result<(usize, (i32, i32, i32)), Error> {
    if d.patch == 0 || !d.side.is_multiple_of(d.patch) {
        return Err(Error::Buffer { op, reason: "patch must divide the image side" });
    }
    let n = d.b * d.channels * d.side * d.side;
    Ok((n, (i32_of(op, d.channels)?, i32_of(op, d.side)?, i32_of(op, d.patch)?)))
}

#[cfg(test)]
mod tests {
    use super::extent;

    #[test]
    fn extent_covers_strided_and_broadcast_batches() {
        assert_eq!(extent(0, 10, 6), 0);
        assert_eq!(extent(1, 10, 6), 6);
        assert_eq!(extent(3, 10, 6), 26);
        assert_eq!(extent(3, 0, 6), 6);
    }
}
