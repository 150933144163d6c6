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
//
// In bf16 mode on sm_80 and later, for head sizes that are multiples of 16 up to 64, the backend
// runs the fused kernels at the end of this file instead: no permutation and no [t, t] matrix in
// memory but P (saved) and dS (between the two backward passes).

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

// Fused forward for bf16 mode on the tensor cores, for hs a multiple of 16 up to FA_HS (the
// backend checks it, and sm_80): one block per tile of query rows of one head (blockIdx.x the
// tile, blockIdx.y = bi·nh + h, so a head's tiles run together and share its k, v in L2), each
// warp 16 rows. blockDim.x / 32 is 4 to FA_WARPS warps, as few as cover t in the fewest blocks:
// 7 for 197 rows in two blocks, 5 for 77 in one. q, k, v are read straight from packed qkv
// [b, t, 3, nh, hs] and rounded to bf16 on the way into shared memory (as qkv_heads would,
// without its pass). Two passes over the keys, FA_CHUNK at a time: the first finds each row's
// max and sum of exponentials, the second recomputes the scores, writes P to probs in f32 for
// the backward and, rounded to bf16, adds P·v. P is the exact softmax, normalised as it is
// written, as the backward needs; the scores are computed twice, which costs less than
// holding a row's scores over every key in registers (the first version did, and at 197 keys
// ran one block per SM, spilling). O goes straight to out [b, t, nh·hs] with its bf16 copy
// (see keep_bf16). The precision is the unfused path's (bf16 q, k, P, v; f32 accumulation and
// softmax); one kernel replaces its permutation, two batched GEMMs, the softmax and the output
// permutation, and S never leaves the SM.
#define FA_WARPS 8  // at most; the backend launches 4 to 8
#define FA_ROWS (16 * FA_WARPS)
#define FA_CHUNK 64  // keys (or, in the dkv pass, queries) per chunk in shared memory
#define FA_HS 64
// Shared rows in bf16 pairs, 8 bf16 of padding: the fragment reads of a warp hit 32 banks.
#define FA_LDW ((FA_HS + 8) / 2)

// Rows [r0, r0 + n) and columns [0, FA_HS) of an f32 matrix with rows `ld` apart (one head's q,
// k, v or dO, or a tile of its P or dS) into `tile`, rounded to bf16 pairs: warp w of W (at
// least 4, and n ≤ 16·W) loads rows w, w + W, ..., a lane one pair of each. Elements at or past
// `rows` rows or `cols` columns are zeros (P is 0 there, and 0·NaN would not be). A thread
// issues its loads 4 at a time before their stores (a loop of load-then-store would keep one
// load in flight per thread; the compiler may hoist more).
__device__ __forceinline__ void fa_load(unsigned int (*tile)[FA_LDW], const float* m, long long ld, int r0, int n,
                                        int rows, int cols) {
    constexpr int BATCH = 4;
    int w = threadIdx.x >> 5, warps = blockDim.x >> 5, c = 2 * (threadIdx.x & 31);
    bool lo = c < cols, hi = c + 1 < cols;
#pragma unroll
    for (int u0 = 0; u0 < 16; u0 += BATCH) {
        float x[BATCH][2];
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            int r = w + (u0 + u) * warps;
            bool in = r < n && r0 + r < rows;
            const float* row = m + (long long)(r0 + r) * ld + c;
            x[u][0] = in && lo ? row[0] : 0.0f;
            x[u][1] = in && hi ? row[1] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            int r = w + (u0 + u) * warps;
            if (r < n) tile[r][c / 2] = pack_bf16(x[u][0], x[u][1]);
        }
    }
}

// bf16 `col` of a row of bf16 pairs, in a register's low half.
__device__ __forceinline__ unsigned int fa_half(const unsigned int* row, int col) {
    return (row[col >> 1] >> (16 * (col & 1))) & 0xffffu;
}

// The B fragment of column d of Y for the 16 rows from r0 (the product's k index), from a tile
// of Y in bf16 pairs: P·v and dS·k take v and k this way, the dkv pass q and dO.
__device__ __forceinline__ void fa_column(unsigned int* b, unsigned int (*y)[FA_LDW], int r0, int d) {
    b[0] = fa_half(y[r0], d) | fa_half(y[r0 + 1], d) << 16;
    b[1] = fa_half(y[r0 + 8], d) | fa_half(y[r0 + 9], d) << 16;
}

