// Multi-head self-attention around cuBLAS: the backend permutes packed qkv [b, t, 3, nh, hs]
// (HF's head interleaving) to head-major [3, b, nh, t, hs], so every product is one strided
// batched GEMM over b·nh heads; these kernels do the permutations and the row softmax.
//
// Forward:  S = q·kᵀ/√hs (GEMM, alpha = 1/√hs), P = softmax(S [+ causal mask]) in place (masked
//           entries exactly 0, saved as probs), O = P·v (GEMM), out = O back to [b, t, c].
// Backward: dP = dO·vᵀ, dS = P ⊙ (dP − ⟨P, dP⟩_row)/√hs in place, dq = dS·k, dk = dSᵀ·q,
//           dv = Pᵀ·dO (GEMMs), then dqkv += the three permuted back.

// Index of element (which, bi, h, i, d) of packed qkv [b, t, 3, nh, hs].
__device__ __forceinline__ long long packed_at(int which, long long bi, int h, long long i, int d, int t, int nh,
                                                int hs) {
    long long c = (long long)nh * hs;
    return (bi * t + i) * 3 * c + which * c + (long long)h * hs + d;
}

// dst [3, b, nh, t, hs] = qkv [b, t, 3, nh, hs]; n = 3·b·t·nh·hs, loop over dst order.
extern "C" __global__ void qkv_to_heads_f32(float* dst, const float* qkv, int b, int t, int nh, int hs,
                                            long long n) {
    FOR_EACH(e, n) {
        int d = (int)(e % hs);
        long long r = e / hs;
        long long i = r % t;
        r /= t;
        int h = (int)(r % nh);
        r /= nh;
        long long bi = r % b;
        int which = (int)(r / b);
        dst[e] = qkv[packed_at(which, bi, h, i, d, t, nh, hs)];
    }
}

// dqkv [b, t, 3, nh, hs] += src [3, b, nh, t, hs]; loop over dqkv order (coalesced writes).
extern "C" __global__ void heads_to_qkv_add_f32(float* dqkv, const float* src, int b, int t, int nh, int hs,
                                                long long n) {
    long long c = (long long)nh * hs;
    FOR_EACH(e, n) {
        long long row = e / (3 * c);
        int col = (int)(e % (3 * c));
        int which = (int)(col / c), h = (int)((col % c) / hs), d = (int)(col % hs);
        long long bi = row / t, i = row % t;
        dqkv[e] += src[(((long long)which * b + bi) * nh + h) * t * hs + i * hs + d];
    }
}

// to_rows = 1: dst [b, t, nh·hs] = src [b, nh, t, hs]; to_rows = 0: the inverse permutation.
// n = b·t·nh·hs, loop over the [b, t, c] order.
extern "C" __global__ void heads_rows_f32(float* dst, const float* src, int t, int nh, int hs, int to_rows,
                                          long long n) {
    long long c = (long long)nh * hs;
    FOR_EACH(e, n) {
        long long row = e / c;
        int col = (int)(e % c), h = col / hs, d = col % hs;
        long long bi = row / t, i = row % t;
        long long head = ((bi * nh + h) * t + i) * hs + d;
        if (to_rows) dst[e] = src[head];
        else dst[head] = src[e];
    }
}

// In place over rows of `t` scores (row r is query r % t): P = softmax(S [+ causal mask]).
extern "C" __global__ void attention_softmax_f32(float* s, int t, int causal) {
    long long r = blockIdx.x;
    int i = (int)(r % t), keys = causal ? i + 1 : t;
    float* x = s + r * t;
    float m = -INF_F;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) m = fmaxf(m, x[j]);
    m = block_max(m);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) sum += expf(x[j] - m);
    sum = block_sum(sum);
    for (int j = threadIdx.x; j < t; j += blockDim.x) x[j] = j < keys ? expf(x[j] - m) / sum : 0.0f;
}

// In place: ds holds dP on entry, P ⊙ (dP − ⟨P, dP⟩)·scale on exit (0 where P is masked).
extern "C" __global__ void attention_softmax_backward_f32(float* ds, const float* p, int t, float scale) {
    long long r = blockIdx.x;
    float* g = ds + r * t;
    const float* y = p + r * t;
    float s = 0.0f;
    for (int j = threadIdx.x; j < t; j += blockDim.x) s += y[j] * g[j];
    s = block_sum(s);
    for (int j = threadIdx.x; j < t; j += blockDim.x) g[j] = y[j] * (g[j] - s) * scale;
}
