//! Stream capture and CUDA graphs on the emulated driver, driven through cudarc as a backend
//! does: what a capture records and refuses, what a graph launch and an update do, and cuBLAS
//! in a capture. Each test has its own context and stream, so they run side by side.
use std::ptr::null_mut;
use std::sync::Arc;

use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::sys::{self, CUresult, CUstreamCaptureStatus as Status};
use cudarc::driver::{
    result, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

/// A context (event tracking off, as in mulki's backend: one stream, no cross-stream events), a
/// stream of its own and the kernels; `None` where the emulator is not available.
fn setup() -> Option<(Arc<CudaContext>, Arc<CudaStream>, Kernels)> {
    if let Some(why) = mulki_cuda_emulator::unavailable() {
        eprintln!("skipped: {why}");
        return None;
    }
    mulki_cuda_emulator::install().unwrap_or_else(|e| panic!("{e}"));
    let ctx = CudaContext::new(0).expect("context");
    // SAFETY: before any allocation; every test orders its work on one stream.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().expect("cuStreamCreate");
    // The NVRTC stand-in "compiles" any source: the driver finds the kernels by name.
    let module = ctx.load_module(Ptx::from_src("// mulki's kernels")).expect("module");
    let k = |name: &str| module.load_function(name).expect(name);
    let kernels = Kernels { fill: k("fill_f32"), scale: k("scale_f32"), axpby: k("axpby_f32") };
    Some((ctx, stream, kernels))
}

struct Kernels {
    fill: CudaFunction,
    scale: CudaFunction,
    axpby: CudaFunction,
}

fn config(n: usize) -> LaunchConfig {
    LaunchConfig::for_num_elems(u32::try_from(n).expect("small"))
}

/// `fill_f32(y, v, n)` or `scale_f32(y, v, n)` (the same signature) on `stream`.
fn launch(stream: &Arc<CudaStream>, f: &CudaFunction, y: &mut CudaSlice<f32>, v: f32) -> Result<(), DriverError> {
    let n = y.len() as i64;
    let cfg = config(y.len());
    let mut b = stream.launch_builder(f);
    b.arg(y).arg(&v).arg(&n);
    // SAFETY: the arguments follow the kernels' signatures in elementwise.cu.
    unsafe { b.launch(cfg) }.map(|_| ())
}

fn err(code: CUresult) -> DriverError {
    DriverError(code)
}

fn status(stream: &CudaStream) -> Status {
    stream.capture_status().expect("cuStreamIsCapturing")
}

/// A captured graph, destroyed on drop.
struct Graph(sys::CUgraph);
impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: from cuStreamEndCapture, destroyed once.
        unsafe { result::graph::destroy(self.0) }.expect("cuGraphDestroy");
    }
}
impl Graph {
    fn nodes(&self) -> usize {
        let mut n = 0usize;
        // SAFETY: a live graph; a null array asks for the count.
        assert_eq!(unsafe { sys::cuGraphGetNodes(self.0, null_mut(), &mut n) }, CUresult::CUDA_SUCCESS);
        n
    }
}

/// An executable graph, destroyed on drop.
struct Exec(sys::CUgraphExec);
impl Drop for Exec {
    fn drop(&mut self) {
        // SAFETY: from cuGraphInstantiateWithFlags, destroyed once.
        unsafe { result::graph::exec_destroy(self.0) }.expect("cuGraphExecDestroy");
    }
}
impl Exec {
    fn new(graph: &Graph) -> Exec {
        // SAFETY: a live graph.
        Exec(unsafe { result::graph::instantiate(graph.0, sys::CUgraphInstantiate_flags(0)) }.expect("instantiate"))
    }
    fn launch(&self, stream: &CudaStream) -> Result<(), DriverError> {
        // SAFETY: a live executable graph and stream.
        unsafe { result::graph::launch(self.0, stream.cu_stream()) }
    }
    /// cuGraphExecUpdate_v2's result and the reason it gives.
    fn update(&self, graph: &Graph) -> (CUresult, sys::CUgraphExecUpdateResult) {
        let mut info = sys::CUgraphExecUpdateResultInfo {
            result: sys::CUgraphExecUpdateResult::CU_GRAPH_EXEC_UPDATE_ERROR,
            errorNode: null_mut(),
            errorFromNode: null_mut(),
        };
        // SAFETY: live handles; `info` is written.
        let r = unsafe { sys::cuGraphExecUpdate_v2(self.0, graph.0, &mut info) };
        (r, info.result)
    }
}