// The A fragment of Xᵀ for its rows kr and kr + 8 (columns of X) and the 16 columns from q0
// (rows of X), from a tile of X in bf16 pairs: columns kr and kr + 8 of X as fa_column reads them.
__device__ __forceinline__ void fa_transposed(unsigned int* a, unsigned int (*x)[FA_LDW], int q0, int kr) {
    unsigned int lo[2], hi[2];
    fa_column(lo, x, q0, kr);
    fa_column(hi, x, q0, kr + 8);
    a[0] = lo[0];
    a[1] = hi[0];
    a[2] = lo[1];
    a[3] = hi[1];
}

// The A fragments of this lane's two rows (r and r + 8) of a [rows, hs] tile, hs/16 k-steps.
__device__ __forceinline__ void fa_rows(unsigned int (*a)[4], unsigned int (*tile)[FA_LDW], int r, int c, int ksteps) {
#pragma unroll
    for (int ks = 0; ks < FA_HS / 16; ks++) {
        if (ks < ksteps) {
            a[ks][0] = tile[r][ks * 8 + c];
            a[ks][1] = tile[r + 8][ks * 8 + c];
            a[ks][2] = tile[r][ks * 8 + c + 4];
            a[ks][3] = tile[r + 8][ks * 8 + c + 4];
        }
    }
}

// acc = A·Bᵀ for a warp's 16 rows against the FA_CHUNK rows of `tile` (keys): A's fragments
// `a`, `tile` [keys, hs] in bf16 pairs; acc[nt] holds keys nt·8 + 2c, + 1 of rows g and g + 8.
__device__ __forceinline__ void fa_products(float (*acc)[4], unsigned int (*a)[4], unsigned int (*tile)[FA_LDW], int g,
                                            int c, int ksteps) {
#pragma unroll
    for (int nt = 0; nt < FA_CHUNK / 8; nt++) {
        acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < FA_HS / 16; ks++) {
            if (ks < ksteps) {
                unsigned int b[2] = {tile[nt * 8 + g][ks * 8 + c], tile[nt * 8 + g][ks * 8 + c + 4]};
                mma_bf16(acc[nt], a[ks], b);
            }
        }
    }
}

// o += X·Y for a warp's 16 rows: X [16, FA_CHUNK] in accumulator fragments (x[nt], as
// fa_products leaves them; two adjacent 8-key tiles are the A fragment of 16 keys, rounded to
// bf16), Y [FA_CHUNK, hs] a tile in bf16 pairs.
__device__ __forceinline__ void fa_times(float (*o)[4], float (*x)[4], unsigned int (*y)[FA_LDW], int g, int c,
                                         int hs) {
#pragma unroll
    for (int ks = 0; ks < FA_CHUNK / 16; ks++) {
        const float* x0 = x[2 * ks];
        const float* x1 = x[2 * ks + 1];
        unsigned int a[4] = {pack_bf16(x0[0], x0[1]), pack_bf16(x0[2], x0[3]), pack_bf16(x1[0], x1[1]),
                             pack_bf16(x1[2], x1[3])};
        int key = ks * 16 + 2 * c;
#pragma unroll
        for (int nt = 0; nt < FA_HS / 8; nt++) {
            if (nt * 8 < hs) {
                unsigned int b[2];
                fa_column(b, y, key, nt * 8 + g);
                mma_bf16(o[nt], a, b);
            }
        }
    }
}

// Sum over the four lanes (c) that share a row.
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(FULL_MASK, v, 1);
    return v + __shfl_xor_sync(FULL_MASK, v, 2);
}

__device__ __forceinline__ float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 1));
    return fmaxf(v, __shfl_xor_sync(FULL_MASK, v, 2));
}

// f(nt, e, i, j) for each of this lane's elements of a warp's [16, FA_CHUNK] accumulator
// fragments (element e of 8-key tile nt): row i (from i0, its first row) and key j (from j0).
template <typename F>
__device__ __forceinline__ void fa_each(int i0, int j0, int c, F f) {
#pragma unroll
    for (int nt = 0; nt < FA_CHUNK / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) f(nt, e, i0 + 8 * (e >> 1), j0 + nt * 8 + 2 * c + (e & 1));
}

