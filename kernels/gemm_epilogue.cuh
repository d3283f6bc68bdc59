// kernels/gemm_epilogue.cuh — the GEMM epilogues as kernels of ours, for the cases where
// cuBLASLt has no fused algorithm (blas::matmul falls back to a plain GEMM followed by these),
// and the bias-gradient accumulation of linear_backward. Row-major, batch 1, f32 or bf16 with
// f32 arithmetic. Small and plain: they also serve as the example of a kernel family.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace pickscore::cuda::kernels {

// cuBLASLt's GELU: the tanh approximation, and its derivative.
__device__ __forceinline__ float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float gelu_tanh_grad(float x) {
    const float k = 0.7978845608028654f;
    const float t = tanhf(k * (x + 0.044715f * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
}

// C[i,j] = act(C[i,j] + bias[j]); aux[i,j] = the argument of act. bias and aux may be null.
template <class T>
__global__ void bias_act_kernel(T* C, std::int64_t ldc, T* aux, std::int64_t ldaux, const T* bias, std::int64_t M,
                                std::int64_t N, bool gelu) {
    const std::int64_t total = M * N;
    for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t i = idx / N, j = idx % N;
        float t = to_float(C[i * ldc + j]);
        if (bias != nullptr) t += to_float(bias[j]);
        if (aux != nullptr) aux[i * ldaux + j] = from_float<T>(t);
        C[i * ldc + j] = from_float<T>(gelu ? gelu_tanh(t) : t);
    }
}

// C[i,j] *= gelu_tanh'(aux[i,j]).
template <class T>
__global__ void dgelu_kernel(T* C, std::int64_t ldc, const T* aux, std::int64_t ldaux, std::int64_t M, std::int64_t N) {
    const std::int64_t total = M * N;
    for (std::int64_t idx = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t i = idx / N, j = idx % N;
        C[i * ldc + j] = from_float<T>(to_float(C[i * ldc + j]) * gelu_tanh_grad(to_float(aux[i * ldaux + j])));
    }
}

// out[o] = (accumulate ? out[o] : 0) + Σ_r X[o·so + r·sr] for o < n_out, r < n_reduce.
// Block (32, 8): threadIdx.x picks the output, threadIdx.y strides over the reduction; the 8
// partial sums meet in shared memory. Coalesced when so == 1 (column sums of a row-major matrix).
template <class T>
__global__ void strided_sum_kernel(T* out, const T* X, std::int64_t n_out, std::int64_t n_reduce, std::int64_t so,
                                   std::int64_t sr, bool accumulate) {
    PICKSCORE_SHARED(float[8][33], partial);
    const std::int64_t o = std::int64_t(blockIdx.x) * 32 + threadIdx.x;
    float s = 0.0f;
    if (o < n_out)
        for (std::int64_t r = threadIdx.y; r < n_reduce; r += 8) s += to_float(X[o * so + r * sr]);
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && o < n_out) {
        float t = 0.0f;
        for (int y = 0; y < 8; ++y) t += partial[y][threadIdx.x];
        if (accumulate) t += to_float(out[o]);
        out[o] = from_float<T>(t);
    }
}

// dst[i] += src[i].
template <class T>
__global__ void accumulate_kernel(T* dst, const T* src, std::int64_t n) {
    for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += std::int64_t(gridDim.x) * blockDim.x)
        dst[i] = from_float<T>(to_float(dst[i]) + to_float(src[i]));
}

// Grid size for the grid-stride elementwise kernels above (256 threads a block).
inline unsigned elementwise_blocks(std::int64_t n) {
    const std::int64_t blocks = (n + 255) / 256;
    return unsigned(blocks < 1 ? 1 : (blocks > 4096 ? 4096 : blocks));
}

}  // namespace pickscore::cuda::kernels
