// Multi-head self-attention over packed qkv [b, t, 3c] (head h owns columns h·hs..(h+1)·hs of
// each of q, k, v). One block per (batch, head, query row); dynamic shared memory holds the row
// of scores (t floats) and one hs-vector.
//
// Forward: p = softmax(q·kᵀ/√hs [+ causal mask]) (saved, masked entries 0), out = p·v.
// Backward in two kernels so that no two blocks write one value: `attention_backward_query`
// (per query row i) forms dS_i = p_i ⊙ (dO_i·vᵀ − ⟨p_i, dO_i·vᵀ⟩)/√hs into `ds` and adds dQ_i;
// `attention_backward_key` (per key row j) adds dK_j = Σ_i dS_ij q_i and dV_j = Σ_i p_ij dO_i.

__device__ __forceinline__ long long qkv_at(int bi, int i, int which, int h, int t, int c, int hs) {
    return ((long long)bi * t + i) * 3 * c + which * c + h * hs;
}

extern "C" __global__ void attention_forward_f32(float* out, float* probs, const float* qkv, int t, int nh, int hs,
                                                 int causal, float scale) {
    extern __shared__ float sh[];
    float *score = sh, *q = sh + t;
    int i = blockIdx.x % t, bh = blockIdx.x / t, h = bh % nh, bi = bh / nh, c = nh * hs;
    int keys = causal ? i + 1 : t;
    const float* qrow = qkv + qkv_at(bi, i, 0, h, t, c, hs);
    for (int d = threadIdx.x; d < hs; d += blockDim.x) q[d] = qrow[d];
    __syncthreads();
    float m = -INF_F;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) {
        const float* k = qkv + qkv_at(bi, j, 1, h, t, c, hs);
        float s = 0.0f;
        for (int d = 0; d < hs; d++) s += q[d] * k[d];
        s *= scale;
        score[j] = s;
        m = fmaxf(m, s);
    }
    m = block_max(m);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) {
        float e = expf(score[j] - m);
        score[j] = e;
        sum += e;
    }
    sum = block_sum(sum);  // its __syncthreads also publishes score[]
    float* p = probs + ((long long)bh * t + i) * t;
    for (int j = threadIdx.x; j < t; j += blockDim.x) {
        float v = j < keys ? score[j] / sum : 0.0f;
        score[j] = v;
        p[j] = v;
    }
    __syncthreads();
    float* o = out + ((long long)bi * t + i) * c + h * hs;
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < keys; j++) acc += score[j] * qkv[qkv_at(bi, j, 2, h, t, c, hs) + d];
        o[d] = acc;
    }
}

extern "C" __global__ void attention_backward_query_f32(float* dqkv, float* ds, const float* dout, const float* qkv,
                                                        const float* probs, int t, int nh, int hs, int causal,
                                                        float scale) {
    extern __shared__ float sh[];
    float *row = sh, *dy = sh + t;
    int i = blockIdx.x % t, bh = blockIdx.x / t, h = bh % nh, bi = bh / nh, c = nh * hs;
    int keys = causal ? i + 1 : t;
    const float* dyrow = dout + ((long long)bi * t + i) * c + h * hs;
    for (int d = threadIdx.x; d < hs; d += blockDim.x) dy[d] = dyrow[d];
    __syncthreads();
    const float* p = probs + ((long long)bh * t + i) * t;
    float pdp = 0.0f;
    for (int j = threadIdx.x; j < keys; j += blockDim.x) {
        const float* v = qkv + qkv_at(bi, j, 2, h, t, c, hs);
        float s = 0.0f;
        for (int d = 0; d < hs; d++) s += dy[d] * v[d];
        row[j] = s;
        pdp += p[j] * s;
    }
    pdp = block_sum(pdp);
    float* dsrow = ds + ((long long)bh * t + i) * t;
    for (int j = threadIdx.x; j < t; j += blockDim.x) {
        float v = j < keys ? p[j] * (row[j] - pdp) * scale : 0.0f;
        row[j] = v;
        dsrow[j] = v;
    }
    __syncthreads();
    float* dq = dqkv + qkv_at(bi, i, 0, h, t, c, hs);
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < keys; j++) acc += row[j] * qkv[qkv_at(bi, j, 1, h, t, c, hs) + d];
        dq[d] += acc;
    }
}

extern "C" __global__ void attention_backward_key_f32(float* dqkv, const float* ds, const float* dout,
                                                      const float* qkv, const float* probs, int t, int nh, int hs,
                                                      int causal) {
    int j = blockIdx.x % t, bh = blockIdx.x / t, h = bh % nh, bi = bh / nh, c = nh * hs;
    int first = causal ? j : 0;  // queries before j do not see key j
    float* dk = dqkv + qkv_at(bi, j, 1, h, t, c, hs);
    float* dv = dqkv + qkv_at(bi, j, 2, h, t, c, hs);
    for (int d = threadIdx.x; d < hs; d += blockDim.x) {
        float ak = 0.0f, av = 0.0f;
        for (int i = first; i < t; i++) {
            long long pij = ((long long)bh * t + i) * t + j;
            ak += ds[pij] * qkv[qkv_at(bi, i, 0, h, t, c, hs) + d];
            av += probs[pij] * dout[((long long)bi * t + i) * c + h * hs + d];
        }
        dk[d] += ak;
        dv[d] += av;
    }
}
