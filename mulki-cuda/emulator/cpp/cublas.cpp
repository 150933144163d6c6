// A stand-in for cuBLAS: the calls mulki's CUDA backend makes, computed on the CPU from the
// column-major definitions in NVIDIA's cuBLAS documentation, with its argument checks.
// Products accumulate in f64; operands of the fast bf16/tf32 compute types are rounded first,
// as tensor cores see them, to nearest even. cuBLAS does not document that rounding; rounded
// toward zero, a mulki step's losses move by up to 10 % (measured here), so the GPU suite's
// fast-bf16 tests, held to the bf16 bounds, are what tells on the hardware.
//
// A handle keeps the stream of cublasSetStream_v2. On a stream that captures (the emulated
// driver's emu_capture_node says), a GEMM is checked and its alpha and beta read at the call, as
// cuBLAS's host pointer mode does, and it is computed when the graph runs.
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mutex>
#include <set>
#include <vector>

typedef int cublasStatus_t;
enum : cublasStatus_t { OK = 0, NOT_INITIALIZED = 1, INVALID_VALUE = 7, EXECUTION_FAILED = 13, NOT_SUPPORTED = 15 };
enum { OP_N = 0, OP_T = 1, OP_C = 2 };
enum { R_32F = 0, R_16BF = 14 };
enum { COMPUTE_32F = 68, COMPUTE_32F_PEDANTIC = 69, COMPUTE_32F_FAST_16BF = 75, COMPUTE_32F_FAST_TF32 = 77 };

#define API extern "C" __attribute__((visibility("default")))

struct Handle {
    void* stream;  // cublasSetStream_v2's (the legacy default stream at first)
};
static std::mutex g_lock;
static std::set<Handle*> g_handles;  // live handles (under g_lock)

static bool live(void* handle) {
    std::lock_guard<std::mutex> l(g_lock);
    return g_handles.count((Handle*)handle) != 0;
}

API cublasStatus_t cublasCreate_v2(void** handle) {
    Handle* h = new Handle{nullptr};
    std::lock_guard<std::mutex> l(g_lock);
    g_handles.insert(h);
    *handle = h;
    return OK;
}
API cublasStatus_t cublasDestroy_v2(void* handle) {
    {
        std::lock_guard<std::mutex> l(g_lock);
        if (g_handles.erase((Handle*)handle) == 0) return NOT_INITIALIZED;
    }
    delete (Handle*)handle;
    return OK;
}
API cublasStatus_t cublasSetStream_v2(void* handle, void* stream) {
    std::lock_guard<std::mutex> l(g_lock);
    if (g_handles.count((Handle*)handle) == 0) return NOT_INITIALIZED;
    ((Handle*)handle)->stream = stream;
    return OK;
}
// The workspace is accepted and unused: the products need none here.
API cublasStatus_t cublasSetWorkspace_v2(void* handle, void*, size_t) { return live(handle) ? OK : NOT_INITIALIZED; }
API cublasStatus_t cublasSetMathMode(void* handle, int) { return live(handle) ? OK : NOT_INITIALIZED; }

static float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// Keeps `keep` mantissa bits, rounding to nearest even (bf16: 7, tf32: 10).
static float round_mantissa(float x, int keep) {
    if (isnan(x)) return x;
    uint32_t u = f32_to_bits(x);
    int drop = 23 - keep;
    uint32_t half = (1u << (drop - 1)) - 1 + ((u >> drop) & 1u);
    return bits_to_f32(((u + half) >> drop) << drop);
}

static float load(const void* p, int type, long long i, int compute) {
    float x = type == R_16BF ? bits_to_f32((uint32_t)((const uint16_t*)p)[i] << 16) : ((const float*)p)[i];
    if (compute == COMPUTE_32F_FAST_16BF) x = round_mantissa(x, 7);
    if (compute == COMPUTE_32F_FAST_TF32) x = round_mantissa(x, 10);
    return x;
}