// Zeroes a warp's [16, hs] accumulator fragments.
__device__ __forceinline__ void fa_zero(float (*o)[4]) {
#pragma unroll
    for (int nt = 0; nt < FA_HS / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
}

// Keys [j0, j0 + FA_CHUNK) of one head's two [t, hs] matrices `a` and `b` (rows `ld` apart) into
// `sa` and `sb`, once the block is done with the chunk before.
__device__ __forceinline__ void fa_load2(unsigned int (*sa)[FA_LDW], const float* a, unsigned int (*sb)[FA_LDW],
                                         const float* b, long long ld, int j0, int t, int hs) {
    __syncthreads();
    fa_load(sa, a, ld, j0, FA_CHUNK, t, hs);
    fa_load(sb, b, ld, j0, FA_CHUNK, t, hs);
    __syncthreads();
}

// out[(bi·t + i)·ld + d] += o, or = o when `add` is 0, for this lane's rows i < t of a warp's
// accumulator fragments o[nt] (columns d = nt·8 + 2c, + 1 below hs), with its bf16 copy.
__device__ __forceinline__ void fa_store(float* out, bf16_bits* copy, long long at0, long long ld, float (*o)[4],
                                         int i0, int t, int c, int hs, int add) {
#pragma unroll
    for (int nt = 0; nt < FA_HS / 8; nt++) {
        if (nt * 8 < hs) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int i = i0 + 8 * (e >> 1), d = nt * 8 + 2 * c + (e & 1);
                if (i < t) {
                    long long at = at0 + i * ld + d;
                    float y = add ? out[at] + o[nt][e] : o[nt][e];
                    out[at] = y;
                    keep_bf16(copy, at, y);
                }
            }
        }
    }
}

// The launch bounds hold the fused kernels to 128 registers (the dkv pass to 168), so two blocks
// (three) share an SM, at the cost of a few spilled values: without them the compiler took 180
// to 208 registers, one block per SM, and on an H100 the step ran 7-9 % slower.
extern "C" __global__ void __launch_bounds__(32 * FA_WARPS, 2) attention_fused_forward(const float* qkv, float* out, bf16_bits* copy, float* probs, int t,
                                                  int nh, int hs, int causal, float scale) {
    __shared__ unsigned int sq[FA_ROWS][FA_LDW];
    __shared__ unsigned int sk[FA_CHUNK][FA_LDW];
    __shared__ unsigned int sv[FA_CHUNK][FA_LDW];
    long long head = blockIdx.y, bi = head / nh, h = head % nh, c1 = (long long)nh * hs, c3 = 3 * c1;
    // Row 0 of this head's q; its k and v are nh·hs and 2·nh·hs further.
    const float* q = qkv + bi * t * c3 + h * hs;
    const float *k = q + c1, *v = k + c1;
    int rows = 16 * (blockDim.x >> 5), row0 = blockIdx.x * rows, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int r = (threadIdx.x >> 5) * 16 + g, i0 = row0 + r;  // this lane's rows: i0 and i0 + 8
    int ksteps = hs / 16;
    fa_load(sq, q, c3, row0, rows, t, hs);
    __syncthreads();
    unsigned int qa[FA_HS / 16][4];
    fa_rows(qa, sq, r, c, ksteps);
    float s[FA_CHUNK / 8][4];
    // S = q·kᵀ·scale of keys [j0, j0 + FA_CHUNK) into s, masked entries -inf.
    auto scores = [&](int j0) {
        fa_products(s, qa, sk, g, c, ksteps);
        fa_each(i0, j0, c, [&](int nt, int e, int i, int j) {
            s[nt][e] = j < t && !(causal && j > i) ? s[nt][e] * scale : -INF_F;
        });
    };
    // Pass 1: each row's max m and sum l of exp(S − m), rescaled as m grows. Every row has a
    // key (j = 0), so m is finite after the first chunk.
    float m[2] = {-INF_F, -INF_F}, l[2] = {0.0f, 0.0f};
    for (int j0 = 0; j0 < t; j0 += FA_CHUNK) {
        __syncthreads();  // the previous chunk's reads are done
        fa_load(sk, k, c3, j0, FA_CHUNK, t, hs);
        __syncthreads();
        scores(j0);
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float cm = -INF_F;
#pragma unroll
            for (int nt = 0; nt < FA_CHUNK / 8; nt++) cm = fmaxf(cm, fmaxf(s[nt][2 * hh], s[nt][2 * hh + 1]));
            float mn = fmaxf(m[hh], quad_max(cm)), sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < FA_CHUNK / 8; nt++) sum += expf(s[nt][2 * hh] - mn) + expf(s[nt][2 * hh + 1] - mn);
            l[hh] = l[hh] * expf(m[hh] - mn) + sum;  // exp(-inf) = 0 before the first chunk
            m[hh] = mn;
        }
    }
    float inv[2] = {1.0f / quad_sum(l[0]), 1.0f / quad_sum(l[1])};
    // Pass 2: P = exp(S − m)/l to probs, and O += P·v.
    float* prow = probs + head * t * t;
    float o[FA_HS / 8][4];
    fa_zero(o);
    for (int j0 = 0; j0 < t; j0 += FA_CHUNK) {
        fa_load2(sk, k, sv, v, c3, j0, t, hs);
        scores(j0);
        fa_each(i0, j0, c, [&](int nt, int e, int i, int j) {
            float p = expf(s[nt][e] - m[e >> 1]) * inv[e >> 1];  // masked: exp(-inf) = 0
            s[nt][e] = p;
            if (i < t && j < t) prow[(long long)i * t + j] = p;
        });
        fa_times(o, s, sv, g, c, hs);
    }
    fa_store(out, copy, bi * t * c1 + h * hs, c1, o, i0, t, c, hs, 0);
}

