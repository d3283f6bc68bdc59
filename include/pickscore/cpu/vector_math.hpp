// pickscore/cpu/vector_math.hpp — exp and the GELU family over arrays of f32, eight lanes at a time
// with AVX2 + FMA: the element-wise fast paths of the CPU backend.
//
// The readable references (cpu/activation.hpp, cpu/attention.hpp) call std::exp / std::erf one
// element at a time, which the compiler cannot vectorise. Here the same functions are computed
// from polynomials in AVX2 registers. Like sgemm.hpp, the AVX2 code is compiled with
// __attribute__((target("avx2,fma"))) (no -m flags) and chosen at run time; on CPUs without AVX2,
// and on other architectures, a portable path runs instead: std::exp in f32, and the activations
// in double from the same cancellation-free forms, rounded once (as accurate, not faster).
//
// The approximations (coefficients fitted here with mpmath.chebyfit, Chebyshev interpolation in
// high precision, then rounded to f32):
//   exp(x):  x = n·ln2 + r, |r| ≤ ln2/2 (Cody–Waite: ln2 split in two parts), e^r ≈ 1 + r + r²·P5(r)
//            (truncation error 2.2e-10 relative), times 2^n built in the exponent bits. Results
//            below FLT_MIN are flushed to 0, x > 88.72 gives inf, NaN stays NaN.
//   Φ(x) = (1 + erf(x/√2)) / 2, with z = x/√2, a = |z|:
//            a < 0.75:  erf(z) = z·P5(z²)                        (truncation 1.5e-9 relative)
//            a ≥ 0.75:  erfc(a) = t·exp(−a² + P9(t)), t = 1/(1 + a/2)  (2.5e-8 relative), and
//                       Φ = erfc(a)/2 for x < 0, 1 − erfc(a)/2 for x > 0. Computing the lower
//                       tail from erfc keeps its relative accuracy (the reference's 1 + erf(z)
//                       cancels there); a² and −a² + P9 are carried with their rounding errors.
//   GELU (erf):  x·Φ(x);  d/dx = Φ(x) + x·exp(−x²/2)/√(2π)
//   quick GELU:  x·σ(1.702x), σ(y) = 1/(1 + e^−y);  d/dx = σ + 1.702x·σ(1 − σ), with σ(1 − σ)
//                formed as e^−y·σ² (1 − σ cancels for large y)
//   GELU (tanh): x·(1 + tanh u)/2 = x·σ(2u), u = √(2/π)(x + 0.044715x³) (no cancellation at u ≈ 0);
//                d/dx = σ + 2x·σ(1 − σ)·du/dx
// Measured against double precision (tests/test_cpu_fastpaths.cpp): exp within 1 ulp, the
// activations and their derivatives within 5 units of 2^-24 (relative, after allowing for the
// input's own rounding), where the f32 reference is off by up to 5e5 in the tails.
// Every element goes through the same eight-lane code (the tail of an array is padded), so a
// value does not depend on where it sits in the array.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numbers>

#include "../core/threads.hpp"
#include "../ops/common.hpp"
#include "activation.hpp"
#include "elementwise.hpp"
#include "sgemm.hpp"  // simd_supported, PICKSCORE_SGEMM_X86 and <immintrin.h>

