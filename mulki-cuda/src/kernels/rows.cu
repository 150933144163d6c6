// Row kernels: one block per row of `c` elements, threads striding over the row.

#define ROW_LOOP(i, c) for (int i = threadIdx.x; i < (c); i += blockDim.x)

// `copy` (null for none): where `out`'s bf16 rounding goes too (see keep_bf16).
extern "C" __global__ void layer_norm_forward_f32(float* out, bf16_bits* copy, float* mean, float* rstd, const float* inp,
                                                  const float* w, const float* b, int c, float eps) {
    long long r = blockIdx.x;
    const float* x = inp + r * c;
    float s = 0.0f;
    ROW_LOOP(i, c) s += x[i];
    float mu = block_sum(s) / c;
    float q = 0.0f;
    ROW_LOOP(i, c) q += (x[i] - mu) * (x[i] - mu);
    float rs = 1.0f / sqrtf(block_sum(q) / c + eps);
    ROW_LOOP(i, c) {
        float y = (x[i] - mu) * rs * w[i] + b[i];
        out[r * c + i] = y;
        keep_bf16(copy, r * c + i, y);
    }
    if (threadIdx.x == 0) {
        mean[r] = mu;
        rstd[r] = rs;
    }
}

// dinp += rs·(dy·w − mean(dy·w) − x̂·mean(dy·w·x̂)), also rounded into `copy` (null for none;
// see keep_bf16); writes dy·x̂ to `dyxhat` for dweight's column sum (dbias is the column sum of
// dout).
extern "C" __global__ void layer_norm_backward_f32(float* dinp, bf16_bits* copy, float* dyxhat, const float* dout,
                                                   const float* inp, const float* w, const float* mean,
                                                   const float* rstd, int c) {
    long long r = blockIdx.x;
    const float *x = inp + r * c, *dy = dout + r * c;
    float mu = mean[r], rs = rstd[r];
    float s1 = 0.0f, s2 = 0.0f;
    ROW_LOOP(i, c) {
        float d = dy[i] * w[i];
        s1 += d;
        s2 += d * (x[i] - mu) * rs;
    }
    float m1 = block_sum(s1) / c, m2 = block_sum(s2) / c;
    ROW_LOOP(i, c) {
        float xhat = (x[i] - mu) * rs;
        float y = dinp[r * c + i] + rs * (dy[i] * w[i] - m1 - xhat * m2);
        dinp[r * c + i] = y;
        keep_bf16(copy, r * c + i, y);
        dyxhat[r * c + i] = dy[i] * xhat;
    }
}

// log-sum-exp of a row, max-subtracted; −inf for a row of −inf.
__device__ float row_lse(const float* x, int c) {
    float m = -INF_F;
    ROW_LOOP(i, c) m = fmaxf(m, x[i]);
    m = block_max(m);
    if (m == -INF_F) return m;
    float s = 0.0f;
    ROW_LOOP(i, c) s += expf(x[i] - m);
    return m + logf(block_sum(s));
}

// log = 0: softmax, 1: log-softmax.
extern "C" __global__ void softmax_forward_f32(float* out, const float* inp, int c, int log) {
    long long r = blockIdx.x;
    const float* x = inp + r * c;
    float lse = row_lse(x, c);
    ROW_LOOP(i, c) out[r * c + i] = log ? x[i] - lse : expf(x[i] - lse);
}

extern "C" __global__ void softmax_backward_f32(float* dinp, const float* dout, const float* out, int c, int log) {
    long long r = blockIdx.x;
    const float *dy = dout + r * c, *y = out + r * c;
    float s = 0.0f;
    ROW_LOOP(i, c) s += log ? dy[i] : y[i] * dy[i];
    s = block_sum(s);
    ROW_LOOP(i, c) dinp[r * c + i] += log ? dy[i] - expf(y[i]) * s : y[i] * (dy[i] - s);
}

extern "C" __global__ void l2_normalize_forward_f32(float* out, float* norm, const float* inp, int c, float eps) {
    long long r = blockIdx.x;
    const float* x = inp + r * c;
    float s = 0.0f;
    ROW_LOOP(i, c) s += x[i] * x[i];
    float n = sqrtf(block_sum(s));
    float denom = fmaxf(n, eps);
    ROW_LOOP(i, c) out[r * c + i] = x[i] / denom;
    if (threadIdx.x == 0) norm[r] = n;
}

extern "C" __global__ void l2_normalize_backward_f32(float* dinp, const float* dout, const float* out,
                                                     const float* norm, int c, float eps) {
    long long r = blockIdx.x;
    const float *dy = dout + r * c, *y = out + r * c;
    float n = norm[r];
    if (n > eps) {
        float s = 0.0f;
        ROW_LOOP(i, c) s += y[i] * dy[i];
        s = block_sum(s);
        ROW_LOOP(i, c) dinp[r * c + i] += (dy[i] - y[i] * s) / n;
    } else {
        ROW_LOOP(i, c) dinp[r * c + i] += dy[i] / eps;
    }
}

