// kernels/layernorm.cuh — LayerNorm forward (plain, and fused with the residual add), backward with
// the parameter gradients reduced deterministically. See pickscore/cuda/layernorm.hpp.
//
// Forward: one warp per row (vec::kRowWarps rows per block); the lane's share of the row stays in
// registers when it fits (row_dispatch), so the statistics (mean, then the mean squared deviation,
// f32 warp-shuffle sums) and the output need one read of the row.
//
// Backward: a grid of at most kLayerNormGradBlocks blocks (the count depends only on R), each warp
// taking rows blockIdx.x·W + warp, + gridDim.x·W, ... For a row it forms Σ g and Σ g·x̂ (g = dout ∘
// weight) by warp shuffles, writes (or adds) din, and adds dout·x̂ and dout to its own column sums
// in shared memory. Those are laid out transposed, [k·V + i][lane] for element i of the lane's k-th
// vector, so the 32 lanes of a warp touch 32 consecutive floats: no bank conflicts, and each slot
// has one owner, so no barrier is needed until the end. Then the block adds its warps' sums (in
// warp order) and writes them to scratch[block][2][C], and layernorm_param_grad_kernel adds the
// blocks' sums in block order to dweight and dbias.
#pragma once

#include <algorithm>
#include <cstdint>
#include <pickscore/core/tensor.hpp>
#include <pickscore/cuda/layernorm.hpp>
#include <pickscore/cuda/storage.hpp>

#include "common.cuh"
#include "elementwise.cuh"