/// Captures what `body` issues on `stream` (relaxed mode, as mulki's backend uses); the body's
/// error comes first, then the capture's.
fn capture(stream: &Arc<CudaStream>, body: impl FnOnce() -> Result<(), DriverError>) -> Result<Graph, DriverError> {
    stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)?;
    assert_eq!(status(stream), Status::CU_STREAM_CAPTURE_STATUS_ACTIVE);
    let r = body();
    // SAFETY: the stream is live and captures.
    let graph = unsafe { result::stream::end_capture(stream.cu_stream()) };
    r?;
    let graph = graph?;
    assert!(!graph.is_null());
    Ok(Graph(graph))
}

fn counts() -> (u64, u64) {
    mulki_cuda_emulator::graph_launches().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn captured_work_runs_at_launch_and_not_before() {
    let Some((_ctx, stream, k)) = setup() else { return };
    let n = 3000;
    let mut y = stream.alloc_zeros::<f32>(n).unwrap();
    let mut z = stream.alloc_zeros::<f32>(n).unwrap();
    let mut w = stream.clone_htod(&vec![7.0f32; n]).unwrap();
    let before = counts();
    let graph = capture(&stream, || {
        launch(&stream, &k.fill, &mut y, 3.0)?;
        stream.memcpy_dtod(&y, &mut z)?;
        stream.memset_zeros(&mut w)
    })
    .unwrap();
    assert_eq!(status(&stream), Status::CU_STREAM_CAPTURE_STATUS_NONE);
    assert_eq!(graph.nodes(), 3);
    // Recorded, not run.
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![0.0; n]);
    assert_eq!(stream.clone_dtoh(&z).unwrap(), vec![0.0; n]);
    assert_eq!(stream.clone_dtoh(&w).unwrap(), vec![7.0; n]);
    let exec = Exec::new(&graph);
    drop(graph); // the executable keeps its own nodes
    assert_eq!(counts(), before, "nothing launched yet");
    exec.launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![3.0; n]);
    assert_eq!(stream.clone_dtoh(&z).unwrap(), vec![3.0; n]);
    assert_eq!(stream.clone_dtoh(&w).unwrap(), vec![0.0; n]);
    assert_eq!(counts(), (before.0 + 1, before.1 + 3));
    // Again, on changed data: the graph runs the same operations.
    stream.memcpy_htod(&vec![1.0f32; n], &mut w).unwrap();
    stream.memcpy_htod(&vec![1.0f32; n], &mut y).unwrap();
    exec.launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![3.0; n]);
    assert_eq!(stream.clone_dtoh(&w).unwrap(), vec![0.0; n]);
    assert_eq!(counts(), (before.0 + 2, before.1 + 6));
    stream.synchronize().unwrap();
}

