// Multi-head self-attention around cuBLAS: the backend permutes packed qkv [b, t, 3, nh, hs]
// (HF's head interleaving) to head-major [3, b, nh, t, hs], so every product is one strided
// batched GEMM over b·nh heads; these kernels do the permutations and the row softmax.
//
// Forward:  S = q·kᵀ/√hs (GEMM, alpha = 1/√hs), P = softmax(S [+ causal mask]) in place (masked
//           entries exactly 0, saved as probs), O = P·v (GEMM), out = O back to [b, t, c].
// Backward: dP = dO·vᵀ, dS = P ⊙ (dP − ⟨P, dP⟩_row)/√hs in place, dq = dS·k, dk = dSᵀ·q,
//           dv = Pᵀ·dO (GEMMs), then dqkv += the three permuted back.
//
// In bf16 mode the GEMMs take bf16 operands: the kernels that produce an operand (q, k, v, dO in
// head-major order, P, dS) also round it, writing bf16 into the backend's bf16 scratch, so no
// separate conversion pass reads the operand again. P stays f32 in probs for the backward. In
// bf16 mode the [t, t] matrices the GEMMs read or write (S, dP, and P and dS in bf16) have rows
// `ld` apart, t rounded up to 8 (aligned rows for cuBLAS; see HeadGemms in backend.rs), so S and
// dP go to scratch and the softmax writes P into probs from there; in f32 mode ld = t and S is
// computed in probs.

// The permutations run one block row (blockIdx.y, then UNROLL rows gridDim.y apart; see
// rows_unrolled) per token row of the packed side and one thread per column: reads and writes are
// contiguous runs of hs, and the divisions are 32-bit (b·t fits an int, checked by the backend; a
// 64-bit division per element costs more than its traffic), only the final offsets 64-bit.

// mode 1: heads [3, b, nh, t, hs] = packed qkv [b, t, 3, nh, hs] (f32 heads), mode 2: the same
// rounded to bf16 heads; mode 0: packed += heads (f32, the gradient's way back), also rounded
// into `copy` (null for none; see keep_bf16). rows = b·t.
extern "C" __global__ void qkv_heads(float* packed, bf16_bits* copy, void* heads, int b, int t, int nh, int hs,
                                     int mode) {
    int c = nh * hs, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= 3 * c) return;
    int which = col / c, h = (col % c) / hs, d = col % hs;
    // Row `r`'s element on the packed side and on the head-major side.
    auto at = [&](long long r) { return r * 3 * c + col; };
    auto head = [&](long long r) {
        int row = (int)r, bi = row / t, i = row % t;
        return (((long long)which * b + bi) * nh + h) * t * hs + (long long)i * hs + d;
    };
    if (mode) {
        rows_unrolled(
            b * t, [&](long long r) { return packed[at(r)]; },
            [&](long long r, float x) { store(heads, head(r), x, mode == 2); });
    } else {
        rows_unrolled(
            b * t, [&](long long r) { return f2{packed[at(r)], ((const float*)heads)[head(r)]}; },
            [&](long long r, f2 v) {
                float y = v.a + v.b;
                packed[at(r)] = y;
                keep_bf16(copy, at(r), y);
            });
    }
}

// mode 1: dst [b, t, nh·hs] = src [b, nh, t, hs] (f32), also rounded into `copy` (null for none;
// see keep_bf16); mode 0: the inverse permutation into f32 dst, mode 2: the inverse rounded to
// bf16 dst.
extern "C" __global__ void heads_rows(void* dst, bf16_bits* copy, const float* src, int b, int t, int nh, int hs,
                                      int mode) {
    int c = nh * hs, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= c) return;
    int h = col / hs, d = col % hs;
    // Row `r`'s element on the row side and on the head-major side.
    auto at = [&](long long r) { return r * c + col; };
    auto head = [&](long long r) {
        int row = (int)r, bi = row / t, i = row % t;
        return (((long long)bi * nh + h) * t + i) * hs + d;
    };
    if (mode == 1) {
        rows_unrolled(
            b * t, [&](long long r) { return src[head(r)]; },
            [&](long long r, float x) {
                ((float*)dst)[at(r)] = x;
                keep_bf16(copy, at(r), x);
            });
    } else {
        rows_unrolled(
            b * t, [&](long long r) { return src[at(r)]; },
            [&](long long r, float x) { store(dst, head(r), x, mode == 2); });
    }
}

// The softmax kernels run one warp per row (t is at most a few hundred keys): warp-level
// reductions only, no __syncthreads, WARP_ROWS rows per block. `rows` = b·nh·t.
#define WARP_ROWS 8

// P = softmax(S [+ causal mask]) over rows of `t` scores (row r is query r % t): S in `s` with
// rows `ld` apart, P into `p` with rows t apart (`p` may be `s` itself, with ld = t), and with
// `pb` (not null) P rounded to bf16 there, rows `ld` apart.
extern "C" __global__ void attention_softmax(const float* s, float* p, bf16_bits* pb, int t, int ld, int causal,
                                             long long rows) {
    long long r = (long long)blockIdx.x * WARP_ROWS + threadIdx.x / 32;
    if (r >= rows) return;  // the whole warp: a row is never split
    int lane = threadIdx.x & 31, i = (int)(r % t), keys = causal ? i + 1 : t;
    const float* x = s + r * ld;
    float m = -INF_F;
    for (int j = lane; j < keys; j += 32) m = fmaxf(m, x[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < keys; j += 32) sum += expf(x[j] - m);
    sum = warp_sum(sum);
    for (int j = lane; j < t; j += 32) {
        float y = j < keys ? expf(x[j] - m) / sum : 0.0f;
        p[r * t + j] = y;
        if (pb) pb[r * ld + j] = f32_to_bf16(y);
    }
}

// ds holds dP on entry, rows `ld` apart (P in `p`, rows t apart); dS = P ⊙ (dP − ⟨P, dP⟩)·scale
// (0 where P is masked) is written in place, or, with `dsb` (not null), rounded to bf16 there,
// along with P rounded to bf16 into `pb`, both with rows `ld` apart.
extern "C" __global__ void attention_softmax_backward(float* ds, bf16_bits* dsb, const float* p, bf16_bits* pb, int t,
                                                      int ld, float scale, long long rows) {
    long long r = (long long)blockIdx.x * WARP_ROWS + threadIdx.x / 32;
    if (r >= rows) return;
    int lane = threadIdx.x & 31;
    float* g = ds + r * ld;
    const float* y = p + r * t;
    float s = 0.0f;
    for (int j = lane; j < t; j += 32) s += y[j] * g[j];
    s = warp_sum(s);
    for (int j = lane; j < t; j += 32) {
        float v = y[j] * (g[j] - s) * scale;
        if (dsb) {
            dsb[r * ld + j] = f32_to_bf16(v);
            pb[r * ld + j] = f32_to_bf16(y[j]);
        } else {
            g[j] = v;
        }
    }
}
