// Multi-head self-attention around cuBLAS: the backend permutes packed qkv [b, t, 3, nh, hs]
// (HF's head interleaving) to head-major [3, b, nh, t, hs], so every product is one strided
// batched GEMM over b·nh heads; these kernels do the permutations and the row softmax.
//
// Forward:  S = q·kᵀ/√hs (GEMM, alpha = 1/√hs), P = softmax(S [+ causal mask]) in place (masked
//           entries exactly 0, saved as probs), O = P·v (GEMM), out = O back to [b, t, c].
// Backward: dP = dO·vᵀ, dS = P ⊙ (dP − ⟨P, dP⟩_row)/√hs in place, dq = dS·k, dk = dSᵀ·q,
//           dv = Pᵀ·dO (GEMMs), then dqkv += the three permuted back.

// The permutations run one block row (blockIdx.y, striding by gridDim.y) per token row of the
// packed side and one thread per column: reads and writes are contiguous runs of hs, and the index
// arithmetic is 32-bit per element (a 64-bit division per element costs more than its traffic).

// to_heads = 1: heads [3, b, nh, t, hs] = packed qkv [b, t, 3, nh, hs]; to_heads = 0: packed +=
// heads (the gradient's way back). rows = b·t.
extern "C" __global__ void qkv_heads_f32(float* packed, float* heads, int b, int t, int nh, int hs, int to_heads) {
    int c = nh * hs, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= 3 * c) return;
    int which = col / c, h = (col % c) / hs, d = col % hs;
    for (long long row = blockIdx.y; row < (long long)b * t; row += gridDim.y) {
        long long bi = row / t, i = row % t;
        long long head = (((long long)which * b + bi) * nh + h) * t * hs + i * hs + d;
        if (to_heads) heads[head] = packed[row * 3 * c + col];
        else packed[row * 3 * c + col] += heads[head];
    }
}

// to_rows = 1: dst [b, t, nh·hs] = src [b, nh, t, hs]; to_rows = 0: the inverse permutation.
extern "C" __global__ void heads_rows_f32(float* dst, const float* src, int b, int t, int nh, int hs, int to_rows) {
    int c = nh * hs, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= c) return;
    int h = col / hs, d = col % hs;
    for (long long row = blockIdx.y; row < (long long)b * t; row += gridDim.y) {
        long long bi = row / t, i = row % t;
        long long head = ((bi * nh + h) * t + i) * hs + d;
        if (to_rows) dst[row * c + col] = src[head];
        else dst[head] = src[row * c + col];
    }
}

// The softmax kernels run one warp per row (t is at most a few hundred keys): warp-level
// reductions only, no __syncthreads, WARP_ROWS rows per block. `rows` = b·nh·t.
#define WARP_ROWS 8

// In place over rows of `t` scores (row r is query r % t): P = softmax(S [+ causal mask]).
extern "C" __global__ void attention_softmax_f32(float* s, int t, int causal, long long rows) {
    long long r = (long long)blockIdx.x * WARP_ROWS + threadIdx.x / 32;
    if (r >= rows) return;  // the whole warp: a row is never split
    int lane = threadIdx.x & 31, i = (int)(r % t), keys = causal ? i + 1 : t;
    float* x = s + r * t;
    float m = -INF_F;
    for (int j = lane; j < keys; j += 32) m = fmaxf(m, x[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < keys; j += 32) sum += expf(x[j] - m);
    sum = warp_sum(sum);
    for (int j = lane; j < t; j += 32) x[j] = j < keys ? expf(x[j] - m) / sum : 0.0f;
}

// In place: ds holds dP on entry, P ⊙ (dP − ⟨P, dP⟩)·scale on exit (0 where P is masked).
extern "C" __global__ void attention_softmax_backward_f32(float* ds, const float* p, int t, float scale,
                                                          long long rows) {
    long long r = (long long)blockIdx.x * WARP_ROWS + threadIdx.x / 32;
    if (r >= rows) return;
    int lane = threadIdx.x & 31;
    float* g = ds + r * t;
    const float* y = p + r * t;
    float s = 0.0f;
    for (int j = lane; j < t; j += 32) s += y[j] * g[j];
    s = warp_sum(s);
    for (int j = lane; j < t; j += 32) g[j] = y[j] * (g[j] - s) * scale;
}