// Whether the `count` elements of `size` bytes at `p` lie inside one allocation of the emulated
// driver (its `emu_range_ok`); an operand outside is reported and fails the call, as an illegal
// address would fail the kernel on a GPU.
static bool operand_ok(const char* name, const void* p, long long count, int size) {
    typedef bool (*RangeOk)(unsigned long long, size_t);
    static RangeOk range_ok = (RangeOk)dlsym(RTLD_DEFAULT, "emu_range_ok");
    if (count <= 0 || range_ok == nullptr || range_ok((unsigned long long)p, (size_t)count * size)) return true;
    fprintf(stderr, "cublas emulator: operand %s (%lld elements at %p) is not inside one allocation\n", name, count, p);
    return false;
}

// Elements a batch of `batch` column-major `rows` × `cols` matrices spans.
static long long extent(int rows, int cols, int ld, long long stride, int batch) {
    if (rows == 0 || cols == 0 || batch == 0) return 0;
    return (long long)(batch - 1) * stride + (long long)(cols - 1) * ld + rows;
}

// A strided batched GEMM, its operands checked and alpha and beta read.
struct Gemm {
    bool ta, tb;
    int m, n, k;
    const void* A;
    int atype, lda;
    long long stride_a;
    const void* B;
    int btype, ldb;
    long long stride_b;
    void* C;
    int ldc;
    long long stride_c;
    int batch, compute;
    float alpha, beta;
};

// Whether the operands lie inside allocations (each reported if not).
static bool operands_ok(const Gemm& g) {
    int a_rows = g.ta ? g.k : g.m, b_rows = g.tb ? g.n : g.k;
    int esize = g.atype == R_16BF ? 2 : 4;
    return operand_ok("A", g.A, extent(a_rows, g.ta ? g.m : g.k, g.lda, g.stride_a, g.batch), esize) &&
           operand_ok("B", g.B, extent(b_rows, g.tb ? g.k : g.n, g.ldb, g.stride_b, g.batch), esize) &&
           operand_ok("C", g.C, extent(g.m, g.n, g.ldc, g.stride_c, g.batch), 4);
}

static void compute(const Gemm& g) {
    int m = g.m, n = g.n, k = g.k;
    float al = g.alpha, be = g.beta;
    // op(A) as rows of k and op(B) as columns of k, contiguous, so the dot products stream.
    std::vector<float> a((size_t)m * k), b((size_t)n * k);
    for (int bi = 0; bi < g.batch; bi++) {
        for (int i = 0; i < m; i++) {
            for (int p = 0; p < k; p++) {
                a[(size_t)i * k + p] = load(g.A, g.atype, bi * g.stride_a + (g.ta ? p + (long long)i * g.lda : i + (long long)p * g.lda), g.compute);
            }
        }
        for (int j = 0; j < n; j++) {
            for (int p = 0; p < k; p++) {
                b[(size_t)j * k + p] = load(g.B, g.btype, bi * g.stride_b + (g.tb ? j + (long long)p * g.ldb : p + (long long)j * g.ldb), g.compute);
            }
        }
        float* c = (float*)g.C + bi * g.stride_c;
        for (int j = 0; j < n; j++) {
            for (int i = 0; i < m; i++) {
                const float *x = &a[(size_t)i * k], *y = &b[(size_t)j * k];
                // Four partial sums: independent chains the compiler can keep in flight.
                double part[4] = {0.0, 0.0, 0.0, 0.0};
                int p = 0;
                for (; p + 4 <= k; p += 4) {
                    for (int q = 0; q < 4; q++) part[q] += (double)x[p + q] * y[p + q];
                }
                for (; p < k; p++) part[0] += (double)x[p] * y[p];
                double s = (part[0] + part[1]) + (part[2] + part[3]);
                float* out = c + i + (long long)j * g.ldc;
                // beta = 0: C is not read (it may hold NaN), as cuBLAS documents.
                *out = be == 0.0f ? (float)(al * s) : (float)(al * s + (double)be * *out);
            }
        }
    }
}