namespace pickscore::cuda::kernels {

// Blocks of the backward kernel at most: 4 per SM of an H100 (132 SMs), a single wave.
inline constexpr int kLayerNormGradBlocks = 528;

// out = (x − μ)·rstd·weight + bias with x = a, or (kResidual) x = T(a + b), also stored to resid_out.
template <class T, int V, int N, bool kResidual>
__global__ void __launch_bounds__(vec::kRowWarps * 32)
    layernorm_forward_kernel(T* resid_out, T* out, float* mean, float* rstd, const T* a, const T* b, const T* weight,
                             const T* bias, std::int64_t R, int C, float eps) {
    const int lane = int(threadIdx.x) & 31;
    const std::int64_t row = std::int64_t(blockIdx.x) * vec::kRowWarps + (threadIdx.x >> 5);
    if (row >= R) return;  // the whole warp: row is warp-uniform
    const int nvec = C / V;
    const std::int64_t base = row * C;
    // x of vector vi, the first time it is read (forming and storing the residual sum).
    auto first_read = [&](float(&x)[V], int vi) {
        vec::load<V>(x, a + base + vi * V);
        if constexpr (kResidual) {
            float y[V];
            vec::load<V>(y, b + base + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) x[i] = vec::round_to<T>(x[i] + y[i]);
            vec::store<V>(resid_out + base + vi * V, x);
        }
    };
    // out for vector vi from its x.
    auto write_out = [&](float(&x)[V], int vi, float mu, float rs) {
        float w[V], bb[V];
        vec::load<V>(w, weight + vi * V);
        vec::load<V>(bb, bias + vi * V);
        PICKSCORE_UNROLL
        for (int i = 0; i < V; ++i) x[i] = (x[i] - mu) * rs * w[i] + bb[i];
        vec::store<V>(out + base + vi * V, x);
    };

    float mu, rs;
    if constexpr (N > 0) {
        float x[N][V];
        float sum = 0.0f;
        PICKSCORE_UNROLL
        for (int k = 0; k < N; ++k) {
            const int vi = lane + 32 * k;
            if (vi < nvec) {
                first_read(x[k], vi);
                PICKSCORE_UNROLL
                for (int i = 0; i < V; ++i) sum += x[k][i];
            }
        }
        mu = vec::warp_sum(sum) / float(C);
        float sq = 0.0f;
        PICKSCORE_UNROLL
        for (int k = 0; k < N; ++k)
            if (lane + 32 * k < nvec) {
                PICKSCORE_UNROLL
                for (int i = 0; i < V; ++i) {
                    const float d = x[k][i] - mu;
                    sq += d * d;
                }
            }
        rs = 1.0f / sqrtf(vec::warp_sum(sq) / float(C) + eps);
        PICKSCORE_UNROLL
        for (int k = 0; k < N; ++k) {
            const int vi = lane + 32 * k;
            if (vi < nvec) write_out(x[k], vi, mu, rs);
        }
    } else {
        const T* x_again = kResidual ? resid_out : a;  // where x is read again: the stored sum, or in
        float sum = 0.0f;
        for (int vi = lane; vi < nvec; vi += 32) {
            float x[V];
            first_read(x, vi);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) sum += x[i];
        }
        mu = vec::warp_sum(sum) / float(C);
        float sq = 0.0f;
        for (int vi = lane; vi < nvec; vi += 32) {
            float x[V];
            vec::load<V>(x, x_again + base + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) {
                const float d = x[i] - mu;
                sq += d * d;
            }
        }
        rs = 1.0f / sqrtf(vec::warp_sum(sq) / float(C) + eps);
        for (int vi = lane; vi < nvec; vi += 32) {
            float x[V];
            vec::load<V>(x, x_again + base + vi * V);
            write_out(x, vi, mu, rs);
        }
    }
    if (lane == 0 && mean != nullptr) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// din (written, or added when `accumulate`) for every row; the block's column sums of dout·x̂ and
// dout go to partial[blockIdx.x][0][:] and partial[blockIdx.x][1][:]. Dynamic shared memory:
// warps · 2 · Cp floats, Cp = ceil(C / V / 32) · 32 · V.
template <class T, int V, int N>
__global__ void __launch_bounds__(vec::kRowWarps * 32)
    layernorm_backward_kernel(T* din, float* partial, const T* dout, const T* in, const T* weight, const float* mean,
                              const float* rstd, std::int64_t R, int C, bool accumulate) {
    PICKSCORE_DYNAMIC_SHARED(float, sums);
    const int warps = int(blockDim.x) >> 5, warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
    const int nvec = C / V;
    const int per_lane = (nvec + 31) / 32;
    const int Cp = per_lane * 32 * V;
    float* sum_wx = sums + std::int64_t(warp) * 2 * Cp;  // Σ dout·x̂, this warp's rows
    float* sum_w = sum_wx + Cp;                          // Σ dout
    // Slot of element i of the lane's k-th vector.
    auto slot = [&](int k, int i) { return (k * V + i) * 32 + lane; };
    for (int k = 0; k < per_lane; ++k)
        if (lane + 32 * k < nvec)
            for (int i = 0; i < V; ++i) sum_wx[slot(k, i)] = sum_w[slot(k, i)] = 0.0f;

    // din for vector vi (k-th of the lane) from x̂ and dout; adds to the column sums.
    auto finish = [&](const float(&xh)[V], const float(&dy)[V], int k, std::int64_t base, float rs, float mean_g,
                      float mean_gx) {
        const int vi = lane + 32 * k;
        float w[V], d[V];
        vec::load<V>(w, weight + vi * V);
        PICKSCORE_UNROLL
        for (int i = 0; i < V; ++i) d[i] = rs * (dy[i] * w[i] - mean_g - xh[i] * mean_gx);
        if (accumulate) {
            float old[V];
            vec::load<V>(old, din + base + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) d[i] = old[i] + d[i];
        }
        vec::store<V>(din + base + vi * V, d);
        PICKSCORE_UNROLL
        for (int i = 0; i < V; ++i) {
            sum_wx[slot(k, i)] += dy[i] * xh[i];
            sum_w[slot(k, i)] += dy[i];
        }
    };

    const std::int64_t stride = std::int64_t(gridDim.x) * warps;
    for (std::int64_t row = std::int64_t(blockIdx.x) * warps + warp; row < R; row += stride) {
        const std::int64_t base = row * C;
        const float mu = mean[row], rs = rstd[row];
        // x̂ of vector vi and dout, with the lane's contributions to Σ g and Σ g·x̂.
        auto read = [&](float(&xh)[V], float(&dy)[V], int vi, float& sg, float& sgx) {
            float w[V];
            vec::load<V>(xh, in + base + vi * V);
            vec::load<V>(dy, dout + base + vi * V);
            vec::load<V>(w, weight + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) {
                xh[i] = (xh[i] - mu) * rs;
                const float g = dy[i] * w[i];
                sg += g;
                sgx += g * xh[i];
            }
        };
        float sg = 0.0f, sgx = 0.0f;
        if constexpr (N > 0) {
            float xh[N][V], dy[N][V];
            PICKSCORE_UNROLL
            for (int k = 0; k < N; ++k)
                if (lane + 32 * k < nvec) read(xh[k], dy[k], lane + 32 * k, sg, sgx);
            const float mean_g = vec::warp_sum(sg) / float(C), mean_gx = vec::warp_sum(sgx) / float(C);
            PICKSCORE_UNROLL
            for (int k = 0; k < N; ++k)
                if (lane + 32 * k < nvec) finish(xh[k], dy[k], k, base, rs, mean_g, mean_gx);
        } else {
            for (int vi = lane; vi < nvec; vi += 32) {
                float xh[V], dy[V];
                read(xh, dy, vi, sg, sgx);
            }
            const float mean_g = vec::warp_sum(sg) / float(C), mean_gx = vec::warp_sum(sgx) / float(C);
            for (int k = 0; lane + 32 * k < nvec; ++k) {
                float xh[V], dy[V], unused_g = 0.0f, unused_gx = 0.0f;
                read(xh, dy, lane + 32 * k, unused_g, unused_gx);
                finish(xh, dy, k, base, rs, mean_g, mean_gx);
            }
        }
    }
    __syncthreads();  // every warp's column sums are complete
    for (int c = int(threadIdx.x); c < C; c += int(blockDim.x)) {
        const int vi = c / V, i = c % V;
        const int s = ((vi / 32) * V + i) * 32 + vi % 32;
        float wx = 0.0f, w = 0.0f;
        for (int q = 0; q < warps; ++q) {
            wx += sums[std::int64_t(q) * 2 * Cp + s];
            w += sums[std::int64_t(q) * 2 * Cp + Cp + s];
        }
        partial[std::int64_t(blockIdx.x) * 2 * C + c] = wx;
        partial[std::int64_t(blockIdx.x) * 2 * C + C + c] = w;
    }
}

// dweight[c] += Σ_blocks partial[block][0][c], dbias[c] += Σ_blocks partial[block][1][c], in block
// order within each of 8 strands (threadIdx.y) and then strand order: fixed, so deterministic.
// Block (32, 8); blockIdx.x covers columns 32·blockIdx.x ...
template <class T>
__global__ void layernorm_param_grad_kernel(T* dweight, T* dbias, const float* partial, int blocks, int C) {
    PICKSCORE_SHARED(float[2][8][33], strand);
    const int tx = int(threadIdx.x), ty = int(threadIdx.y);
    const int c = int(blockIdx.x) * 32 + tx;
    float wx = 0.0f, w = 0.0f;
    if (c < C)
        for (int blk = ty; blk < blocks; blk += 8) {
            wx += partial[std::int64_t(blk) * 2 * C + c];
            w += partial[std::int64_t(blk) * 2 * C + C + c];
        }
    strand[0][ty][tx] = wx;
    strand[1][ty][tx] = w;
    __syncthreads();
    if (ty == 0 && c < C) {
        float swx = 0.0f, sw = 0.0f;
        for (int y = 0; y < 8; ++y) {
            swx += strand[0][y][tx];
            sw += strand[1][y][tx];
        }
        dweight[c] = from_float<T>(to_float(dweight[c]) + swx);
        dbias[c] = from_float<T>(to_float(dbias[c]) + sw);
    }
}

}  // namespace pickscore::cuda::kernels