#[test]
fn an_update_takes_new_parameters_or_fails_and_leaves_the_executable() {
    let Some((_ctx, stream, k)) = setup() else { return };
    let n = 1500;
    let mut y = stream.alloc_zeros::<f32>(n).unwrap();
    let mut z = stream.alloc_zeros::<f32>(n).unwrap();
    let exec = Exec::new(&capture(&stream, || launch(&stream, &k.fill, &mut y, 1.0)).unwrap());
    exec.launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![1.0; n]);

    // The same kernel with another value: updated.
    let g = capture(&stream, || launch(&stream, &k.fill, &mut y, 2.0)).unwrap();
    assert_eq!(exec.update(&g), (CUresult::CUDA_SUCCESS, sys::CUgraphExecUpdateResult::CU_GRAPH_EXEC_UPDATE_SUCCESS));
    exec.launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![2.0; n]);

    // Another kernel, another node count, another node kind: refused, the executable unchanged.
    use sys::CUgraphExecUpdateResult::*;
    let failure = CUresult::CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE;
    let g = capture(&stream, || launch(&stream, &k.scale, &mut y, 10.0)).unwrap();
    assert_eq!(exec.update(&g), (failure, CU_GRAPH_EXEC_UPDATE_ERROR_FUNCTION_CHANGED));
    let g = capture(&stream, || {
        launch(&stream, &k.fill, &mut y, 4.0)?;
        launch(&stream, &k.fill, &mut y, 5.0)
    })
    .unwrap();
    assert_eq!(exec.update(&g), (failure, CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED));
    let g = capture(&stream, || stream.memset_zeros(&mut y)).unwrap();
    assert_eq!(exec.update(&g), (failure, CU_GRAPH_EXEC_UPDATE_ERROR_NODE_TYPE_CHANGED));
    stream.memcpy_htod(&vec![-1.0f32; n], &mut y).unwrap();
    exec.launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![2.0; n], "the executable still fills 2");

    // Another buffer: a new pointer parameter.
    let g = capture(&stream, || launch(&stream, &k.fill, &mut z, 6.0)).unwrap();
    assert_eq!(exec.update(&g).0, CUresult::CUDA_SUCCESS);
    drop(g);
    stream.memcpy_htod(&vec![-1.0f32; n], &mut y).unwrap();
    exec.launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&z).unwrap(), vec![6.0; n]);
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![-1.0; n]);
}

#[test]
fn a_forbidden_call_fails_and_invalidates_the_capture() {
    let Some((ctx, stream, k)) = setup() else { return };
    let n = 100;
    let mut y = stream.alloc_zeros::<f32>(n).unwrap();
    let other = Exec::new(&capture(&stream, || launch(&stream, &k.fill, &mut y, 1.0)).unwrap());
    let other_stream = ctx.new_stream().unwrap();
    let unsupported = err(CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    type Call<'a> = Box<dyn Fn(&mut CudaSlice<f32>) -> Result<(), DriverError> + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        // On the capturing stream.
        ("cuStreamSynchronize", Box::new(|_| stream.synchronize())),
        ("cuMemcpyHtoDAsync", Box::new(|y| stream.memcpy_htod(&[1.0f32; 4], y))),
        ("cuMemcpyDtoHAsync", Box::new(|y| stream.clone_dtoh(y).map(|_| ()))),
        ("cuEventRecord", Box::new(|_| stream.record_event(None).map(|_| ()))),
        // From the capturing thread, on any stream.
        ("cuCtxSynchronize", Box::new(|_| ctx.synchronize())),
        ("cuMemAllocAsync", Box::new(|_| other_stream.alloc_zeros::<f32>(4).map(|_| ()))),
        // SAFETY: a plain allocation (it fails here).
        ("cuMemAlloc", Box::new(|_| unsafe { result::malloc_sync(16) }.map(|_| ()))),
        (
            "cuMemcpyDtoH",
            Box::new(|y| {
                let mut host = [0.0f32; 4];
                let (p, _sync) = y.device_ptr(&stream);
                // SAFETY: 16 bytes from a live allocation into `host`.
                unsafe { sys::cuMemcpyDtoH_v2(host.as_mut_ptr().cast(), p, 16) }.result()
            }),
        ),
        ("cuGraphLaunch", Box::new(|_| other.launch(&other_stream))),
    ];
    for (name, call) in &calls {
        stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED).unwrap();
        launch(&stream, &k.fill, &mut y, 2.0).unwrap();
        assert_eq!(call(&mut y).err(), Some(unsupported), "{name}");
        assert_eq!(status(&stream), Status::CU_STREAM_CAPTURE_STATUS_INVALIDATED, "{name}");
        assert_eq!(
            launch(&stream, &k.fill, &mut y, 3.0).err(),
            Some(err(CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED)),
            "{name}: an invalidated capture records nothing more"
        );
        // SAFETY: the stream is live and captures.
        let end = unsafe { result::stream::end_capture(stream.cu_stream()) };
        assert_eq!(end.err(), Some(err(CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED)), "{name}");
        assert_eq!(status(&stream), Status::CU_STREAM_CAPTURE_STATUS_NONE, "{name}");
        // Nothing ran, and the stream works again.
        assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![0.0; n], "{name}");
    }
    launch(&stream, &k.fill, &mut y, 4.0).unwrap();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![4.0; n]);
    stream.synchronize().unwrap();
}

