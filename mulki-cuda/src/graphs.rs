//! CUDA graphs (`--device cuda:N:…:graphs`): the backend's work is captured, stretch by stretch,
//! into graphs, each launched as one unit, so the GPU runs a stretch of kernels without a
//! launch's gap between each pair.
//!
//! A stretch is the run of kernels, cuBLAS GEMMs and device copies between two operations that
//! involve the host: an upload, a copy back, a wait, an allocation (a scratch buffer growing).
//! Capture begins at the stretch's first operation and ends at the next host-facing one, which
//! launches the graph first, so everything stays in stream order. The host bookkeeping (bounds
//! checks, the rounded-operand pool, scratch sizes) runs as the calls arrive, exactly as without
//! graphs; only the device work is deferred, to the end of its stretch. The first operation of
//! each name and shape runs outside any capture, as a warm-up (see `Graphs::operation`).
//!
//! Every stretch is captured again each time, because its kernels' arguments change from step
//! to step (the learning rate, AdamW's step count, pointers into a grown buffer). A captured
//! graph updates the executable graph of the same shape (the same sequence of operations, kept
//! by a hash of their names and launch shapes) with `cuGraphExecUpdate`, which is much cheaper
//! than instantiating it; a new shape, or an update CUDA refuses, instantiates one. Capture is
//! in relaxed mode on a stream of the backend's own: CUDA cannot capture the legacy default
//! stream.
use std::collections::{HashMap, HashSet};
use std::ptr;

use cudarc::driver::{result, sys, CudaStream};
use mulki_core::Error;

use crate::backend::driver;

/// Executable graphs kept; past this, the one launched least recently is destroyed.
const MAX_EXECS: usize = 64;

/// How the stretches ran: counts since the backend was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphUse {
    /// Graphs launched (one per stretch).
    pub launches: u64,
    /// Operations captured into them.
    pub operations: u64,
    /// Launches that updated an executable graph of their shape.
    pub updated: u64,
    /// Launches that instantiated one (a new shape, or an update CUDA refused).
    pub instantiated: u64,
    /// Operations run outside a capture, the first of their name and shape (the warm-up).
    pub warmed_up: u64,
}

/// An executable graph, destroyed on drop.
struct Exec {
    exec: sys::CUgraphExec,
    last_launch: u64,
}

impl Drop for Exec {
    fn drop(&mut self) {
        // SAFETY: `exec` came from cuGraphInstantiate and is destroyed once, here.
        let _ = unsafe { result::graph::exec_destroy(self.exec) };
    }
}

/// A captured graph, destroyed on drop (its executable keeps what it needs).
struct Captured(sys::CUgraph);

impl Drop for Captured {
    fn drop(&mut self) {
        // SAFETY: the graph came from cuStreamEndCapture and is destroyed once, here.
        let _ = unsafe { result::graph::destroy(self.0) };
    }
}