namespace pickscore::cpu {

// Whether the eight-lane code runs on this CPU (AVX2 + FMA); otherwise the portable path does.
inline bool vector_math_available() { return simd_supported(SimdLevel::avx2); }

namespace vector_math_detail {

using i64 = std::int64_t;

#ifdef PICKSCORE_SGEMM_X86

#define PICKSCORE_AVX2 __attribute__((target("avx2,fma")))

PICKSCORE_AVX2 inline __m256 splat(float v) { return _mm256_set1_ps(v); }

// Horner's rule, highest coefficient first.
template <std::size_t N>
PICKSCORE_AVX2 inline __m256 horner(__m256 x, const float (&c)[N]) {
    __m256 y = splat(c[0]);
    for (std::size_t i = 1; i < N; ++i) y = _mm256_fmadd_ps(y, x, splat(c[i]));
    return y;
}

// e^r ≈ 1 + r + r²·P(r) on |r| ≤ ln2/2.
inline constexpr float exp_poly[] = {1.989098087e-4f, 1.393364103e-3f, 8.333310934e-3f,
                                     4.166646501e-2f, 1.666666668e-1f, 5.000000013e-1f};
// erf(z)/z as a polynomial in z² on z² ≤ 0.75².
inline constexpr float erf_poly[] = {-6.756479569e-4f, 5.115332113e-3f,  -2.683511457e-2f,
                                     1.128338654e-1f,  -3.761261947e-1f, 1.128379166f};
// log(erfc(a)) + a² − log(t) as a polynomial in t = 1/(1 + a/2) on a ≥ 0.75.
inline constexpr float erfc_poly[] = {2.605584668e-2f, -3.312518457e-1f, 7.954073023e-1f, -6.079587209e-1f,
                                      4.549144522e-2f, -1.257571438e-1f, 8.799623747e-2f, 3.74727949e-1f,
                                      1.000006076f,    -1.265512146f};
inline constexpr float erf_split = 0.75f;

// exp of eight floats (see the top of the file).
PICKSCORE_AVX2 inline __m256 exp8(__m256 x) {
    const __m256 max_x = splat(88.72283f), min_x = splat(-87.33654f);  // ln(FLT_MAX), ln(FLT_MIN)
    const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, min_x), max_x);
    const __m256 n =
        _mm256_round_ps(_mm256_mul_ps(xc, splat(1.44269504088896f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // r = x − n·ln2, ln2 = 0.693359375 − 2.12194440e-4: n·0.693359375 is exact for |n| ≤ 128.
    __m256 r = _mm256_fnmadd_ps(n, splat(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, splat(-2.12194440e-4f), r);
    const __m256 p = horner(r, exp_poly);
    const __m256 er = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), splat(1.0f));
    // 2^n for n in [−126, 128] as two normal factors 2^(n/2)·2^(n − n/2).
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(er, s1), s2);
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, min_x, _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, splat(std::numeric_limits<float>::infinity()), _mm256_cmp_ps(x, max_x, _CMP_GT_OQ));
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));  // NaN in, NaN out
}

// Φ(x), the standard normal CDF (see the top of the file).
PICKSCORE_AVX2 inline __m256 normal_cdf8(__m256 x) {
    const __m256 sign = splat(-0.0f), one = splat(1.0f), half = splat(0.5f);
    const __m256 z = _mm256_mul_ps(x, splat(0.70710678118654752f));
    const __m256 a = _mm256_andnot_ps(sign, z);
    // |z| < 0.75: Φ = 1/2 + z·P(z²)/2.
    const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(z, horner(_mm256_mul_ps(z, z), erf_poly)), half, half);
    // |z| ≥ 0.75: erfc(a) = t·exp(−a² + Q(t)). Beyond a = 10 erfc(a) is far below FLT_MIN, so a is
    // clamped there (also keeping a² finite for huge or infinite x).
    const __m256 ac = _mm256_min_ps(a, splat(10.0f));
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(ac, half, one));
    const __m256 q = horner(t, erfc_poly);
    const __m256 a2 = _mm256_mul_ps(ac, ac);
    const __m256 a2_err = _mm256_fmsub_ps(ac, ac, a2);  // a² = a2 + a2_err exactly
    // u = q − a2 with its rounding error (Knuth's two-sum), so that exp(−a² + q) keeps its relative
    // accuracy when a² is large.
    const __m256 u = _mm256_sub_ps(q, a2);
    const __m256 bv = _mm256_sub_ps(u, q);
    const __m256 u_err = _mm256_add_ps(_mm256_sub_ps(q, _mm256_sub_ps(u, bv)),
                                       _mm256_sub_ps(_mm256_sub_ps(_mm256_setzero_ps(), a2), bv));
    const __m256 correction = _mm256_add_ps(one, _mm256_sub_ps(u_err, a2_err));  // e^ε ≈ 1 + ε
    const __m256 half_erfc = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(half, t), exp8(u)), correction);
    const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 large = _mm256_blendv_ps(_mm256_sub_ps(one, half_erfc), half_erfc, negative);
    return _mm256_blendv_ps(large, small, _mm256_cmp_ps(a, splat(erf_split), _CMP_LT_OQ));
}