namespace pickscore::cuda {

namespace detail {

template <class T>
void layernorm_forward_any(T* resid_out, T* out, float* mean, float* rstd, const T* a, const T* b, const T* weight,
                           const T* bias, std::int64_t R, std::int64_t C, double eps, const char* op) {
    if (R <= 0) return;
    const int c = row_length(op, C);
    using DT = device_t<T>;
    const bool residual = b != nullptr;
    const bool aligned = kernels::vec::aligned16(out) && kernels::vec::aligned16(a) &&
                         kernels::vec::aligned16(weight) && kernels::vec::aligned16(bias) &&
                         (!residual || (kernels::vec::aligned16(b) && kernels::vec::aligned16(resid_out)));
    row_dispatch<T>(c, aligned, [&]<int V, int N>() {
        const dim3 grid(row_blocks(R)), block(kernels::vec::kRowWarps * 32);
        if (residual)
            launch(kernels::layernorm_forward_kernel<DT, V, N, true>, grid, block, 0, device_ptr(resid_out),
                   device_ptr(out), mean, rstd, device_ptr(a), device_ptr(b), device_ptr(weight), device_ptr(bias), R,
                   c, float(eps));
        else
            launch(kernels::layernorm_forward_kernel<DT, V, N, false>, grid, block, 0, static_cast<DT*>(nullptr),
                   device_ptr(out), mean, rstd, device_ptr(a), static_cast<const DT*>(nullptr), device_ptr(weight),
                   device_ptr(bias), R, c, float(eps));
    });
}

}  // namespace detail

template <class T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* in, const T* weight, const T* bias, std::int64_t R,
                       std::int64_t C, double eps) {
    detail::layernorm_forward_any<T>(nullptr, out, mean, rstd, in, nullptr, weight, bias, R, C, eps,
                                     "layernorm_forward");
}

