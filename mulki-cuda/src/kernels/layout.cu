// Data movement with arithmetic: gathers, scatters, patches, broadcasts.

// out[r, :] = table[ids[r], :]
extern "C" __global__ void embedding_forward_f32(float* out, const float* table, const unsigned int* ids, int c,
                                                 long long n) {
    FOR_EACH(i, n) out[i] = table[(long long)ids[i / c] * c + i % c];
}

// Scatter-add grouped by destination row, so each row's sum runs in row order without atomics:
// block g owns table row `dest[g]` and adds dout rows `rows[start[g] .. start[g+1]]` in order.
extern "C" __global__ void embedding_backward_f32(float* dtable, const float* dout, const unsigned int* dest,
                                                  const unsigned int* start, const unsigned int* rows, int c) {
    int g = blockIdx.x;
    long long base = (long long)dest[g] * c;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        float s = dtable[base + j];
        for (unsigned int k = start[g]; k < start[g + 1]; k++) s += dout[(long long)rows[k] * c + j];
        dtable[base + j] = s;
    }
}

// Patch element e of patch row r <-> pixel index (HF conv weight order: channel, y, x).
__device__ __forceinline__ long long patch_pixel(long long r, int e, int channels, int side, int patch) {
    int g = side / patch;
    long long bi = r / (g * g);
    int pi = (int)(r % (g * g));
    int py = pi / g, px = pi % g;
    int ch = e / (patch * patch), y = (e / patch) % patch, x = e % patch;
    return ((bi * channels + ch) * side + py * patch + y) * (long long)side + px * patch + x;
}

extern "C" __global__ void patchify_forward_f32(float* out, const float* pixels, int channels, int side, int patch,
                                                long long n) {
    int pd = channels * patch * patch;
    FOR_EACH(i, n) out[i] = pixels[patch_pixel(i / pd, (int)(i % pd), channels, side, patch)];
}

// Patches do not overlap: every pixel receives exactly one patch element, no race.
extern "C" __global__ void patchify_backward_f32(float* dpixels, const float* dout, int channels, int side, int patch,
                                                 long long n) {
    int pd = channels * patch * patch;
    FOR_EACH(i, n) dpixels[patch_pixel(i / pd, (int)(i % pd), channels, side, patch)] += dout[i];
}

// out[b] = [class_emb; patch_out[b]] + pos; out [b, t, c]
extern "C" __global__ void vision_embed_forward_f32(float* out, const float* patch_out, const float* class_emb,
                                                    const float* pos, int t, int c, long long n) {
    FOR_EACH(i, n) {
        long long row = i / c;
        int j = (int)(i % c), tok = (int)(row % t);
        long long bi = row / t;
        float s = tok == 0 ? class_emb[j] : patch_out[(bi * (t - 1) + tok - 1) * c + j];
        out[i] = s + pos[(long long)tok * c + j];
    }
}

// dpatch_out[b, i−1] += dout[b, i] for tokens i ≥ 1.
extern "C" __global__ void vision_embed_backward_patches_f32(float* dpatch_out, const float* dout, int t, int c,
                                                             long long n) {
    FOR_EACH(i, n) {
        long long row = i / c;
        int j = (int)(i % c);
        long long bi = row / (t - 1), tok = row % (t - 1) + 1;
        dpatch_out[i] += dout[(bi * t + tok) * c + j];
    }
}

// out[o, :] += add[:] with add of `inner` elements (bias, position embeddings): block rows over
// the outer index (see rows_unrolled), so no division per element.
extern "C" __global__ void broadcast_add_f32(float* out, const float* add, int inner, long long outer) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= inner) return;
    float a = add[j];
    rows_unrolled(
        outer, [&](long long o) { return out[o * inner + j]; }, [&](long long o, float x) { out[o * inner + j] = x + a; });
}