// σ(y) = 1 / (1 + e^−y)
PICKSCORE_AVX2 inline __m256 sigmoid8(__m256 y) {
    const __m256 one = splat(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), y))));
}
// σ(y) and σ(y)(1 − σ(y)), the latter as e^−y·σ(y)² (1 − σ would cancel for large y).
struct Sigmoid8 {
    __m256 s, ds;
};
PICKSCORE_AVX2 inline Sigmoid8 sigmoid_and_slope8(__m256 y) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), y));
    const __m256 s = _mm256_div_ps(splat(1.0f), _mm256_add_ps(splat(1.0f), e));
    // e·s² is NaN when e = inf (s = 0): the slope there is 0.
    const __m256 ds = _mm256_mul_ps(_mm256_mul_ps(e, s), s);
    return {s, _mm256_blendv_ps(ds, _mm256_setzero_ps(), _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_EQ_OQ))};
}

// f(x) and f'(x) of each activation.
template <ops::Activation A>
PICKSCORE_AVX2 inline __m256 activation8(__m256 x) {
    if constexpr (A == ops::Activation::gelu_erf) {
        return _mm256_mul_ps(x, normal_cdf8(x));
    } else if constexpr (A == ops::Activation::quick_gelu) {
        return _mm256_mul_ps(x, sigmoid8(_mm256_mul_ps(splat(float(detail::quick_gelu_alpha)), x)));
    } else {
        const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
        const __m256 u = _mm256_mul_ps(splat(float(detail::sqrt_2_over_pi)),
                                       _mm256_fmadd_ps(splat(float(detail::gelu_tanh_c)), x3, x));
        return _mm256_mul_ps(x, sigmoid8(_mm256_add_ps(u, u)));
    }
}

template <ops::Activation A>
PICKSCORE_AVX2 inline __m256 activation_grad8(__m256 x) {
    const __m256 one = splat(1.0f);
    if constexpr (A == ops::Activation::gelu_erf) {
        const __m256 pdf = _mm256_mul_ps(splat(0.398942280401432678f),  // 1/√(2π)
                                         exp8(_mm256_mul_ps(splat(-0.5f), _mm256_mul_ps(x, x))));
        return _mm256_fmadd_ps(x, pdf, normal_cdf8(x));
    } else if constexpr (A == ops::Activation::quick_gelu) {
        const __m256 ax = _mm256_mul_ps(splat(float(detail::quick_gelu_alpha)), x);
        const Sigmoid8 sg = sigmoid_and_slope8(ax);
        return _mm256_fmadd_ps(ax, sg.ds, sg.s);
    } else {
        const __m256 c = splat(float(detail::sqrt_2_over_pi)), x2 = _mm256_mul_ps(x, x);
        const __m256 u = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(splat(float(detail::gelu_tanh_c)), x2), x, x));
        const Sigmoid8 sg = sigmoid_and_slope8(_mm256_add_ps(u, u));
        const __m256 du = _mm256_mul_ps(c, _mm256_fmadd_ps(splat(float(3 * detail::gelu_tanh_c)), x2, one));
        return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_add_ps(x, x), sg.ds), du, sg.s);  // σ + 2x·σ(1 − σ)·du
    }
}

// The first n (< 8) floats of p in a register, the other lanes 0.
PICKSCORE_AVX2 inline __m256 load_partial(const float* p, i64 n) {
    alignas(32) float buf[8] = {};
    std::copy(p, p + n, buf);
    return _mm256_load_ps(buf);
}
PICKSCORE_AVX2 inline void store_partial(float* p, __m256 v, i64 n) {
    alignas(32) float buf[8];
    _mm256_store_ps(buf, v);
    std::copy(buf, buf + n, p);
}

// out = f(in) over n floats; the last n % 8 go through a zero-padded register.
template <ops::Activation A>
PICKSCORE_AVX2 inline void activation_forward_avx2(float* out, const float* in, i64 n) {
    i64 i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, activation8<A>(_mm256_loadu_ps(in + i)));
    if (i < n) store_partial(out + i, activation8<A>(load_partial(in + i, n - i)), n - i);
}

