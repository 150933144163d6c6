// Compiles mulki's header-free CUDA C++ kernels as host C++ (see emulator.cpp).
//
// Built-in variables are globals that the scheduler sets before it resumes a thread; `__shared__`
// variables are function statics, shared by all threads of the one block that runs at a time;
// `__syncthreads` and warp shuffles suspend the calling thread until every thread of the block
// has reached the same point.
#pragma once
#include <math.h>
#include <string.h>

struct emu_dim3 {
    unsigned int x, y, z;
};
extern emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

void emu_sync_block();
float emu_shfl_xor(float v, int lane_mask);
void emu_mma_bf16(float* acc, const unsigned int* a, const unsigned int* b);

inline void __syncthreads() { emu_sync_block(); }
inline float __shfl_xor_sync(unsigned int, float v, int lane_mask) { return emu_shfl_xor(v, lane_mask); }
// The tensor-core product of common.cu (whose own definition is for the GPU only).
inline void mma_bf16(float* acc, const unsigned int* a, const unsigned int* b) { emu_mma_bf16(acc, a, b); }
// Only the f32 shuffle is emulated: another type must not convert through float silently.
template <typename T>
T __shfl_xor_sync(unsigned int, T, int) = delete;

inline float __int_as_float(int i) {
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}
inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    memcpy(&u, &f, sizeof u);
    return u;
}
inline double __longlong_as_double(long long i) {
    double d;
    memcpy(&d, &i, sizeof d);
    return d;
}