#[test]
fn the_default_streams_cannot_capture_and_a_capture_begins_once() {
    let Some((ctx, stream, _k)) = setup() else { return };
    let relaxed = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
    let unsupported = err(CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    assert_eq!(ctx.default_stream().begin_capture(relaxed).err(), Some(unsupported));
    assert_eq!(ctx.per_thread_stream().begin_capture(relaxed).err(), Some(unsupported));
    assert_eq!(status(&ctx.default_stream()), Status::CU_STREAM_CAPTURE_STATUS_NONE);
    // SAFETY: a live stream that does not capture.
    let end = unsafe { result::stream::end_capture(stream.cu_stream()) };
    assert_eq!(end.err(), Some(err(CUresult::CUDA_ERROR_ILLEGAL_STATE)));
    stream.begin_capture(relaxed).unwrap();
    assert_eq!(stream.begin_capture(relaxed).err(), Some(err(CUresult::CUDA_ERROR_ILLEGAL_STATE)));
    // An empty capture is a graph without nodes.
    // SAFETY: the stream is live and captures.
    let graph = Graph(unsafe { result::stream::end_capture(stream.cu_stream()) }.unwrap());
    assert_eq!(graph.nodes(), 0);
    let before = counts();
    Exec::new(&graph).launch(&stream).unwrap();
    assert_eq!(counts(), (before.0 + 1, before.1));
}

#[test]
fn other_streams_and_threads_work_during_a_capture() {
    let Some((ctx, stream, k)) = setup() else { return };
    let n = 200;
    let mut y = stream.alloc_zeros::<f32>(n).unwrap();
    let legacy = ctx.default_stream();
    let mut d = legacy.alloc_zeros::<f32>(n).unwrap();
    let event = stream.record_event(None).unwrap();
    let graph = capture(&stream, || {
        launch(&stream, &k.fill, &mut y, 1.0)?;
        // Another stream's work runs at once, also from the capturing thread.
        launch(&legacy, &k.fill, &mut d, 9.0)?;
        assert_eq!(legacy.clone_dtoh(&d)?, vec![9.0; n]);
        legacy.synchronize()?;
        // An event recorded before the capture may be waited for.
        event.synchronize()?;
        // Other threads allocate, copy and synchronise meanwhile.
        std::thread::scope(|s| {
            s.spawn(|| {
                let ctx = CudaContext::new(0).unwrap();
                let legacy = ctx.default_stream();
                let x = legacy.clone_htod(&[5.0f32; 64]).unwrap();
                ctx.synchronize().unwrap();
                assert_eq!(legacy.clone_dtoh(&x).unwrap(), vec![5.0; 64]);
            })
            .join()
            .unwrap();
        });
        Ok(())
    })
    .unwrap();
    assert_eq!(graph.nodes(), 1);
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![0.0; n]);
    Exec::new(&graph).launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![1.0; n]);
}