// Fused backward for the shapes of the fused forward, in two kernels on the tensor cores, with
// the unfused path's precision (bf16 dO, v, dS, k, q, P; f32 accumulation and dS):
//   dq pass (blocks of query rows as the forward's, each warp 16 rows, two passes over the
//     keys): first ⟨P, dP⟩ per row with dP = dO·vᵀ, then dP again, dS = P ⊙ (dP − ⟨P, dP⟩)·scale
//     to `ds` (f32, [t, t] per head) for the other pass, and dqkv's q part += dS·k;
//   dkv pass (one block per FA_CHUNK keys, each warp 16 keys, over every query):
//     dqkv's k part += dSᵀ·q and its v part += Pᵀ·dO.
// Both read qkv, dO and P where the step keeps them and add into packed dqkv with its bf16 copy:
// no permutation, and dP never leaves the SM.
extern "C" __global__ void __launch_bounds__(32 * FA_WARPS, 2) attention_fused_backward_dq(const float* qkv, const float* dout, const float* probs,
                                                      float* dqkv, bf16_bits* copy, float* ds, int t, int nh, int hs,
                                                      float scale) {
    __shared__ unsigned int sdo[FA_ROWS][FA_LDW];
    __shared__ unsigned int sk[FA_CHUNK][FA_LDW];
    __shared__ unsigned int sv[FA_CHUNK][FA_LDW];
    long long head = blockIdx.y, bi = head / nh, h = head % nh, c1 = (long long)nh * hs, c3 = 3 * c1;
    const float* k = qkv + bi * t * c3 + c1 + h * hs;
    const float* v = k + c1;
    int rows = 16 * (blockDim.x >> 5), row0 = blockIdx.x * rows, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int r = (threadIdx.x >> 5) * 16 + g, i0 = row0 + r;  // this lane's rows: i0 and i0 + 8
    int ksteps = hs / 16;
    fa_load(sdo, dout + bi * t * c1 + h * hs, c1, row0, rows, t, hs);
    __syncthreads();
    unsigned int da[FA_HS / 16][4];
    fa_rows(da, sdo, r, c, ksteps);
    const float* prow = probs + head * t * t;
    // P[i][j]; 0 past t (and where masked).
    auto p_at = [&](int i, int j) { return i < t && j < t ? prow[(long long)i * t + j] : 0.0f; };
    float dp[FA_CHUNK / 8][4];
    float dot[2] = {0.0f, 0.0f};
    for (int j0 = 0; j0 < t; j0 += FA_CHUNK) {
        __syncthreads();
        fa_load(sv, v, c3, j0, FA_CHUNK, t, hs);
        __syncthreads();
        fa_products(dp, da, sv, g, c, ksteps);
        fa_each(i0, j0, c, [&](int nt, int e, int i, int j) { dot[e >> 1] += p_at(i, j) * dp[nt][e]; });
    }
    dot[0] = quad_sum(dot[0]);
    dot[1] = quad_sum(dot[1]);
    float* dsh = ds + head * t * t;
    float dq[FA_HS / 8][4];
    fa_zero(dq);
    for (int j0 = 0; j0 < t; j0 += FA_CHUNK) {
        fa_load2(sv, v, sk, k, c3, j0, t, hs);
        fa_products(dp, da, sv, g, c, ksteps);
        fa_each(i0, j0, c, [&](int nt, int e, int i, int j) {
            float d = p_at(i, j) * (dp[nt][e] - dot[e >> 1]) * scale;
            dp[nt][e] = d;
            if (i < t && j < t) dsh[(long long)i * t + j] = d;
        });
        fa_times(dq, dp, sk, g, c, hs);
    }
    fa_store(dqkv, copy, bi * t * c3 + h * hs, c3, dq, i0, t, c, hs, 1);
}



