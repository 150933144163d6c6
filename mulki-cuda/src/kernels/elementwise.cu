// Elementwise kernels: fill, scale, axpby, activations, AdamW, bf16 conversion, row-scaled adds.

extern "C" __global__ void fill_f32(float* y, float v, long long n) {
    FOR_EACH(i, n) y[i] = v;
}

extern "C" __global__ void scale_f32(float* y, float a, long long n) {
    FOR_EACH(i, n) y[i] = y[i] * a;
}

// y = a·x + b·y
extern "C" __global__ void axpby_f32(float* y, const float* x, float a, float b, long long n) {
    each_unrolled(
        n, [&](long long i) { return f2{x[i], y[i]}; }, [&](long long i, f2 v) { y[i] = a * v.a + b * v.b; });
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// act: 0 = quick_gelu x·σ(1.702x), 1 = exact erf gelu.
__device__ __forceinline__ float act_value(int act, float x) {
    if (act == 0) return x * sigmoidf_(1.702f * x);
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

__device__ __forceinline__ float act_derivative(int act, float x) {
    if (act == 0) {
        float s = sigmoidf_(1.702f * x);
        return s + 1.702f * x * s * (1.0f - s);
    }
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = expf(-(x * x) / 2.0f) * 0.3989422804014327f;
    return cdf + x * pdf;
}

// `copy` (null for none): where the result's bf16 rounding goes too (see keep_bf16).
extern "C" __global__ void act_forward_f32(float* out, bf16_bits* copy, const float* inp, int act, long long n) {
    each_unrolled(
        n, [&](long long i) { return inp[i]; },
        [&](long long i, float x) {
            float y = act_value(act, x);
            out[i] = y;
            keep_bf16(copy, i, y);
        });
}

extern "C" __global__ void act_backward_f32(float* dinp, bf16_bits* copy, const float* dout, const float* inp, int act,
                                            long long n) {
    each_unrolled(
        n, [&](long long i) { return f3{dinp[i], dout[i], inp[i]}; },
        [&](long long i, f3 v) {
            float y = v.a + v.b * act_derivative(act, v.c);
            dinp[i] = y;
            keep_bf16(copy, i, y);
        });
}

// torch.optim.AdamW, the same f32 operations in the same order as the CPU backend; skipped when
// the guard (null for none) is not finite.
extern "C" __global__ void adamw_f32(float* p, const float* g, float* m, float* v, const float* guard, float decay,
                                     float b1, float b2, float step_size, float bc2_sqrt, float eps, long long n) {
    if (!guard_ok(guard)) return;
    FOR_EACH(i, n) {
        float gi = g[i];
        float pi = p[i] * decay;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" __global__ void to_bf16(bf16_bits* out, const float* inp, long long n) {
    each_unrolled(n, [&](long long i) { return inp[i]; }, [&](long long i, float x) { out[i] = f32_to_bf16(x); });
}

// dst[r, :] += dout[r] · src[r, :]  (row_dot backward, one side)
extern "C" __global__ void row_scaled_add_f32(float* dst, const float* dout, const float* src, int c, long long n) {
    FOR_EACH(i, n) dst[i] += dout[i / c] * src[i];
}

// KL backward, one side: teacher (p side) dout·e^lp·(lp − lq + 1), student (q side) −dout·e^lp.
extern "C" __global__ void kl_backward_f32(float* dst, const float* dout, const float* lp, const float* lq, int teacher,
                                          int c, long long n) {
    FOR_EACH(i, n) {
        float a = lp[i], pa = expf(a), d = dout[i / c];
        dst[i] += teacher ? d * pa * (a - lq[i] + 1.0f) : -d * pa;
    }
}

// Per-sample teacher weights, in f64 as the CPU backend computes them. rule 0: confidence
// (stat = −log q per teacher), rule 1: discrepancy (stat = ‖·‖², two teachers).
extern "C" __global__ void teacher_weights_f32(float* alpha, const float* stat, int rule, double p0, double p1,
                                               int teachers, int b) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= b) return;
    if (rule == 0) {
        double mx = __longlong_as_double(0xfff0000000000000LL);  // -inf
        for (int k = 0; k < teachers; k++) mx = fmax(mx, exp(-(double)stat[k * b + i]) / p0);
        double sum = 0.0;
        for (int k = 0; k < teachers; k++) sum += exp(exp(-(double)stat[k * b + i]) / p0 - mx);
        for (int k = 0; k < teachers; k++) alpha[k * b + i] = (float)(exp(exp(-(double)stat[k * b + i]) / p0 - mx) / sum);
    } else {
        double x = p0 * (sqrt(fmax((double)stat[i], 0.0)) - p1);
        double p = 1.0 / (1.0 + exp(-x));
        alpha[b + i] = (float)p;
        alpha[i] = (float)(1.0 - p);
    }
}