/// `C = alpha·A·B` (column-major, m × k times k × n) through cuBLAS on the backend's stream.
#[allow(clippy::too_many_arguments)]
fn gemm(
    blas: &CudaBlas, stream: &Arc<CudaStream>, (m, n, k): (i32, i32, i32), alpha: &f32, a: &CudaSlice<f32>,
    b: &CudaSlice<f32>, c: &mut CudaSlice<f32>,
) -> Result<(), blas::CublasError> {
    let beta = 0.0f32;
    let (pa, _ra) = a.device_ptr(stream);
    let (pb, _rb) = b.device_ptr(stream);
    let (pc, _rc) = c.device_ptr(stream);
    use blas_sys::cublasOperation_t::CUBLAS_OP_N;
    use blas_sys::cudaDataType::CUDA_R_32F;
    // SAFETY: the operands hold m·k, k·n and m·n floats; alpha and beta are host floats.
    unsafe {
        blas::gemm_strided_batched_ex(
            *blas.handle(),
            CUBLAS_OP_N,
            CUBLAS_OP_N,
            m,
            n,
            k,
            (alpha as *const f32).cast(),
            pa as *const _,
            CUDA_R_32F,
            m,
            0,
            pb as *const _,
            CUDA_R_32F,
            k,
            0,
            (&beta as *const f32).cast(),
            pc as *mut _,
            CUDA_R_32F,
            m,
            0,
            1,
            blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
}

#[test]
fn a_cublas_gemm_is_captured_and_computed_at_launch() {
    let Some((_ctx, stream, _k)) = setup() else { return };
    let blas = CudaBlas::new(stream.clone()).unwrap();
    let (m, n, k) = (3usize, 2usize, 4usize);
    let a_host: Vec<f32> = (0..m * k).map(|i| i as f32 + 1.0).collect();
    let b_host: Vec<f32> = (0..k * n).map(|i| 0.5 * i as f32 - 1.0).collect();
    let product = |alpha: f32| -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for j in 0..n {
            for i in 0..m {
                c[i + j * m] = alpha * (0..k).map(|p| a_host[i + p * m] * b_host[p + j * k]).sum::<f32>();
            }
        }
        c
    };
    let a = stream.clone_htod(&a_host).unwrap();
    let b = stream.clone_htod(&b_host).unwrap();
    let mut c = stream.clone_htod(&vec![-7.0f32; m * n]).unwrap();
    let shape = (m as i32, n as i32, k as i32);
    let mut alpha = 1.0f32;
    // A graph of one GEMM of `shape` with the current alpha.
    let captured_gemm = |shape, alpha: &f32, c: &mut CudaSlice<f32>| {
        let mut called = Ok(());
        let graph = capture(&stream, || {
            called = gemm(&blas, &stream, shape, alpha, &a, &b, c);
            Ok(())
        })
        .unwrap();
        called.unwrap();
        graph
    };
    let graph = captured_gemm(shape, &alpha, &mut c);
    assert_eq!(graph.nodes(), 1);
    assert_eq!(stream.clone_dtoh(&c).unwrap(), vec![-7.0; m * n], "not computed before the launch");
    // alpha was read at the call (host pointer mode).
    alpha = 2.0;
    let exec = Exec::new(&graph);
    let before = counts();
    exec.launch(&stream).unwrap();
    assert_eq!(counts(), (before.0 + 1, before.1 + 1));
    assert_eq!(stream.clone_dtoh(&c).unwrap(), product(1.0));

    // The same GEMM with another alpha updates the executable; another shape is another kernel.
    assert_eq!(exec.update(&captured_gemm(shape, &alpha, &mut c)).0, CUresult::CUDA_SUCCESS);
    exec.launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&c).unwrap(), product(2.0));
    let other = captured_gemm((m as i32 - 1, n as i32, k as i32), &alpha, &mut c);
    assert_eq!(
        exec.update(&other),
        (
            CUresult::CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE,
            sys::CUgraphExecUpdateResult::CU_GRAPH_EXEC_UPDATE_ERROR_FUNCTION_CHANGED
        )
    );

    // Outside a capture, the GEMM runs at once.
    alpha = 3.0;
    gemm(&blas, &stream, shape, &alpha, &a, &b, &mut c).unwrap();
    assert_eq!(stream.clone_dtoh(&c).unwrap(), product(3.0));
}

#[test]
fn a_graph_whose_memory_was_freed_fails_at_launch() {
    let Some((_ctx, stream, k)) = setup() else { return };
    let n = 1 << 16;
    let mut y = stream.alloc_zeros::<f32>(n).unwrap();
    let x = stream.clone_htod(&vec![1.0f32; n]).unwrap();
    let graph = capture(&stream, || {
        let (a, b, len) = (1.0f32, 0.0f32, n as i64);
        let mut l = stream.launch_builder(&k.axpby);
        l.arg(&mut y).arg(&x).arg(&a).arg(&b).arg(&len);
        // SAFETY: the arguments follow axpby_f32(y, x, a, b, n).
        unsafe { l.launch(config(n)) }.map(|_| ())
    })
    .unwrap();
    let exec = Exec::new(&graph);
    exec.launch(&stream).unwrap();
    assert_eq!(stream.clone_dtoh(&y).unwrap(), vec![1.0; n]);
    drop(x);
    assert_eq!(exec.launch(&stream).err(), Some(err(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS)));
    stream.synchronize().unwrap();
}
