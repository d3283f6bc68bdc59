// kernels/softmax.cuh — softmax over the last dimension, forward and backward: one warp per row
// (kernels::vec::kRowWarps rows per block), the row cached in registers where it fits (see
// row_dispatch in elementwise.cuh), max and sums by warp shuffles in f32, expf and an IEEE division
// per element as on the CPU.
#pragma once

#include <cstdint>
#include <pickscore/cuda/softmax.hpp>

#include "common.cuh"
#include "elementwise.cuh"

namespace pickscore::cuda::kernels {

// out[r, :] = softmax(in[r, :]); V elements per access, N vectors per lane cached (0: none).
template <class T, int V, int N>
__global__ void __launch_bounds__(vec::kRowWarps * 32)
    softmax_forward_kernel(T* out, const T* in, std::int64_t R, int C) {
    const int lane = int(threadIdx.x) & 31;
    const std::int64_t row = std::int64_t(blockIdx.x) * vec::kRowWarps + (threadIdx.x >> 5);
    if (row >= R) return;  // the whole warp: row is warp-uniform
    const int nvec = C / V;
    const T* x = in + row * C;
    T* y = out + row * C;
    const float neg_inf = __int_as_float(int(0xff800000u));
    if constexpr (N > 0) {
        float e[N][V];
        float m = neg_inf;
        PICKSCORE_UNROLL
        for (int k = 0; k < N; ++k) {
            const int vi = lane + 32 * k;
            if (vi < nvec) {
                vec::load<V>(e[k], x + vi * V);
                PICKSCORE_UNROLL
                for (int i = 0; i < V; ++i) m = fmaxf(m, e[k][i]);
            }
        }
        m = vec::warp_max(m);
        float sum = 0.0f;
        PICKSCORE_UNROLL
        for (int k = 0; k < N; ++k)
            if (lane + 32 * k < nvec) {
                PICKSCORE_UNROLL
                for (int i = 0; i < V; ++i) {
                    e[k][i] = expf(e[k][i] - m);
                    sum += e[k][i];
                }
            }
        sum = vec::warp_sum(sum);
        PICKSCORE_UNROLL
        for (int k = 0; k < N; ++k) {
            const int vi = lane + 32 * k;
            if (vi < nvec) {
                PICKSCORE_UNROLL
                for (int i = 0; i < V; ++i) e[k][i] = e[k][i] / sum;
                vec::store<V>(y + vi * V, e[k]);
            }
        }
    } else {
        float m = neg_inf;
        for (int vi = lane; vi < nvec; vi += 32) {
            float v[V];
            vec::load<V>(v, x + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) m = fmaxf(m, v[i]);
        }
        m = vec::warp_max(m);
        float sum = 0.0f;
        for (int vi = lane; vi < nvec; vi += 32) {
            float v[V];
            vec::load<V>(v, x + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) sum += expf(v[i] - m);
        }
        sum = vec::warp_sum(sum);
        for (int vi = lane; vi < nvec; vi += 32) {
            float v[V];
            vec::load<V>(v, x + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) v[i] = expf(v[i] - m) / sum;
            vec::store<V>(y + vi * V, v);
        }
    }
}

// din[r, :] = out ∘ (dout − Σ dout ∘ out)
template <class T, int V, int N>
__global__ void __launch_bounds__(vec::kRowWarps * 32)
    softmax_backward_kernel(T* din, const T* dout, const T* out, std::int64_t R, int C) {
    const int lane = int(threadIdx.x) & 31;
    const std::int64_t row = std::int64_t(blockIdx.x) * vec::kRowWarps + (threadIdx.x >> 5);
    if (row >= R) return;
    const int nvec = C / V;
    const std::int64_t base = row * C;
    if constexpr (N > 0) {
        float y[N][V], g[N][V];
        float dot = 0.0f;
        PICKSCORE_UNROLL
        for (int k = 0; k < N; ++k) {
            const int vi = lane + 32 * k;
            if (vi < nvec) {
                vec::load<V>(y[k], out + base + vi * V);
                vec::load<V>(g[k], dout + base + vi * V);
                PICKSCORE_UNROLL
                for (int i = 0; i < V; ++i) dot += g[k][i] * y[k][i];
            }
        }
        dot = vec::warp_sum(dot);
        PICKSCORE_UNROLL
        for (int k = 0; k < N; ++k) {
            const int vi = lane + 32 * k;
            if (vi < nvec) {
                PICKSCORE_UNROLL
                for (int i = 0; i < V; ++i) g[k][i] = y[k][i] * (g[k][i] - dot);
                vec::store<V>(din + base + vi * V, g[k]);
            }
        }
    } else {
        float dot = 0.0f;
        for (int vi = lane; vi < nvec; vi += 32) {
            float y[V], g[V];
            vec::load<V>(y, out + base + vi * V);
            vec::load<V>(g, dout + base + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) dot += g[i] * y[i];
        }
        dot = vec::warp_sum(dot);
        for (int vi = lane; vi < nvec; vi += 32) {
            float y[V], g[V];
            vec::load<V>(y, out + base + vi * V);
            vec::load<V>(g, dout + base + vi * V);
            PICKSCORE_UNROLL
            for (int i = 0; i < V; ++i) g[i] = y[i] * (g[i] - dot);
            vec::store<V>(din + base + vi * V, g);
        }
    }
}

}  // namespace pickscore::cuda::kernels

namespace pickscore::cuda {

template <class T>
void softmax_forward(T* out, const T* in, std::int64_t R, std::int64_t N) {
    if (R <= 0) return;
    const int C = detail::row_length("softmax_forward", N);
    using DT = device_t<T>;
    const bool aligned = kernels::vec::aligned16(out) && kernels::vec::aligned16(in);
    detail::row_dispatch<T>(C, aligned, [&]<int V, int K>() {
        launch(kernels::softmax_forward_kernel<DT, V, K>, dim3(detail::row_blocks(R)),
               dim3(kernels::vec::kRowWarps * 32), 0, device_ptr(out), device_ptr(in), R, C);
    });
}

template <class T>
void softmax_backward(T* din, const T* dout, const T* out, std::int64_t R, std::int64_t N) {
    if (R <= 0) return;
    const int C = detail::row_length("softmax_backward", N);
    using DT = device_t<T>;
    const bool aligned = kernels::vec::aligned16(din) && kernels::vec::aligned16(dout) && kernels::vec::aligned16(out);
    detail::row_dispatch<T>(C, aligned, [&]<int V, int K>() {
        launch(kernels::softmax_backward_kernel<DT, V, K>, dim3(detail::row_blocks(R)),
               dim3(kernels::vec::kRowWarps * 32), 0, device_ptr(din), device_ptr(dout), device_ptr(out), R, C);
    });
}

template void softmax_forward<float>(float*, const float*, std::int64_t, std::int64_t);
template void softmax_forward<bf16>(bf16*, const bf16*, std::int64_t, std::int64_t);
template void softmax_backward<float>(float*, const float*, const float*, std::int64_t, std::int64_t);
template void softmax_backward<bf16>(bf16*, const bf16*, const bf16*, std::int64_t, std::int64_t);

}  // namespace pickscore::cuda
