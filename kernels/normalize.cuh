// kernels/normalize.cuh — row-wise L2 normalisation (pickscore/cuda/normalize.hpp).
//
// One warp per row (blocks of 32 x 8 threads): the lanes stride over the row in chunks of W
// elements (16 bytes — 4 f32 or 8 bf16 — when the row starts allow, else 1), reduce the sum of
// squares (forward) or <out, dout> (backward) with butterfly shuffles so every lane holds it,
// and then write their own chunks, which they read a moment before (still in L1/L2).
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include <pickscore/cuda/normalize.hpp>

#include "common.cuh"
#include "elementwise.cuh"

namespace pickscore::cuda::kernels::normalize {

using chunk::Chunk;
using chunk::load;
using chunk::store;

using vec::warp_sum;  // a fixed butterfly: the same bits in every lane and on every run

constexpr int kRowsPerBlock = 8;

template <class T, int W>
__global__ void l2_normalize_forward_kernel(T* out, float* norm, const T* in, std::int64_t rows, std::int64_t C) {
    const std::int64_t r = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (r >= rows) return;  // the whole warp leaves together
    const T* x = in + r * C;
    T* y = out + r * C;
    float ss = 0.0f;
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) {
        const auto a = load<W>(x + c);
        for (int k = 0; k < W; ++k) ss += to_float(a.v[k]) * to_float(a.v[k]);
    }
    const float n = sqrtf(warp_sum(ss));
    const float inv = n > 0.0f ? 1.0f / n : 0.0f;  // a zero row gives zeros
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) {
        const auto a = load<W>(x + c);
        Chunk<T, W> o;
        for (int k = 0; k < W; ++k) o.v[k] = from_float<T>(to_float(a.v[k]) * inv);
        store<W>(y + c, o);
    }
    if (norm != nullptr && threadIdx.x == 0) norm[r] = n;
}

template <class T, int W>
__global__ void l2_normalize_backward_kernel(T* din, const T* dout, const T* out, const float* norm, std::int64_t rows,
                                             std::int64_t C) {
    const std::int64_t r = std::int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.y;
    if (r >= rows) return;
    const T* y = out + r * C;
    const T* g = dout + r * C;
    T* dx = din + r * C;
    float yg = 0.0f;
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) {
        const auto a = load<W>(y + c), b = load<W>(g + c);
        for (int k = 0; k < W; ++k) yg += to_float(a.v[k]) * to_float(b.v[k]);
    }
    yg = warp_sum(yg);
    const float n = norm[r];
    const float inv = n > 0.0f ? 1.0f / n : 0.0f;  // the gradient of a zero row is zero
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < C; c += 32 * W) {
        const auto a = load<W>(y + c), b = load<W>(g + c);
        Chunk<T, W> o;
        for (int k = 0; k < W; ++k) o.v[k] = from_float<T>((to_float(b.v[k]) - to_float(a.v[k]) * yg) * inv);
        store<W>(dx + c, o);
    }
}

}  // namespace pickscore::cuda::kernels::normalize

namespace pickscore::cuda {

namespace normalize_host {

template <class T>
constexpr bool supported = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

}  // namespace normalize_host

template <class T>
void l2_normalize_forward(T* out, float* norm, const T* in, std::int64_t rows, std::int64_t C) {
    static_assert(normalize_host::supported<T>, "the CUDA L2 normalisation supports f32 and bf16");
    if (rows == 0) return;
    constexpr int R = kernels::normalize::kRowsPerBlock;
    with_chunk_width<T>(C, {out, in}, [&](auto w) {
        launch(kernels::normalize::l2_normalize_forward_kernel<device_t<T>, decltype(w)::value>,
               dim3(blocks_for(rows, R)), dim3(32, R), 0, device_ptr(out), norm, device_ptr(in), rows, C);
    });
}

template <class T>
void l2_normalize_backward(T* din, const T* dout, const T* out, const float* norm, std::int64_t rows, std::int64_t C) {
    static_assert(normalize_host::supported<T>, "the CUDA L2 normalisation supports f32 and bf16");
    if (rows == 0) return;
    constexpr int R = kernels::normalize::kRowsPerBlock;
    with_chunk_width<T>(C, {din, dout, out}, [&](auto w) {
        launch(kernels::normalize::l2_normalize_backward_kernel<device_t<T>, decltype(w)::value>,
               dim3(blocks_for(rows, R)), dim3(32, R), 0, device_ptr(din), device_ptr(dout), device_ptr(out), norm,
               rows, C);
    });
}

template void l2_normalize_forward<float>(float*, float*, const float*, std::int64_t, std::int64_t);
template void l2_normalize_forward<bf16>(bf16*, float*, const bf16*, std::int64_t, std::int64_t);
template void l2_normalize_backward<float>(float*, const float*, const float*, const float*, std::int64_t,
                                           std::int64_t);
template void l2_normalize_backward<bf16>(bf16*, const bf16*, const bf16*, const float*, std::int64_t, std::int64_t);

}  // namespace pickscore::cuda