// The dkv pass: blocks of FA_DKV_WARPS warps, FA_CHUNK keys each (it keeps no per-key state, so
// smaller blocks keep more of them per SM).
#define FA_DKV_WARPS 4

extern "C" __global__ void __launch_bounds__(32 * FA_DKV_WARPS, 3) attention_fused_backward_dkv(const float* qkv, const float* dout, const float* probs,
                                                       const float* ds, float* dqkv, bf16_bits* copy, int t, int nh,
                                                       int hs) {
    __shared__ unsigned int sq[FA_CHUNK][FA_LDW];
    __shared__ unsigned int sdo[FA_CHUNK][FA_LDW];
    __shared__ unsigned int sds[FA_CHUNK][FA_LDW];
    __shared__ unsigned int sp[FA_CHUNK][FA_LDW];
    long long head = blockIdx.y, bi = head / nh, h = head % nh, c1 = (long long)nh * hs, c3 = 3 * c1;
    const float* q = qkv + bi * t * c3 + h * hs;
    const float* dy = dout + bi * t * c1 + h * hs;
    int key0 = blockIdx.x * FA_CHUNK, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    int kr = (threadIdx.x >> 5) * 16 + g;  // this lane's keys in the tile: kr and kr + 8
    // Row i of this head's P and dS from key0 on.
    const float* p = probs + head * t * t + key0;
    const float* dsh = ds + head * t * t + key0;
    float dk[FA_HS / 8][4], dv[FA_HS / 8][4];
    fa_zero(dk);
    fa_zero(dv);
    for (int q0 = 0; q0 < t; q0 += FA_CHUNK) {
        __syncthreads();  // the previous chunk's reads are done
        fa_load(sq, q, c3, q0, FA_CHUNK, t, hs);
        fa_load(sdo, dy, c1, q0, FA_CHUNK, t, hs);
        fa_load(sds, dsh, t, q0, FA_CHUNK, t, t - key0);
        fa_load(sp, p, t, q0, FA_CHUNK, t, t - key0);
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < FA_CHUNK / 16; ks++) {
            unsigned int ads[4], ap[4];
            fa_transposed(ads, sds, ks * 16 + 2 * c, kr);
            fa_transposed(ap, sp, ks * 16 + 2 * c, kr);
#pragma unroll
            for (int nt = 0; nt < FA_HS / 8; nt++) {
                if (nt * 8 < hs) {
                    unsigned int b[2];
                    fa_column(b, sq, ks * 16 + 2 * c, nt * 8 + g);
                    mma_bf16(dk[nt], ads, b);
                    fa_column(b, sdo, ks * 16 + 2 * c, nt * 8 + g);
                    mma_bf16(dv[nt], ap, b);
                }
            }
        }
    }
    long long at0 = bi * t * c3 + c1 + h * hs;
    fa_store(dqkv, copy, at0, c3, dk, key0 + kr, t, c, hs, 1);
    fa_store(dqkv, copy, at0 + c1, c3, dv, key0 + kr, t, c, hs, 1);
}