template <class T>
void add_layernorm_forward(T* resid_out, T* ln_out, float* mean, float* rstd, const T* a, const T* b, const T* weight,
                           const T* bias, std::int64_t R, std::int64_t C, double eps) {
    detail::layernorm_forward_any<T>(resid_out, ln_out, mean, rstd, a, b, weight, bias, R, C, eps,
                                     "add_layernorm_forward");
}

template <class T>
void layernorm_backward(T* din, T* dweight, T* dbias, const T* dout, const T* in, const T* weight, const float* mean,
                        const float* rstd, std::int64_t R, std::int64_t C, ops::Accumulate din_mode) {
    if (R <= 0) return;  // no rows: the parameter gradients gain nothing
    const int c = detail::row_length("layernorm_backward", C);
    using DT = device_t<T>;
    const bool aligned = kernels::vec::aligned16(din) && kernels::vec::aligned16(dout) && kernels::vec::aligned16(in) &&
                         kernels::vec::aligned16(weight);
    detail::row_dispatch<T>(c, aligned, [&]<int V, int N>() {
        // Shared memory: per warp, two column-sum arrays of Cp floats; fewer warps for wide rows.
        const std::int64_t cp = (std::int64_t(c / V) + 31) / 32 * 32 * V;
        constexpr std::int64_t kDefault = 48 * 1024, kMax = 227 * 1024;
        int warps = kernels::vec::kRowWarps;
        while (warps > 1 && warps * 2 * cp * 4 > kDefault) warps /= 2;
        const std::int64_t bytes = warps * 2 * cp * 4;
        require(bytes <= kMax, "layernorm_backward: rows of ", C,
                " elements need more shared memory than the CUDA kernel can have (at most about 29,000)");
        auto kernel = kernels::layernorm_backward_kernel<DT, V, N>;
        if (bytes > kDefault) set_max_dynamic_shared(kernel, std::size_t(bytes));
        const std::int64_t blocks = std::min<std::int64_t>((R + warps - 1) / warps, kernels::kLayerNormGradBlocks);
        Tensor<float, Cuda> partial(Shape{blocks * 2 * c});  // freed stream-ordered after the kernels
        launch(kernel, dim3(unsigned(blocks)), dim3(unsigned(warps * 32)), std::size_t(bytes), device_ptr(din),
               partial.data(), device_ptr(dout), device_ptr(in), device_ptr(weight), mean, rstd, R, c,
               din_mode == ops::Accumulate::yes);
        launch(kernels::layernorm_param_grad_kernel<DT>, dim3(unsigned((c + 31) / 32)), dim3(32, 8), 0,
               device_ptr(dweight), device_ptr(dbias), static_cast<const float*>(partial.data()), int(blocks), c);
    });
}

#define PICKSCORE_LAYERNORM_INSTANTIATE(T)                                                                           \
    template void layernorm_forward<T>(T*, float*, float*, const T*, const T*, const T*, std::int64_t, std::int64_t, \
                                       double);                                                                      \
    template void add_layernorm_forward<T>(T*, T*, float*, float*, const T*, const T*, const T*, const T*,           \
                                           std::int64_t, std::int64_t, double);                                      \
    template void layernorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const float*, const float*,        \
                                        std::int64_t, std::int64_t, ops::Accumulate);
PICKSCORE_LAYERNORM_INSTANTIATE(float)
PICKSCORE_LAYERNORM_INSTANTIATE(bf16)
#undef PICKSCORE_LAYERNORM_INSTANTIATE

}  // namespace pickscore::cuda
