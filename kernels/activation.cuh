// kernels/activation.cuh — GELU (erf and tanh forms) and quick GELU, forward and backward, element
// by element: the formulas of pickscore/cpu/activation.hpp in f32, in the same order of operations,
// with CUDA's erff/tanhf/expf (a few ulps of f32 on the GPU, exact-rounded in the emulation).
#pragma once

#include <cstdint>
#include <pickscore/cuda/activation.hpp>

#include "common.cuh"
#include "elementwise.cuh"

namespace pickscore::cuda::kernels::act {

using ops::Activation;

inline constexpr float kInvSqrt2 = 0.70710678118654752f;     // 1/√2
inline constexpr float kInvSqrt2Pi = 0.39894228040143268f;   // 1/√(2π)
inline constexpr float kSqrt2OverPi = 0.79788456080286536f;  // √(2/π)
inline constexpr float kTanhCubic = 0.044715f;
inline constexpr float kQuickAlpha = 1.702f;

template <Activation A>
__device__ __forceinline__ float value(float x) {
    if constexpr (A == Activation::gelu_erf) {
        return 0.5f * x * (1.0f + erff(x * kInvSqrt2));
    } else if constexpr (A == Activation::gelu_tanh) {
        const float u = kSqrt2OverPi * (x + kTanhCubic * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    } else {
        return x * (1.0f / (1.0f + expf(-(kQuickAlpha * x))));
    }
}

template <Activation A>
__device__ __forceinline__ float grad(float x) {
    if constexpr (A == Activation::gelu_erf) {  // Φ(x) + x·φ(x)
        const float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
        const float pdf = expf(-0.5f * x * x) * kInvSqrt2Pi;
        return cdf + x * pdf;
    } else if constexpr (A == Activation::gelu_tanh) {  // (1 + t)/2 + x·(1 − t²)/2 · du/dx
        const float u = kSqrt2OverPi * (x + kTanhCubic * x * x * x);
        const float t = tanhf(u);
        const float du = kSqrt2OverPi * (1.0f + 3.0f * kTanhCubic * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    } else {  // σ(αx) + αx·σ(αx)·(1 − σ(αx))
        const float s = 1.0f / (1.0f + expf(-(kQuickAlpha * x)));
        return s + kQuickAlpha * x * s * (1.0f - s);
    }
}

}  // namespace pickscore::cuda::kernels::act

namespace pickscore::cuda::kernels {

// out = f(in)
template <class T, int V, ops::Activation A>
__global__ void activation_forward_kernel(T* out, const T* in, std::int64_t n) {
    const std::int64_t nv = n / V;
    PICKSCORE_VEC_LOOP(i, nv) {
        float x[V];
        vec::load<V>(x, in + i * V);
        PICKSCORE_UNROLL
        for (int k = 0; k < V; ++k) x[k] = act::value<A>(x[k]);
        vec::store<V>(out + i * V, x);
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) {
        const std::int64_t j = nv * V + i;
        out[j] = from_float<T>(act::value<A>(to_float(in[j])));
    }
}

// din = dout · f'(in)
template <class T, int V, ops::Activation A>
__global__ void activation_backward_kernel(T* din, const T* dout, const T* in, std::int64_t n) {
    const std::int64_t nv = n / V;
    PICKSCORE_VEC_LOOP(i, nv) {
        float x[V], g[V];
        vec::load<V>(x, in + i * V);
        vec::load<V>(g, dout + i * V);
        PICKSCORE_UNROLL
        for (int k = 0; k < V; ++k) g[k] *= act::grad<A>(x[k]);
        vec::store<V>(din + i * V, g);
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) {
        const std::int64_t j = nv * V + i;
        din[j] = from_float<T>(to_float(dout[j]) * act::grad<A>(to_float(in[j])));
    }
}

}  // namespace pickscore::cuda::kernels

namespace pickscore::cuda {

namespace detail {

inline void check_activation_value(ops::Activation a, const char* op) {
    require(a == ops::Activation::gelu_erf || a == ops::Activation::gelu_tanh || a == ops::Activation::quick_gelu, op,
            ": unknown Activation value ", int(a));
}

// Runs launcher.template operator()<V, A>() for the runtime activation and the widest vector the
// pointers allow.
template <class T, class Launcher>
void activation_dispatch(ops::Activation a, bool aligned, Launcher&& launcher) {
    constexpr int V = int(16 / sizeof(T));
    auto with_width = [&]<ops::Activation A>() {
        if (aligned)
            launcher.template operator()<V, A>();
        else
            launcher.template operator()<1, A>();
    };
    switch (a) {
        case ops::Activation::gelu_erf:
            with_width.template operator()<ops::Activation::gelu_erf>();
            break;
        case ops::Activation::gelu_tanh:
            with_width.template operator()<ops::Activation::gelu_tanh>();
            break;
        case ops::Activation::quick_gelu:
            with_width.template operator()<ops::Activation::quick_gelu>();
            break;
    }
}

}  // namespace detail

template <class T>
void activation_forward(T* out, const T* in, std::int64_t n, ops::Activation a) {
    detail::check_activation_value(a, "activation_forward");
    if (n <= 0) return;
    using DT = device_t<T>;
    const bool aligned = kernels::vec::aligned16(out) && kernels::vec::aligned16(in);
    detail::activation_dispatch<T>(a, aligned, [&]<int V, ops::Activation A>() {
        launch(kernels::activation_forward_kernel<DT, V, A>, dim3(kernels::vec::grid_for(n / V + 1)), dim3(256), 0,
               device_ptr(out), device_ptr(in), n);
    });
}

template <class T>
void activation_backward(T* din, const T* dout, const T* in, std::int64_t n, ops::Activation a) {
    detail::check_activation_value(a, "activation_backward");
    if (n <= 0) return;
    using DT = device_t<T>;
    const bool aligned = kernels::vec::aligned16(din) && kernels::vec::aligned16(dout) && kernels::vec::aligned16(in);
    detail::activation_dispatch<T>(a, aligned, [&]<int V, ops::Activation A>() {
        launch(kernels::activation_backward_kernel<DT, V, A>, dim3(kernels::vec::grid_for(n / V + 1)), dim3(256), 0,
               device_ptr(din), device_ptr(dout), device_ptr(in), n);
    });
}

template void activation_forward<float>(float*, const float*, std::int64_t, ops::Activation);
template void activation_forward<bf16>(bf16*, const bf16*, std::int64_t, ops::Activation);
template void activation_backward<float>(float*, const float*, const float*, std::int64_t, ops::Activation);
template void activation_backward<bf16>(bf16*, const bf16*, const bf16*, std::int64_t, ops::Activation);

}  // namespace pickscore::cuda