// din = dout · f'(in); dout is read before din is written at every index, so din may be dout.
template <ops::Activation A>
PICKSCORE_AVX2 inline void activation_backward_avx2(float* din, const float* dout, const float* in, i64 n) {
    i64 i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(din + i,
                         _mm256_mul_ps(_mm256_loadu_ps(dout + i), activation_grad8<A>(_mm256_loadu_ps(in + i))));
    if (i < n)
        store_partial(din + i,
                      _mm256_mul_ps(load_partial(dout + i, n - i), activation_grad8<A>(load_partial(in + i, n - i))),
                      n - i);
}

// The loops above for the activation chosen at run time.
PICKSCORE_AVX2 inline void activation_forward_avx2(float* out, const float* in, i64 n, ops::Activation a) {
    switch (a) {
        case ops::Activation::gelu_erf:
            activation_forward_avx2<ops::Activation::gelu_erf>(out, in, n);
            return;
        case ops::Activation::gelu_tanh:
            activation_forward_avx2<ops::Activation::gelu_tanh>(out, in, n);
            return;
        case ops::Activation::quick_gelu:
            activation_forward_avx2<ops::Activation::quick_gelu>(out, in, n);
            return;
    }
}
PICKSCORE_AVX2 inline void activation_backward_avx2(float* din, const float* dout, const float* in, i64 n,
                                                    ops::Activation a) {
    switch (a) {
        case ops::Activation::gelu_erf:
            activation_backward_avx2<ops::Activation::gelu_erf>(din, dout, in, n);
            return;
        case ops::Activation::gelu_tanh:
            activation_backward_avx2<ops::Activation::gelu_tanh>(din, dout, in, n);
            return;
        case ops::Activation::quick_gelu:
            activation_backward_avx2<ops::Activation::quick_gelu>(din, dout, in, n);
            return;
    }
}

// x[j] = exp(x[j] − shift) for j < n; returns Σ_j x[j] (summed in eight lanes, then across them).
PICKSCORE_AVX2 inline float exp_shifted_sum_avx2(float* x, i64 n, float shift) {
    const __m256 s = splat(shift);
    __m256 acc = _mm256_setzero_ps();
    i64 j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), s));
        _mm256_storeu_ps(x + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    float sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    if (j < n) {
        alignas(32) float buf[8];
        _mm256_store_ps(buf, exp8(_mm256_sub_ps(load_partial(x + j, n - j), s)));
        for (i64 t = 0; t < n - j; ++t) {
            x[j + t] = buf[t];
            sum += buf[t];
        }
    }
    return sum;
}

// max_j x[j] over n ≥ 1 floats.
PICKSCORE_AVX2 inline float max_avx2(const float* x, i64 n) {
    __m256 m = splat(-std::numeric_limits<float>::infinity());
    i64 j = 0;
    for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    float r = lanes[0];
    for (int t = 1; t < 8; ++t) r = std::max(r, lanes[t]);
    for (; j < n; ++j) r = std::max(r, x[j]);
    return r;
}

#undef PICKSCORE_AVX2

#endif  // PICKSCORE_SGEMM_X86

}  // namespace vector_math_detail