// A captured GEMM, when its graph runs: its operands must still be allocated (they were when
// it was recorded). Returns a CUresult for the driver.
static int run_captured(void* p) {
    const Gemm& g = *(const Gemm*)p;
    if (!operands_ok(g)) return 700;  // CUDA_ERROR_ILLEGAL_ADDRESS
    compute(g);
    return 0;
}
static void drop_captured(void* p) { delete (Gemm*)p; }

// What a GPU's cuBLAS would choose its kernel by, roughly: transposes, shapes, types and compute
// type. A graph update keeps a captured GEMM only when this is unchanged (a GPU may fail it
// even then, should cuBLAS pick another kernel; it cannot succeed where this changes and the
// kernel changes).
static unsigned long long kernel_key(const Gemm& g) {
    unsigned long long h = 1469598103934665603ull;
    for (long long v : {(long long)g.ta, (long long)g.tb, (long long)g.m, (long long)g.n, (long long)g.k,
                        (long long)g.atype, (long long)g.compute}) {
        h = (h ^ (unsigned long long)v) * 1099511628211ull;
    }
    return h;
}

API cublasStatus_t cublasGemmStridedBatchedEx(void* handle, int transa, int transb, int m, int n, int k,
                                              const void* alpha, const void* A, int atype, int lda,
                                              long long stride_a, const void* B, int btype, int ldb,
                                              long long stride_b, const void* beta, void* C, int ctype, int ldc,
                                              long long stride_c, int batch, int compute_type, int) {
    void* stream;
    {
        std::lock_guard<std::mutex> l(g_lock);
        if (g_handles.count((Handle*)handle) == 0) return NOT_INITIALIZED;
        stream = ((Handle*)handle)->stream;
    }
    if ((transa != OP_N && transa != OP_T) || (transb != OP_N && transb != OP_T)) return INVALID_VALUE;
    bool ta = transa == OP_T, tb = transb == OP_T;
    int a_rows = ta ? k : m, b_rows = tb ? n : k;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < (a_rows > 1 ? a_rows : 1) ||
        ldb < (b_rows > 1 ? b_rows : 1) || ldc < (m > 1 ? m : 1)) {
        return INVALID_VALUE;
    }
    if ((atype != R_32F && atype != R_16BF) || btype != atype || ctype != R_32F) return NOT_SUPPORTED;
    bool fast = compute_type == COMPUTE_32F_FAST_16BF || compute_type == COMPUTE_32F_FAST_TF32;
    if (!(compute_type == COMPUTE_32F || compute_type == COMPUTE_32F_PEDANTIC || (fast && atype == R_32F))) {
        return NOT_SUPPORTED;  // the fast modes take f32 operands only
    }
    // Batches of C must not overlap: cuBLAS would race on them.
    if (batch > 1 && stride_c < (long long)(n - 1) * ldc + m) return INVALID_VALUE;
    Gemm g{ta, tb, m, n, k, A, atype, lda, stride_a, B, btype, ldb, stride_b, C, ldc, stride_c, batch, compute_type,
           *(const float*)alpha, *(const float*)beta};
    if (!operands_ok(g)) return INVALID_VALUE;
    // Recorded when the handle's stream captures (the emulated driver decides).
    typedef int (*CaptureNode)(void*, int (*)(void*), void*, void (*)(void*), unsigned long long);
    static CaptureNode capture_node = (CaptureNode)dlsym(RTLD_DEFAULT, "emu_capture_node");
    if (capture_node != nullptr) {
        Gemm* captured = new Gemm(g);
        int r = capture_node(stream, run_captured, captured, drop_captured, kernel_key(g));
        if (r == 1) return OK;
        delete captured;
        if (r < 0) return EXECUTION_FAILED;  // an invalidated capture, or an unknown stream
    }
    compute(g);
    return OK;
}