/// FNV-1a offset basis and prime: the stretch's shape as a running hash.
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// `hash` extended by an operation's name and shape.
fn fnv(hash: u64, name: &str, shape: &[u64]) -> u64 {
    name.bytes()
        .chain(shape.iter().flat_map(|x| x.to_le_bytes()))
        .fold(hash, |h, b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// The capture state of one stream.
pub(crate) struct Graphs {
    /// A capture is open: the stretch's operations so far are in it, not yet launched.
    open: bool,
    /// Hash of the open stretch's operation names and shapes.
    shape: u64,
    operations: u64,
    execs: HashMap<u64, Exec>,
    /// Operations (by name and shape) that have run once outside a capture.
    warmed: HashSet<u64>,
    /// A stretch failed to end or launch: its operations, each accepted when issued, never
    /// ran, so every later operation is refused rather than run on stale state.
    failed: bool,
    used: GraphUse,
}

impl Graphs {
    pub fn new() -> Self {
        Graphs {
            open: false,
            shape: FNV_START,
            operations: 0,
            execs: HashMap::new(),
            warmed: HashSet::new(),
            failed: false,
            used: GraphUse::default(),
        }
    }

    pub fn used(&self) -> GraphUse {
        self.used
    }

    /// Called before a device operation (`name`, with the numbers that shape it) is issued on
    /// `stream`: opens a capture when none is open. The first operation of each name and shape
    /// runs outside any capture (the open one is launched first): its first launch may load a
    /// kernel (CUDA loads modules lazily, and cuBLAS picks and loads its kernels on first use),
    /// which a capture must not see, so every kind of operation is warmed up once, as PyTorch
    /// warms up before it captures.
    pub fn operation(&mut self, stream: &CudaStream, name: &str, shape: &[u64]) -> Result<(), Error> {
        self.check()?;
        let key = fnv(FNV_START, name, shape);
        if self.warmed.insert(key) {
            self.used.warmed_up += 1;
            return self.launch(stream);
        }
        if !self.open {
            stream
                .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
                .map_err(driver("cuStreamBeginCapture"))?;
            self.open = true;
            self.shape = FNV_START;
            self.operations = 0;
        }
        self.shape = fnv(self.shape, name, shape);
        self.operations += 1;
        Ok(())
    }

    /// Ends the open capture, if any, and launches it on `stream`: called before anything
    /// that involves the host.
    pub fn launch(&mut self, stream: &CudaStream) -> Result<(), Error> {
        self.check()?;
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let launched = self.end_and_launch(stream);
        self.failed = launched.is_err();
        launched
    }

    /// An error once a stretch has failed (see `failed`).
    fn check(&self) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Buffer { op: "CUDA graph", reason: "an earlier stretch of work failed to run" });
        }
        Ok(())
    }

    fn end_and_launch(&mut self, stream: &CudaStream) -> Result<(), Error> {
        // SAFETY: the stream is live and capturing (opened by `operation`).
        let graph =
            Captured(unsafe { result::stream::end_capture(stream.cu_stream()) }.map_err(driver("cuStreamEndCapture"))?);
        if graph.0.is_null() {
            return Ok(());
        }
        let n = self.used.launches + 1;
        let updated = match self.execs.get_mut(&self.shape) {
            Some(e) => {
                let mut info = sys::CUgraphExecUpdateResultInfo {
                    result: sys::CUgraphExecUpdateResult::CU_GRAPH_EXEC_UPDATE_SUCCESS,
                    errorNode: ptr::null_mut(),
                    errorFromNode: ptr::null_mut(),
                };
                // SAFETY: both handles are live; on failure the executable is left as it was.
                let ok =
                    unsafe { sys::cuGraphExecUpdate_v2(e.exec, graph.0, &mut info) } == sys::CUresult::CUDA_SUCCESS;
                e.last_launch = n;
                ok
            }
            None => false,
        };
        if updated {
            self.used.updated += 1;
        } else {
            let flags = sys::CUgraphInstantiate_flags(0);
            // SAFETY: `graph` is a live captured graph.
            let exec = unsafe { result::graph::instantiate(graph.0, flags) }.map_err(driver("cuGraphInstantiate"))?;
            if self.execs.len() >= MAX_EXECS && !self.execs.contains_key(&self.shape) {
                let oldest = self.execs.iter().min_by_key(|(_, e)| e.last_launch).map(|(k, _)| *k);
                oldest.and_then(|k| self.execs.remove(&k));
            }
            self.execs.insert(self.shape, Exec { exec, last_launch: n });
            self.used.instantiated += 1;
        }
        let exec = self.execs.get(&self.shape).map_or(ptr::null_mut(), |e| e.exec);
        // SAFETY: `exec` is live; it runs after everything queued on the stream before it.
        unsafe { result::graph::launch(exec, stream.cu_stream()) }.map_err(driver("cuGraphLaunch"))?;
        self.used.launches = n;
        self.used.operations += self.operations;
        Ok(())
    }
}
