// Shared device helpers. No #include: NVRTC compiles these sources without the CUDA headers.
// Every kernel is `extern "C"` so its name survives unmangled for `load_function`.
// Reductions are fixed trees over a block of a fixed size, so every result is deterministic.

#define FULL_MASK 0xffffffffu
#define INF_F __int_as_float(0x7f800000)

typedef unsigned short bf16_bits;

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32), returned to every thread.
__device__ float block_sum(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // an earlier call may still be reading `part`
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? part[lane] : 0.0f);
}

__device__ float block_max(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return warp_max(lane < warps ? part[lane] : -INF_F);
}

// f32 -> bf16 with round-to-nearest-even, by bit operations (NVRTC has no cuda_bf16.h).
__device__ __forceinline__ bf16_bits f32_to_bf16(float x) {
    unsigned int u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_bits)((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_bits)(u >> 16);
}

// Two f32 rounded to bf16 and packed into one 32-bit register, `lo` in the low half: the
// operand format of the tensor-core product below.
__device__ __forceinline__ unsigned int pack_bf16(float lo, float hi) {
    return (unsigned int)f32_to_bf16(lo) | ((unsigned int)f32_to_bf16(hi) << 16);
}

// acc += A·B on the tensor cores for one warp: A [16, 16] and B [16, 8] bf16, acc [16, 8] f32
// (PTX mma.m16n8k16.row.col). With g = lane / 4 and c = lane % 4, a lane holds
//   a[0] = A[g][2c, 2c+1], a[1] = A[g+8][2c, 2c+1], a[2] = A[g][2c+8, 2c+9], a[3] = A[g+8][2c+8, 2c+9],
//   b[0] = B[2c, 2c+1][g], b[1] = B[2c+8, 2c+9][g],
//   acc = C[g][2c], C[g][2c+1], C[g+8][2c], C[g+8][2c+1],
// pairs packed as pack_bf16 does. Every lane of the warp must make the call. It needs sm_80;
// the backend launches its callers only there (the emulator supplies its own).
#if defined(__CUDA_ARCH__)
__device__ __forceinline__ void mma_bf16(float* acc, const unsigned int* a, const unsigned int* b) {
#if __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
}
#endif

// out[i] = x, stored as f32 or, with `as_bf16`, rounded to bf16 (for a GEMM's bf16 operand).
__device__ __forceinline__ void store(void* out, long long i, float x, int as_bf16) {
    if (as_bf16) ((bf16_bits*)out)[i] = f32_to_bf16(x);
    else ((float*)out)[i] = x;
}

// x's bf16 rounding into `copy[i]` when there is a copy (not null): the kernels that write a
// tower GEMM's next operand keep its bf16 copy in the backend's pool this way, so no separate
// pass reads the f32 values again.
__device__ __forceinline__ void keep_bf16(bf16_bits* copy, long long i, float x) {
    if (copy) copy[i] = f32_to_bf16(x);
}

// Whether an update guarded by `guard` goes ahead: no guard (null), or a finite value in it (an
// exponent field not all ones).
__device__ __forceinline__ bool guard_ok(const float* guard) {
    return guard == 0 || (__float_as_uint(*guard) & 0x7f800000u) != 0x7f800000u;
}

// Grid-stride loop over `n` elements.
#define FOR_EACH(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                            i += (long long)gridDim.x * blockDim.x)

// Loads a thread of a streaming kernel has in flight at once. With one element per thread an
// H200 streamed 30-60 % of its memory bandwidth through these kernels: too few bytes in flight
// per SM to cover the memory latency. UNROLL independent loads issued before their stores cover
// it. (The backend's launch configurations divide the work by the same number.)
#define UNROLL 4

struct f2 {
    float a, b;
};
struct f3 {
    float a, b, c;
};

// For i = first + k·round + u·step (u < UNROLL) below n: v = load(i) for the UNROLL of a round,
// then store(i, v) for each. A store may only write what its own load read (outputs never
// overlap other inputs; the backend checks), so issuing the loads first changes no result.
template <typename Load, typename Store>
__device__ __forceinline__ void unrolled(long long first, long long step, long long round, long long n, Load load,
                                         Store store) {
    for (long long i = first; i < n; i += round) {
        decltype(load(i)) v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            long long j = i + u * step;
            if (j < n) v[u] = load(j);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
            long long j = i + u * step;
            if (j < n) store(j, v[u]);
        }
    }
}

// `unrolled` over `n` elements, a block's threads UNROLL·blockDim consecutive ones per round
// (each warp's accesses stay contiguous).
template <typename Load, typename Store>
__device__ __forceinline__ void each_unrolled(long long n, Load load, Store store) {
    unrolled((long long)blockIdx.x * blockDim.x * UNROLL + threadIdx.x, blockDim.x,
             (long long)gridDim.x * blockDim.x * UNROLL, n, load, store);
}

// `unrolled` over the rows of a table kernel: block row blockIdx.y, then UNROLL rows gridDim.y
// apart per round.
template <typename Load, typename Store>
__device__ __forceinline__ void rows_unrolled(long long rows, Load load, Store store) {
    unrolled(blockIdx.y, gridDim.y, (long long)gridDim.y * UNROLL, rows, load, store);
}