namespace vector_math_detail {

// ---- the portable path (CPUs without AVX2, other architectures) ------------------------------
// One element at a time: exp in f32 (std::exp, within an ulp), the activations in double from the
// same cancellation-free forms as above (erfc for the lower tail, x·σ, σ(1 − σ) = e^−y·σ²) and
// rounded to f32 once, so these are as accurate as the AVX2 code, at the reference's speed.

inline double activation_f64(double x, ops::Activation a) {
    switch (a) {
        case ops::Activation::gelu_erf:
            return 0.5 * x * std::erfc(-x * (std::numbers::sqrt2 / 2));
        case ops::Activation::quick_gelu:
            return x / (1.0 + std::exp(-detail::quick_gelu_alpha * x));
        case ops::Activation::gelu_tanh: {
            const double u = detail::sqrt_2_over_pi * (x + detail::gelu_tanh_c * x * x * x);
            return x / (1.0 + std::exp(-2.0 * u));
        }
    }
    return x;
}

// σ(y) and σ(y)(1 − σ(y)) = e^−y·σ² (0 where e^−y overflows).
inline void sigmoid_and_slope_f64(double y, double& s, double& ds) {
    const double e = std::exp(-y);
    s = 1.0 / (1.0 + e);
    ds = s == 0.0 ? 0.0 : e * s * s;
}

inline double activation_grad_f64(double x, ops::Activation a) {
    switch (a) {
        case ops::Activation::gelu_erf:
            return 0.5 * std::erfc(-x * (std::numbers::sqrt2 / 2)) +
                   x * std::exp(-0.5 * x * x) * (std::numbers::inv_sqrtpi / std::numbers::sqrt2);
        case ops::Activation::quick_gelu: {
            double s, ds;
            sigmoid_and_slope_f64(detail::quick_gelu_alpha * x, s, ds);
            return s + detail::quick_gelu_alpha * x * ds;
        }
        case ops::Activation::gelu_tanh: {
            const double u = detail::sqrt_2_over_pi * (x + detail::gelu_tanh_c * x * x * x);
            const double du = detail::sqrt_2_over_pi * (1.0 + 3 * detail::gelu_tanh_c * x * x);
            double s, ds;
            sigmoid_and_slope_f64(2.0 * u, s, ds);
            return s + 2.0 * x * ds * du;
        }
    }
    return 1.0;
}

inline void activation_forward_portable(float* out, const float* in, i64 n, ops::Activation a) {
    for (i64 i = 0; i < n; ++i) out[i] = float(activation_f64(double(in[i]), a));
}
inline void activation_backward_portable(float* din, const float* dout, const float* in, i64 n, ops::Activation a) {
    for (i64 i = 0; i < n; ++i) din[i] = float(double(dout[i]) * activation_grad_f64(double(in[i]), a));
}
inline float exp_shifted_sum_portable(float* x, i64 n, float shift) {
    float sum = 0;
    for (i64 j = 0; j < n; ++j) {
        x[j] = std::exp(x[j] - shift);
        sum += x[j];
    }
    return sum;
}
inline float max_portable(const float* x, i64 n) {
    float m = x[0];
    for (i64 j = 1; j < n; ++j) m = std::max(m, x[j]);
    return m;
}

}  // namespace vector_math_detail

// x[j] = exp(x[j] − shift) for j < n, returning their sum (f32): softmax's inner loop.
inline float exp_shifted_sum(float* x, std::int64_t n, float shift) {
#ifdef PICKSCORE_SGEMM_X86
    if (vector_math_available()) return vector_math_detail::exp_shifted_sum_avx2(x, n, shift);
#endif
    return vector_math_detail::exp_shifted_sum_portable(x, n, shift);
}

// The largest of x[0..n), n ≥ 1.
inline float max_of(const float* x, std::int64_t n) {
#ifdef PICKSCORE_SGEMM_X86
    if (vector_math_available()) return vector_math_detail::max_avx2(x, n);
#endif
    return vector_math_detail::max_portable(x, n);
}

// ops::activation_forward on f32: the contract of cpu::activation_forward (out may be in), eight
// lanes at a time where the CPU allows, the portable path otherwise.
inline void activation_forward_vectorized(float* out, const float* in, std::int64_t n, ops::Activation a) {
    detail::check_activation(a);
    parallel_chunks(n, elementwise_grain, [&](std::int64_t begin, std::int64_t end) {
#ifdef PICKSCORE_SGEMM_X86
        if (vector_math_available()) {
            vector_math_detail::activation_forward_avx2(out + begin, in + begin, end - begin, a);
            return;
        }
#endif
        vector_math_detail::activation_forward_portable(out + begin, in + begin, end - begin, a);
    });
}

// ops::activation_backward on f32: din = dout · f'(in) (din may be dout), as above.
inline void activation_backward_vectorized(float* din, const float* dout, const float* in, std::int64_t n,
                                           ops::Activation a) {
    detail::check_activation(a);
    parallel_chunks(n, elementwise_grain, [&](std::int64_t begin, std::int64_t end) {
#ifdef PICKSCORE_SGEMM_X86
        if (vector_math_available()) {
            vector_math_detail::activation_backward_avx2(din + begin, dout + begin, in + begin, end - begin, a);
            return;
        }
#endif
        vector_math_detail::activation_backward_portable(din + begin, dout + begin, in + begin, end - begin, a);
    });
}

}  // namespace pickscore::cpu