extern "C" __global__ void row_dot_f32(float* out, const float* a, const float* b, int c) {
    long long r = blockIdx.x;
    float s = 0.0f;
    ROW_LOOP(i, c) s += a[r * c + i] * b[r * c + i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[r] = s;
}

// Long rows (a whole parameter vector): block (ch, r) sums a[r]·b[r] over elements
// [ch·len, (ch+1)·len) into partial[r·chunks + ch]; `row_sum_f32` then adds the chunks in order.
extern "C" __global__ void row_dot_partial_f32(float* partial, const float* a, const float* b, long long c,
                                               long long len, int chunks) {
    long long r = blockIdx.y, lo = (long long)blockIdx.x * len;
    long long hi = lo + len < c ? lo + len : c;
    float s = 0.0f;
    for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) s += a[r * c + i] * b[r * c + i];
    s = block_sum(s);
    if (threadIdx.x == 0) partial[r * chunks + blockIdx.x] = s;
}

extern "C" __global__ void row_sum_f32(float* out, const float* x, int c) {
    long long r = blockIdx.x;
    float s = 0.0f;
    ROW_LOOP(i, c) s += x[r * c + i];
    s = block_sum(s);
    if (threadIdx.x == 0) out[r] = s;
}

// KL(p‖q) = Σ e^lp·(lp − lq), terms with e^lp = 0 skipped (0·log 0 = 0).
extern "C" __global__ void row_kl_f32(float* out, const float* lp, const float* lq, int c) {
    long long r = blockIdx.x;
    float s = 0.0f;
    ROW_LOOP(i, c) {
        float a = lp[r * c + i], pa = expf(a);
        if (pa != 0.0f) s += pa * (a - lq[r * c + i]);
    }
    s = block_sum(s);
    if (threadIdx.x == 0) out[r] = s;
}

extern "C" __global__ void cross_entropy_forward_f32(float* loss, float* lse_out, const float* logits,
                                                     const unsigned int* targets, int nc, float smoothing) {
    long long r = blockIdx.x;
    const float* z = logits + r * nc;
    float lse = row_lse(z, nc);
    float s = 0.0f;
    ROW_LOOP(i, nc) s += z[i];
    s = block_sum(s);
    if (threadIdx.x == 0) {
        float v = lse - (1.0f - smoothing) * z[targets[r]];
        if (smoothing != 0.0f) v = v - smoothing / (float)nc * s;
        loss[r] = v;
        lse_out[r] = lse;
    }
}

extern "C" __global__ void cross_entropy_backward_f32(float* dlogits, const float* dloss, const float* logits,
                                                      const float* lse, const unsigned int* targets, int nc,
                                                      float smoothing) {
    long long r = blockIdx.x;
    float uniform = smoothing / (float)nc;
    ROW_LOOP(j, nc) {
        float target = uniform;
        if (j == (int)targets[r]) target = target + 1.0f - smoothing;
        dlogits[r * nc + j] += dloss[r] * (expf(logits[r * nc + j] - lse[r]) - target);
    }
}

// π_r = normalize(m·π_r + (1−m)·sums_r/counts_r) for rows with counts_r > 0.
extern "C" __global__ void prototype_ema_f32(float* protos, const float* sums, const float* counts,
                                             const float* guard, float m, int c, float eps) {
    long long r = blockIdx.x;
    if (counts[r] <= 0.0f || !guard_ok(guard)) return;
    float inv = 1.0f / counts[r];
    float s = 0.0f;
    ROW_LOOP(i, c) {
        float x = m * protos[r * c + i] + (1.0f - m) * sums[r * c + i] * inv;
        protos[r * c + i] = x;
        s += x * x;
    }
    float norm = fmaxf(sqrtf(block_sum(s)), eps);
    ROW_LOOP(i, c) protos[r * c + i] = protos[r * c + i] / norm;
}

// Column sums, out[j] += Σ_o inp[o·ld + j] (j < n), in two deterministic passes: each of
// `chunks` row ranges sums into partial[chunk·n + j], then the chunks are added in order.
extern "C" __global__ void column_sum_partial_f32(float* partial, const float* inp, long long outer, long long ld,
                                                  long long n, int chunks) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    int ch = blockIdx.y;
    if (j >= n) return;
    long long lo = outer * ch / chunks, hi = outer * (ch + 1) / chunks;
    float s = 0.0f;
    for (long long o = lo; o < hi; o++) s += inp[o * ld + j];
    partial[(long long)ch * n + j] = s;
}

extern "C" __global__ void column_sum_finish_f32(float* out, const float* partial, long long n, int chunks) {
    FOR_EACH(j, n) {
        float s = 0.0f;
        for (int ch = 0; ch < chunks; ch++) s += partial[(long long)ch * n + j];
        out[j] += s;
    }
}
