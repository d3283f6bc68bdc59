// pickscore/cpu/activation.hpp — GELU and its relatives on the CPU, forward and backward.
//
// Each element is computed in acc_t<T> from the formula and rounded to T once. Elements are
// independent, so out may be the same memory as in (and din as dout).
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../ops/common.hpp"
#include "elementwise.hpp"

namespace pickscore::cpu {

using ops::Activation;

namespace detail {

// GELU with the exact normal CDF: x·Φ(x), Φ(x) = (1 + erf(x/√2)) / 2.
template <class A>
A gelu_erf(A x) {
    return A(0.5) * x * (A(1) + std::erf(x * A(std::numbers::sqrt2 / 2)));
}
// d/dx x·Φ(x) = Φ(x) + x·φ(x), φ the standard normal density.
template <class A>
A gelu_erf_grad(A x) {
    const A cdf = A(0.5) * (A(1) + std::erf(x * A(std::numbers::sqrt2 / 2)));
    const A pdf = std::exp(A(-0.5) * x * x) * A(std::numbers::inv_sqrtpi / std::numbers::sqrt2);
    return cdf + x * pdf;
}

// The tanh approximation: x·(1 + tanh(u)) / 2 with u = √(2/π)·(x + 0.044715·x³).
inline constexpr double gelu_tanh_c = 0.044715;
inline constexpr double sqrt_2_over_pi = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;

template <class A>
A gelu_tanh(A x) {
    const A u = A(sqrt_2_over_pi) * (x + A(gelu_tanh_c) * x * x * x);
    return A(0.5) * x * (A(1) + std::tanh(u));
}
// d/dx = (1 + t)/2 + x·(1 − t²)/2 · du/dx, with t = tanh(u), du/dx = √(2/π)·(1 + 3·0.044715·x²).
template <class A>
A gelu_tanh_grad(A x) {
    const A u = A(sqrt_2_over_pi) * (x + A(gelu_tanh_c) * x * x * x);
    const A t = std::tanh(u);
    const A du = A(sqrt_2_over_pi) * (A(1) + A(3 * gelu_tanh_c) * x * x);
    return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du;
}

// OpenAI CLIP's quick GELU: x·σ(1.702·x).
inline constexpr double quick_gelu_alpha = 1.702;

template <class A>
A sigmoid(A z) {
    return A(1) / (A(1) + std::exp(-z));
}
template <class A>
A quick_gelu(A x) {
    return x * sigmoid(A(quick_gelu_alpha) * x);
}
// d/dx = σ(αx) + αx·σ(αx)·(1 − σ(αx)).
template <class A>
A quick_gelu_grad(A x) {
    const A s = sigmoid(A(quick_gelu_alpha) * x);
    return s + A(quick_gelu_alpha) * x * s * (A(1) - s);
}

inline void check_activation(Activation a) {
    require(a == Activation::gelu_erf || a == Activation::gelu_tanh || a == Activation::quick_gelu,
            "activation: unknown Activation value ", int(a));
}

}  // namespace detail

// out[i] = f(in[i])
template <class T>
void activation_forward(T* out, const T* in, std::int64_t n, Activation a) {
    using Acc = acc_t<T>;
    detail::check_activation(a);
    parallel_chunks(n, elementwise_grain, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
            const Acc x = cast<Acc>(in[i]);
            Acc y = 0;
            switch (a) {
                case Activation::gelu_erf:
                    y = detail::gelu_erf(x);
                    break;
                case Activation::gelu_tanh:
                    y = detail::gelu_tanh(x);
                    break;
                case Activation::quick_gelu:
                    y = detail::quick_gelu(x);
                    break;
            }
            out[i] = cast<T>(y);
        }
    });
}

// din[i] = dout[i] · f'(in[i]), in being the saved pre-activation.
template <class T>
void activation_backward(T* din, const T* dout, const T* in, std::int64_t n, Activation a) {
    using Acc = acc_t<T>;
    detail::check_activation(a);
    parallel_chunks(n, elementwise_grain, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
            const Acc x = cast<Acc>(in[i]);
            Acc g = 0;
            switch (a) {
                case Activation::gelu_erf:
                    g = detail::gelu_erf_grad(x);
                    break;
                case Activation::gelu_tanh:
                    g = detail::gelu_tanh_grad(x);
                    break;
                case Activation::quick_gelu:
                    g = detail::quick_gelu_grad(x);
                    break;
            }
            din[i] = cast<T>(cast<Acc>(dout[i]) * g);
        }
    });
}

}  // namespace pickscore::cpu
