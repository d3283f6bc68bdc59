// kernels/optim.cuh — AdamW over a flat buffer in one launch (with the bf16 working copy and the
// clipping folded in), the sum of squared gradients as a deterministic two-stage reduction in
// double, and clipping by a norm that stays in device memory. See pickscore/cuda/optim.hpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <pickscore/core/tensor.hpp>
#include <pickscore/cpu/optim.hpp>
#include <pickscore/cuda/optim.hpp>
#include <pickscore/cuda/storage.hpp>

#include "common.cuh"
#include "elementwise.cuh"

namespace pickscore::cuda::kernels {

// The per-step constants, rounded to f32 on the host exactly as the CPU backend rounds them.
struct AdamWScalars {
    float decay, step_size, bc2_sqrt, beta2, one_minus_beta1, one_minus_beta2, eps;
    double max_norm;
};

__device__ __forceinline__ bool is_finite_f32(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }

// One AdamW step over n elements; V elements per access (4: 16 bytes of f32, 8 of bf16).
template <class P, class G, int V>
__global__ void adamw_kernel(P* param, __nv_bfloat16* copy, float* m, float* v, const G* grad, const float* grad_norm,
                             AdamWScalars s, std::int64_t n) {
    // clip_grad_norm's rule, from the stored norm: scale when max_norm / (norm + 1e-6) < 1; skip the
    // update when the norm is not finite. Every thread reads the same value.
    bool update = true, scale = false;
    float coef = 1.0f;
    if (grad_norm != nullptr) {
        const float norm = grad_norm[0];
        if (!is_finite_f32(norm)) {
            update = false;
        } else {
            const double c = s.max_norm / (double(norm) + 1e-6);
            if (c < 1.0) {
                scale = true;
                coef = float(c);
            }
        }
    }
    // The CPU backend's arithmetic (cpu::adamw_update_flat), element by element.
    auto adamw = [&](float& p, float& mm, float& vv, float g) {
        if (scale) g *= coef;
        p *= s.decay;
        mm += s.one_minus_beta1 * (g - mm);
        vv = s.beta2 * vv + s.one_minus_beta2 * g * g;
        const float denom = sqrtf(vv) / s.bc2_sqrt + s.eps;
        p -= s.step_size * mm / denom;
    };
    const std::int64_t nv = n / V;
    PICKSCORE_VEC_LOOP(i, nv) {
        float p[V];
        vec::load<V>(p, param + i * V);
        if (update) {
            float mm[V], vv[V], g[V];
            vec::load<V>(mm, m + i * V);
            vec::load<V>(vv, v + i * V);
            vec::load<V>(g, grad + i * V);
            PICKSCORE_UNROLL
            for (int k = 0; k < V; ++k) adamw(p[k], mm[k], vv[k], g[k]);
            vec::store<V>(param + i * V, p);
            vec::store<V>(m + i * V, mm);
            vec::store<V>(v + i * V, vv);
        }
        if (copy != nullptr) vec::store<V>(copy + i * V, p);
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) {
        const std::int64_t j = nv * V + i;
        float p = to_float(param[j]);
        if (update) {
            float mm = m[j], vv = v[j];
            adamw(p, mm, vv, to_float(grad[j]));
            param[j] = from_float<P>(p);
            m[j] = mm;
            v[j] = vv;
        }
        if (copy != nullptr) copy[j] = from_float<__nv_bfloat16>(p);
    }
}

// A block's sum of s over its 256 threads in double, by warp shuffles and then warp 0 over the 8
// warp sums: a fixed tree. The result is valid in thread 0.
__device__ __forceinline__ double block_sum_256(double s) {
    PICKSCORE_SHARED(double[8], warp_sums);
    const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
    s = vec::warp_sum(s);
    if (lane == 0) warp_sums[warp] = s;
    __syncthreads();
    double t = 0.0;
    if (warp == 0) t = vec::warp_sum(lane < 8 ? warp_sums[lane] : 0.0);
    return t;
}

// partial[blockIdx.x] = Σ g² over the block's grid-stride share, in double. 256 threads.
template <class G, int V>
__global__ void __launch_bounds__(256) sumsq_partial_kernel(double* partial, const G* g, std::int64_t n) {
    double s = 0.0;
    const std::int64_t nv = n / V;
    PICKSCORE_VEC_LOOP(i, nv) {
        float x[V];
        vec::load<V>(x, g + i * V);
        PICKSCORE_UNROLL
        for (int k = 0; k < V; ++k) s += double(x[k]) * double(x[k]);  // exact products
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) {
        const double x = to_float(g[nv * V + i]);
        s += x * x;
    }
    s = block_sum_256(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// acc[0] = (accumulate ? acc[0] : 0) + Σ_b partial[b]; norm[0] = f32(sqrt(acc[0])) unless null.
// One block of 256 threads; thread t sums partials t, t + 256, ... in order.
__global__ void __launch_bounds__(256)
    sumsq_final_kernel(double* acc, float* norm, const double* partial, int blocks, bool accumulate) {
    double s = 0.0;
    for (int b = int(threadIdx.x); b < blocks; b += 256) s += partial[b];
    s = block_sum_256(s);
    if (threadIdx.x == 0) {
        const double total = (accumulate ? acc[0] : 0.0) + s;
        acc[0] = total;
        if (norm != nullptr) norm[0] = float(sqrt(total));
    }
}

// g *= f32(max_norm / (norm[0] + 1e-6)) when that is below 1 and norm[0] is finite.
template <class T, int V>
__global__ void clip_by_norm_kernel(T* g, std::int64_t n, const float* norm, double max_norm) {
    const float nr = norm[0];
    if (!is_finite_f32(nr)) return;
    const double c = max_norm / (double(nr) + 1e-6);
    if (!(c < 1.0)) return;
    const float f = float(c);
    const std::int64_t nv = n / V;
    PICKSCORE_VEC_LOOP(i, nv) {
        float x[V];
        vec::load<V>(x, g + i * V);
        PICKSCORE_UNROLL
        for (int k = 0; k < V; ++k) x[k] *= f;
        vec::store<V>(g + i * V, x);
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) {
        const std::int64_t j = nv * V + i;
        g[j] = from_float<T>(to_float(g[j]) * f);
    }
}

}  // namespace pickscore::cuda::kernels

namespace pickscore::cuda {

namespace detail {
inline bool aligned_to(const void* p, std::size_t bytes) { return reinterpret_cast<std::uintptr_t>(p) % bytes == 0; }
}  // namespace detail

template <class P, class G>
void adamw_update(P* param, bf16* param_bf16, float* m, float* v, const G* grad, const float* grad_norm,
                  double max_norm, std::int64_t n, std::int64_t step, double lr, double beta1, double beta2, double eps,
                  double weight_decay) {
    if (n <= 0) return;
    const auto f = cpu::detail::adamw_factors<float>(step, lr, beta1, beta2, eps, weight_decay);
    const kernels::AdamWScalars s{f.decay,           f.step_size,       f.bc2_sqrt, f.beta2,
                                  f.one_minus_beta1, f.one_minus_beta2, f.eps,      max_norm};
    constexpr int V = 4;
    const bool aligned = detail::aligned_to(param, V * sizeof(P)) && detail::aligned_to(m, 16) &&
                         detail::aligned_to(v, 16) && detail::aligned_to(grad, V * sizeof(G)) &&
                         detail::aligned_to(param_bf16, V * sizeof(bf16));
    using DP = device_t<P>;
    using DG = device_t<G>;
    if (aligned)
        launch(kernels::adamw_kernel<DP, DG, V>, dim3(kernels::vec::grid_for(n / V + 1)), dim3(256), 0,
               device_ptr(param), device_ptr(param_bf16), m, v, device_ptr(grad), grad_norm, s, n);
    else
        launch(kernels::adamw_kernel<DP, DG, 1>, dim3(kernels::vec::grid_for(n)), dim3(256), 0, device_ptr(param),
               device_ptr(param_bf16), m, v, device_ptr(grad), grad_norm, s, n);
}

template <class G>
void grad_sum_of_squares(double* acc, float* norm, const G* g, std::int64_t n, bool accumulate) {
    using DG = device_t<G>;
    constexpr int V = int(16 / sizeof(G));
    const bool aligned = kernels::vec::aligned16(g);
    const std::int64_t units = aligned ? n / V + 1 : n;
    // Two vectors per thread at least, 1024 blocks at most: the grid depends only on n.
    const std::int64_t blocks = n <= 0 ? 0 : std::min<std::int64_t>((units + 511) / 512, 1024);
    Tensor<double, Cuda> partial(Shape{blocks > 0 ? blocks : 1});
    if (blocks > 0) {
        if (aligned)
            launch(kernels::sumsq_partial_kernel<DG, V>, dim3(unsigned(blocks)), dim3(256), 0, partial.data(),
                   device_ptr(g), n);
        else
            launch(kernels::sumsq_partial_kernel<DG, 1>, dim3(unsigned(blocks)), dim3(256), 0, partial.data(),
                   device_ptr(g), n);
    }
    launch(kernels::sumsq_final_kernel, dim3(1), dim3(256), 0, acc, norm, static_cast<const double*>(partial.data()),
           int(blocks), accumulate);
}

template <class T>
void clip_by_norm(T* g, std::int64_t n, const float* norm, double max_norm) {
    if (n <= 0) return;
    using DT = device_t<T>;
    constexpr int V = int(16 / sizeof(T));
    if (kernels::vec::aligned16(g))
        launch(kernels::clip_by_norm_kernel<DT, V>, dim3(kernels::vec::grid_for(n / V + 1)), dim3(256), 0,
               device_ptr(g), n, norm, max_norm);
    else
        launch(kernels::clip_by_norm_kernel<DT, 1>, dim3(kernels::vec::grid_for(n)), dim3(256), 0, device_ptr(g), n,
               norm, max_norm);
}

#define PICKSCORE_ADAMW_INSTANTIATE(P, G)                                                                     \
    template void adamw_update<P, G>(P*, bf16*, float*, float*, const G*, const float*, double, std::int64_t, \
                                     std::int64_t, double, double, double, double, double);
PICKSCORE_ADAMW_INSTANTIATE(float, float)
PICKSCORE_ADAMW_INSTANTIATE(float, bf16)
PICKSCORE_ADAMW_INSTANTIATE(bf16, float)
PICKSCORE_ADAMW_INSTANTIATE(bf16, bf16)
#undef PICKSCORE_ADAMW_INSTANTIATE

template void grad_sum_of_squares<float>(double*, float*, const float*, std::int64_t, bool);
template void grad_sum_of_squares<bf16>(double*, float*, const bf16*, std::int64_t, bool);
template void clip_by_norm<float>(float*, std::int64_t, const float*, double);
template void clip_by_norm<bf16>(bf16*, std::int64_t, const float*, double);

}  // namespace pickscore::cuda
