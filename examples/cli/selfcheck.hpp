// examples/cli/selfcheck.hpp — the `pickscore selfcheck` command:
//
//     pickscore selfcheck [--quick | --full] [--filter SUBSTR]
//
// Runs the library's own checks of every CPU op family and prints one line per check (its name,
// the largest scaled error it saw, the tolerance, PASS or FAIL, milliseconds), then a table with
// the counts per family and the total time. Two kinds of check:
//   - backward against central finite differences, in double, on small shapes
//     (pickscore/check/gradcheck.hpp; the error is |fd − backward| / (max(|fd|, |backward|) +
//     noise floor), the tolerance its rtol);
//   - the f32 forward (the path a user runs: SIMD polynomials, blocked sgemm attention, ...)
//     against a straightforward computation in double written here, on the same f32-rounded
//     inputs (the error is max |f32 − f64| / max |f64|, the tolerance has a reason beside it).
// Plus the sgemm kernels against the reference GEMM at an awkward shape, AdamW and gradient
// clipping against their formulas, and bf16/f16 round trips.
// --quick (default) takes a few seconds; --full uses bigger shapes (257 tokens, head dim 80, a
// 257 x 333 x 1283 sgemm). Exit status: 0 when every check passed, 1 when one failed, 2 on a usage
// error.
//
// For testing the check itself: --inject-fault SUBSTR corrupts the result of every check whose
// name contains SUBSTR (scales it by 1.01 and shifts one element), which must then FAIL
// (tests/test_selfcheck.cpp). Where the program links a CUDA backend (pickscore::cuda, or the
// host emulation pickscore::cuda_emulation) and a device is present, a few CUDA ops in f32 are
// checked against the same f64 computations; otherwise the `cuda` family is reported as skipped
// (the CUDA ops have their own tests, on the emulation and on the GPU).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <numbers>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pickscore/check/gradcheck.hpp>
#include <pickscore/core.hpp>
#include <pickscore/cpu/gemm.hpp>
#include <pickscore/cpu/sgemm.hpp>
#include <pickscore/ops/activation.hpp>
#include <pickscore/ops/attention.hpp>
#include <pickscore/ops/embedding.hpp>
#include <pickscore/ops/gemm.hpp>
#include <pickscore/ops/layernorm.hpp>
#include <pickscore/ops/loss.hpp>
#include <pickscore/ops/normalize.hpp>
#include <pickscore/ops/optim.hpp>
#include <pickscore/ops/patches.hpp>
#include <pickscore/ops/softmax.hpp>
#if PICKSCORE_CUDA_ENABLED  // the program links pickscore::cuda (a GPU) or pickscore::cuda_emulation
#include <pickscore/cuda/runtime.hpp>
#include <pickscore/cuda/storage.hpp>
#endif

inline constexpr const char* selfcheck_usage =
    "usage: pickscore selfcheck [--quick | --full] [--filter SUBSTR]\n"
    "  check every CPU op family: backward against finite differences in double, the f32 forward\n"
    "  against a computation in double, sgemm kernels against the reference GEMM, AdamW against its\n"
    "  formula, bf16/f16 round trips; one line per check, then a summary. Exit 1 if a check fails.\n"
    "  --quick          small shapes, a few seconds (default)\n"
    "  --full           bigger shapes too: 257 tokens, head dim 80, a 257 x 333 x 1283 sgemm\n"
    "  --filter SUBSTR  run only the checks whose name contains SUBSTR\n"
    "  --inject-fault SUBSTR   (for testing the self-check) corrupt those checks' results\n";

namespace pickscore_cli::selfcheck {

using pickscore::Cpu;
using pickscore::Rng;
using pickscore::Shape;
using pickscore::Tensor;
using pickscore::TensorView;
using T64 = Tensor<double, Cpu>;
using T32 = Tensor<float, Cpu>;
using V64 = TensorView<double, Cpu>;
using C64 = TensorView<const double, Cpu>;
using i64 = std::int64_t;
namespace ops = pickscore::ops;

// What one check measured: error <= tolerance passes.
struct Measure {
    double error = 0;
    double tolerance = 0;
};

// What a check gets: the size, its random numbers, and whether to corrupt its result.
struct Ctx {
    bool full = false;
    bool fault = false;
    Rng rng{0x5e1fc4ec};

    // The injected fault: x ← 1.01·x everywhere, and element 0 shifted by a tenth of max |x|.
    template <class T>
    void damage(TensorView<T, Cpu> t) const {
        if (!fault || t.numel() == 0) return;
        double m = 0;
        for (i64 i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(pickscore::cast<double>(t[i])));
        for (i64 i = 0; i < t.numel(); ++i) t[i] = pickscore::cast<T>(1.01 * pickscore::cast<double>(t[i]));
        t[0] = pickscore::cast<T>(pickscore::cast<double>(t[0]) + 0.1 * (m + 1));
    }
};

struct Check {
    std::string family;
    std::string name;
    std::function<Measure(Ctx&)> run;
};

// ---- helpers -------------------------------------------------------------------------------

inline T64 randn(Shape s, Rng& rng, double stddev = 1.0) {
    T64 t(s);
    pickscore::fill_normal(t.view(), rng, 0.0, stddev);
    return t;
}

// The same random values as f32 and as the double of those f32 values (so that comparing an f32
// computation with a double one measures the computation, not the rounding of the inputs).
struct Pair {
    T32 f;
    T64 d;
};
inline Pair pair(Shape s, Rng& rng, double stddev = 1.0) {
    T32 f = pickscore::to_dtype<float>(randn(s, rng, stddev).view());
    T64 d = pickscore::to_dtype<double>(f.view());
    return {std::move(f), std::move(d)};
}

inline double dot(C64 a, C64 b) {
    double s = 0;
    for (i64 i = 0; i < a.numel(); ++i) s += a[i] * b[i];
    return s;
}

// max |a − ref| / max |ref| (a NaN anywhere gives infinity).
template <class A, class B>
double rel_error(const TensorView<A, Cpu>& a, const TensorView<B, Cpu>& ref) {
    pickscore::require<pickscore::ShapeError>(a.shape() == ref.shape(), "selfcheck: comparing shape ", a.shape(),
                                              " with ", ref.shape());
    double diff = 0, scale = 0;
    for (i64 i = 0; i < a.numel(); ++i) {
        const double x = pickscore::cast<double>(a[i]), y = pickscore::cast<double>(ref[i]);
        if (std::isnan(x) != std::isnan(y)) return INFINITY;
        if (std::isnan(x) || (std::isinf(y) && x == y)) continue;
        diff = std::max(diff, std::abs(x - y));
        scale = std::max(scale, std::abs(y));
    }
    return diff / std::max(scale, 1e-300);
}

// The gradient check: the worst comparison as |fd − analytic| / (max(|fd|, |analytic|) + floor),
// against rtol (the check's own pass rule, rescaled so that the tolerance is rtol).
// The default step h = 1e-5 balances truncation O(h²) and rounding (eps·|L|/h); losses summed
// over tens of thousands of terms (--full attention) take h = 1e-4, their rounding being larger.
inline Measure gradcheck(Ctx& ctx, const std::vector<pickscore::check::GradInput>& inputs,
                         const std::function<double()>& loss, double step = 1e-5) {
    pickscore::check::GradCheckOptions opt;
    opt.step = step;
    double worst = 0;
    for (const auto& c : pickscore::check::compare_gradients(inputs, loss, ctx.rng, opt)) {
        const double s = std::isfinite(c.score()) ? c.score() : INFINITY;
        worst = std::max(worst, s * opt.rtol);
    }
    return {worst, opt.rtol};
}

// ---- direct double computations (independent of the library's loops) ------------------------

// op(A)[i, k]: A [M,K] or A [K,M] transposed.
inline double op_at(C64 A, ops::Trans t, i64 i, i64 k) { return t == ops::Trans::N ? A.at(i, k) : A.at(k, i); }

inline T64 direct_gemm(C64 A, C64 B, ops::Trans ta, ops::Trans tb, double alpha, double beta, C64 C0) {
    const i64 M = ta == ops::Trans::N ? A.size(0) : A.size(1), K = ta == ops::Trans::N ? A.size(1) : A.size(0);
    const i64 N = tb == ops::Trans::N ? B.size(1) : B.size(0);
    T64 C(Shape{M, N});
    for (i64 i = 0; i < M; ++i)
        for (i64 j = 0; j < N; ++j) {
            double s = 0;
            for (i64 k = 0; k < K; ++k) s += op_at(A, ta, i, k) * op_at(B, tb, k, j);
            C.at(i, j) = alpha * s + beta * C0.at(i, j);
        }
    return C;
}

inline T64 direct_layernorm(C64 x, C64 w, C64 b, double eps) {
    const i64 C = x.shape().last(), R = x.numel() / C;
    T64 out(x.shape());
    for (i64 r = 0; r < R; ++r) {
        double mu = 0, var = 0;
        for (i64 j = 0; j < C; ++j) mu += x[r * C + j];
        mu /= double(C);
        for (i64 j = 0; j < C; ++j) var += (x[r * C + j] - mu) * (x[r * C + j] - mu);
        var /= double(C);
        for (i64 j = 0; j < C; ++j) out[r * C + j] = (x[r * C + j] - mu) / std::sqrt(var + eps) * w[j] + b[j];
    }
    return out;
}

inline double direct_activation(double x, ops::Activation a) {
    switch (a) {
        case ops::Activation::gelu_erf: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
        case ops::Activation::gelu_tanh:
            return 0.5 * x * (1 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
        case ops::Activation::quick_gelu: return x / (1 + std::exp(-1.702 * x));
    }
    return NAN;
}

// out [B,Tq,H,Dh] and lse [B,H,Tq] of softmax(scale q kᵀ) v, by the definition.
inline std::pair<T64, T64> direct_attention(C64 q, C64 k, C64 v, bool causal, double scale) {
    const i64 B = q.size(0), Tq = q.size(1), H = q.size(2), Dh = q.size(3), Tk = k.size(1);
    T64 out = T64::zeros(q.shape()), lse(Shape{B, H, Tq});
    std::vector<double> s(std::size_t(Tk), 0.0);
    for (i64 b = 0; b < B; ++b)
        for (i64 h = 0; h < H; ++h)
            for (i64 i = 0; i < Tq; ++i) {
                const i64 n = causal ? i + 1 : Tk;
                double m = -INFINITY;
                for (i64 j = 0; j < n; ++j) {
                    double d = 0;
                    for (i64 c = 0; c < Dh; ++c) d += q.at(b, i, h, c) * k.at(b, j, h, c);
                    s[std::size_t(j)] = scale * d;
                    m = std::max(m, s[std::size_t(j)]);
                }
                double z = 0;
                for (i64 j = 0; j < n; ++j) z += std::exp(s[std::size_t(j)] - m);
                lse.at(b, h, i) = m + std::log(z);
                for (i64 j = 0; j < n; ++j) {
                    const double p = std::exp(s[std::size_t(j)] - m) / z;
                    for (i64 c = 0; c < Dh; ++c) out.at(b, i, h, c) += p * v.at(b, j, h, c);
                }
            }
    return {std::move(out), std::move(lse)};
}

// ---- the checks, family by family -----------------------------------------------------------

inline void add_gemm(std::vector<Check>& out) {
    out.push_back({"gemm", "gemm.forward f32 vs f64 (NN NT TN TT, alpha, beta)", [](Ctx& c) {
                       const i64 M = c.full ? 257 : 37, N = c.full ? 80 : 29, K = c.full ? 300 : 45;
                       double worst = 0;
                       for (int t = 0; t < 4; ++t) {
                           const ops::Trans ta = t & 1 ? ops::Trans::T : ops::Trans::N;
                           const ops::Trans tb = t & 2 ? ops::Trans::T : ops::Trans::N;
                           Pair A = pair(ta == ops::Trans::N ? Shape{M, K} : Shape{K, M}, c.rng);
                           Pair B = pair(tb == ops::Trans::N ? Shape{K, N} : Shape{N, K}, c.rng);
                           Pair C = pair(Shape{M, N}, c.rng);
                           const T64 want = direct_gemm(A.d, B.d, ta, tb, 0.75, 0.5, C.d);
                           ops::gemm(C.f.view(), A.f, B.f, ta, tb, 0.75, 0.5);
                           c.damage(C.f.view());
                           worst = std::max(worst, rel_error(C.f.view(), want.view()));
                       }
                       // An f32 K-term dot product of random signs errs by ~sqrt(K)·2^-24 relative
                       // to its size; 1e-5 is ~10x the worst row at K = 300.
                       return Measure{worst, 1e-5};
                   }});
    out.push_back({"gemm", "linear.backward f64 vs finite differences (dW, db accumulate)", [](Ctx& c) {
                       const i64 B = c.full ? 2 : 1, T = c.full ? 9 : 3, K = c.full ? 37 : 13, N = c.full ? 21 : 11;
                       T64 x = randn({B, T, K}, c.rng), W = randn({N, K}, c.rng), b = randn({N}, c.rng);
                       T64 g = randn({B, T, N}, c.rng), dW0 = randn({N, K}, c.rng), db0 = randn({N}, c.rng);
                       // dW and db start non-zero: the loss adds <dW0, W> + <db0, b>, so a backward
                       // that overwrote instead of accumulating would fail.
                       auto loss = [&] {
                           T64 y({B, T, N});
                           ops::linear_forward(y.view(), x, W, b);
                           return dot(g, y) + dot(dW0, W) + dot(db0, b);
                       };
                       T64 dx({B, T, K}), dW = pickscore::clone(dW0.view()), db = pickscore::clone(db0.view());
                       ops::linear_backward(dx.view(), dW.view(), db.view(), g, x, W);
                       c.damage(dW.view());
                       return gradcheck(c, {{"x", x, dx}, {"W", W, dW}, {"b", b, db}}, loss);
                   }});
    out.push_back({"gemm", "linear.forward f32 vs f64", [](Ctx& c) {
                       const i64 M = c.full ? 257 : 19, K = c.full ? 320 : 45, N = c.full ? 96 : 23;
                       Pair x = pair({M, K}, c.rng), W = pair({N, K}, c.rng), b = pair({N}, c.rng);
                       T32 y({M, N});
                       ops::linear_forward(y.view(), x.f, W.f, b.f);
                       T64 want = direct_gemm(x.d, W.d, ops::Trans::N, ops::Trans::T, 1.0, 0.0, T64::zeros({M, N}));
                       for (i64 i = 0; i < M; ++i)
                           for (i64 j = 0; j < N; ++j) want.at(i, j) += b.d[j];
                       c.damage(y.view());
                       return Measure{rel_error(y.view(), want.view()), 1e-5};  // as gemm.forward
                   }});
}

inline void add_sgemm(std::vector<Check>& out) {
    using pickscore::cpu::SimdLevel;
    for (SimdLevel level : {SimdLevel::scalar, SimdLevel::avx2, SimdLevel::avx512}) {
        const std::string lname(pickscore::cpu::simd_name(level));
        if (!pickscore::cpu::simd_supported(level)) {
            out.push_back({"sgemm", "sgemm." + lname + " kernel (not supported by this CPU)", nullptr});
            continue;
        }
        out.push_back(
            {"sgemm", "sgemm." + lname + " vs reference GEMM (awkward M, N, K, lda; NT and TN)", [level](Ctx& c) {
                 // Sizes that are multiples of no tile (12x32, 6x16, 4x8) and span several K blocks.
                 const i64 M = c.full ? 257 : 67, N = c.full ? 333 : 53, K = c.full ? 1283 : 261;
                 double worst = 0;
                 for (int t = 0; t < 2; ++t) {
                     const ops::Trans ta = t ? ops::Trans::T : ops::Trans::N, tb = t ? ops::Trans::N : ops::Trans::T;
                     // A is a window of a wider matrix: lda = width + 3.
                     const i64 arows = ta == ops::Trans::N ? M : K, acols = ta == ops::Trans::N ? K : M;
                     const i64 lda = acols + 3;
                     Pair A = pair({arows, lda}, c.rng);
                     Pair B = pair(tb == ops::Trans::N ? Shape{K, N} : Shape{N, K}, c.rng);
                     Pair C = pair({M, N}, c.rng);
                     T64 want = pickscore::clone(C.d.view());
                     pickscore::cpu::gemm_reference<double>(ta, tb, M, N, K, 0.75, A.d.data(), lda, B.d.data(),
                                                            B.d.shape().last(), 0.5, want.data(), N);
                     pickscore::cpu::sgemm_with(level, ta, tb, M, N, K, 0.75f, A.f.data(), lda, B.f.data(),
                                                B.f.shape().last(), 0.5f, C.f.data(), N);
                     c.damage(C.f.view());
                     worst = std::max(worst, rel_error(C.f.view(), want.view()));
                 }
                 // f32 sums of K random-sign terms: ~sqrt(K)·2^-24 relative; 2e-5 allows K = 1283.
                 return Measure{worst, 2e-5};
             }});
    }
}

inline void add_layernorm(std::vector<Check>& out) {
    out.push_back({"layernorm", "layernorm.forward f32 vs f64", [](Ctx& c) {
                       const i64 R = c.full ? 257 : 7, C = c.full ? 1280 : 45;
                       Pair x = pair({R, C}, c.rng, 2.0), w = pair({C}, c.rng), b = pair({C}, c.rng);
                       for (i64 i = 0; i < x.f.numel(); ++i) {  // an offset: the mean must be removed first
                           x.f[i] += 3.0f;
                           x.d[i] = double(x.f[i]);
                       }
                       T32 y({R, C}), mean({R}), rstd({R});
                       ops::layernorm_forward(y.view(), mean.view(), rstd.view(), x.f, w.f, b.f);
                       const T64 want = direct_layernorm(x.d, w.d, b.d, 1e-5);
                       c.damage(y.view());
                       // Row sums of C terms in f32 and a rsqrt: errors ~1e-6 of the output's size.
                       return Measure{rel_error(y.view(), want.view()), 1e-5};
                   }});
    out.push_back({"layernorm", "add_layernorm.forward f32 vs f64 (residual + LayerNorm)", [](Ctx& c) {
                       const i64 B = c.full ? 2 : 1, T = c.full ? 257 : 5, C = c.full ? 1280 : 37;
                       Pair a = pair({B, T, C}, c.rng), bb = pair({B, T, C}, c.rng);
                       Pair w = pair({C}, c.rng), bias = pair({C}, c.rng);
                       T32 resid({B, T, C}), y({B, T, C}), mean({B, T}), rstd({B, T});
                       ops::add_layernorm_forward(resid.view(), y.view(), mean.view(), rstd.view(), a.f, bb.f, w.f,
                                                  bias.f);
                       T64 r(Shape{B, T, C});
                       for (i64 i = 0; i < r.numel(); ++i) r[i] = a.d[i] + bb.d[i];
                       const T64 want = direct_layernorm(r, w.d, bias.d, 1e-5);
                       c.damage(y.view());
                       // As layernorm.forward; the f32 sum a + b itself is one rounding (2^-24).
                       return Measure{std::max(rel_error(y.view(), want.view()), rel_error(resid.view(), r.view())),
                                      1e-5};
                   }});
    out.push_back({"layernorm", "layernorm.backward f64 vs finite differences (residual, accumulate)", [](Ctx& c) {
                       const i64 B = c.full ? 2 : 1, T = c.full ? 5 : 3, C = c.full ? 80 : 13;
                       T64 a = randn({B, T, C}, c.rng), b = randn({B, T, C}, c.rng);
                       T64 w = randn({C}, c.rng), bias = randn({C}, c.rng), g = randn({B, T, C}, c.rng);
                       T64 r0 = randn({B, T, C}, c.rng), dw0 = randn({C}, c.rng), db0 = randn({C}, c.rng);
                       // loss = <g, LN(a + b)> + <r0, a + b> + <dw0, w> + <db0, bias>: r0 is the
                       // residual stream's gradient that Accumulate::yes adds to.
                       auto loss = [&] {
                           T64 resid({B, T, C}), y({B, T, C}), mean({B, T}), rstd({B, T});
                           ops::add_layernorm_forward(resid.view(), y.view(), mean.view(), rstd.view(), a, b, w, bias);
                           return dot(g, y) + dot(r0, resid) + dot(dw0, w) + dot(db0, bias);
                       };
                       T64 resid({B, T, C}), y({B, T, C}), mean({B, T}), rstd({B, T});
                       ops::add_layernorm_forward(resid.view(), y.view(), mean.view(), rstd.view(), a, b, w, bias);
                       T64 din = pickscore::clone(r0.view()), dw = pickscore::clone(dw0.view()),
                           db = pickscore::clone(db0.view());
                       ops::layernorm_backward(din.view(), dw.view(), db.view(), g, resid, w, mean, rstd,
                                               ops::Accumulate::yes);
                       c.damage(din.view());
                       return gradcheck(c, {{"a", a, din}, {"b", b, din}, {"weight", w, dw}, {"bias", bias, db}},
                                        loss);
                   }});
}

inline void add_softmax(std::vector<Check>& out) {
    out.push_back({"softmax", "softmax.forward f32 vs f64 (with masked -inf entries)", [](Ctx& c) {
                       const i64 R = c.full ? 514 : 9, N = c.full ? 257 : 31;
                       Pair x = pair({R, N}, c.rng, 3.0);
                       for (i64 r = 0; r < R; ++r)  // a causal-style mask: row r keeps r % N + 1 entries
                           for (i64 j = r % N + 1; j < N; j += 2) x.f.at(r, j) = -INFINITY, x.d.at(r, j) = -INFINITY;
                       T32 y({R, N});
                       ops::softmax_forward(y.view(), x.f);
                       T64 want({R, N});
                       for (i64 r = 0; r < R; ++r) {
                           double m = -INFINITY, z = 0;
                           for (i64 j = 0; j < N; ++j) m = std::max(m, x.d.at(r, j));
                           for (i64 j = 0; j < N; ++j) z += std::exp(x.d.at(r, j) - m);
                           for (i64 j = 0; j < N; ++j) want.at(r, j) = std::exp(x.d.at(r, j) - m) / z;
                       }
                       c.damage(y.view());
                       return Measure{rel_error(y.view(), want.view()), 1e-6};  // exp and a sum: a few ulps
                   }});
    out.push_back({"softmax", "softmax.backward f64 vs finite differences", [](Ctx& c) {
                       const i64 R = c.full ? 12 : 3, N = c.full ? 257 : 11;
                       T64 x = randn({R, N}, c.rng, 2.0), g = randn({R, N}, c.rng);
                       auto loss = [&] {
                           T64 y({R, N});
                           ops::softmax_forward(y.view(), x);
                           return dot(g, y);
                       };
                       T64 y({R, N}), dx({R, N});
                       ops::softmax_forward(y.view(), x);
                       ops::softmax_backward(dx.view(), g, y);
                       c.damage(dx.view());
                       return gradcheck(c, {{"in", x, dx}}, loss);
                   }});
}

inline void add_gelu(std::vector<Check>& out) {
    const std::pair<ops::Activation, const char*> kinds[] = {{ops::Activation::gelu_erf, "gelu_erf"},
                                                             {ops::Activation::gelu_tanh, "gelu_tanh"},
                                                             {ops::Activation::quick_gelu, "quick_gelu"}};
    for (const auto& [a, name] : kinds) {
        out.push_back({"gelu", std::string(name) + ".forward f32 vs f64", [a](Ctx& c) {
                           const i64 n = c.full ? 1 << 16 : 4099;  // not a multiple of the 8 SIMD lanes
                           Pair x = pair({n}, c.rng, 3.0);
                           T32 y({n});
                           ops::activation_forward(y.view(), x.f, a);
                           T64 want({n});
                           for (i64 i = 0; i < n; ++i) want[i] = direct_activation(x.d[i], a);
                           c.damage(y.view());
                           // The f32 path evaluates polynomials: a few ulps of the largest output.
                           return Measure{rel_error(y.view(), want.view()), 1e-6};
                       }});
        out.push_back({"gelu", std::string(name) + ".backward f64 vs finite differences", [a](Ctx& c) {
                           const i64 n = c.full ? 1000 : 37;
                           T64 x = randn({n}, c.rng, 2.0), g = randn({n}, c.rng);
                           auto loss = [&] {
                               T64 y({n});
                               ops::activation_forward(y.view(), x, a);
                               return dot(g, y);
                           };
                           T64 dx({n});
                           ops::activation_backward(dx.view(), g, x, a);
                           c.damage(dx.view());
                           return gradcheck(c, {{"in", x, dx}}, loss);
                       }});
    }
}

inline void add_attention(std::vector<Check>& out) {
    struct Case {
        const char* what;
        bool causal;
    };
    for (const Case cs : {Case{"causal", true}, Case{"cross Tq != Tk", false}}) {
        out.push_back({"attention", std::string("attention.forward f64 reference vs definition (") + cs.what + ")",
                       [cs](Ctx& c) {
                           const i64 B = c.full ? 1 : 2, Tq = c.full ? (cs.causal ? 77 : 257) : 7, H = 2,
                                     Dh = c.full ? (cs.causal ? 64 : 80) : 5;
                           const i64 Tk = cs.causal ? Tq : Tq + 4;
                           T64 q = randn({B, Tq, H, Dh}, c.rng), k = randn({B, Tk, H, Dh}, c.rng),
                               v = randn({B, Tk, H, Dh}, c.rng);
                           const double scale = 1 / std::sqrt(double(Dh));
                           T64 o({B, Tq, H, Dh}), lse({B, H, Tq});
                           ops::attention_forward(o.view(), lse.view(), q, k, v, cs.causal, scale);
                           auto [want, want_lse] = direct_attention(q, k, v, cs.causal, scale);
                           c.damage(o.view());
                           // Both in double: only summation order differs.
                           return Measure{std::max(rel_error(o.view(), want.view()), rel_error(lse.view(), want_lse.view())),
                                          1e-12};
                       }});
        out.push_back(
            {"attention", std::string("attention.backward f64 vs finite differences (") + cs.what + ")",
             [cs](Ctx& c) {
                 // --full: the vision tower's 257 tokens at head dim 80 (the text tower's 77 at 64 causal).
                 const i64 B = c.full ? 1 : 2, Tq = c.full ? (cs.causal ? 77 : 257) : 6, H = 2,
                           Dh = c.full ? (cs.causal ? 64 : 80) : 5;
                 const i64 Tk = cs.causal ? Tq : (c.full ? Tq : Tq + 3);
                 T64 q = randn({B, Tq, H, Dh}, c.rng), k = randn({B, Tk, H, Dh}, c.rng),
                     v = randn({B, Tk, H, Dh}, c.rng), g = randn({B, Tq, H, Dh}, c.rng);
                 const double scale = 1 / std::sqrt(double(Dh));
                 auto loss = [&] {
                     T64 o({B, Tq, H, Dh});
                     ops::attention_forward(o.view(), V64{}, q, k, v, cs.causal, scale);
                     return dot(g, o);
                 };
                 T64 o({B, Tq, H, Dh}), lse({B, H, Tq});
                 ops::attention_forward(o.view(), lse.view(), q, k, v, cs.causal, scale);
                 T64 dq({B, Tq, H, Dh}), dk({B, Tk, H, Dh}), dv({B, Tk, H, Dh});
                 ops::attention_backward(dq.view(), dk.view(), dv.view(), g, q, k, v, o, lse, cs.causal, scale);
                 c.damage(dk.view());
                 return gradcheck(c, {{"q", q, dq}, {"k", k, dk}, {"v", v, dv}}, loss, c.full ? 1e-4 : 1e-5);
             }});
        out.push_back(
            {"attention", std::string("attention.forward+backward f32 CPU fast path vs f64 (") + cs.what + ")",
             [cs](Ctx& c) {
                 const i64 B = c.full ? 2 : 1, Tq = c.full ? (cs.causal ? 77 : 257) : 37, H = c.full ? 4 : 3,
                           Dh = c.full ? (cs.causal ? 64 : 80) : 80;
                 const i64 Tk = cs.causal ? Tq : Tq + 9;
                 Pair q = pair({B, Tq, H, Dh}, c.rng), k = pair({B, Tk, H, Dh}, c.rng), v = pair({B, Tk, H, Dh}, c.rng);
                 Pair g = pair({B, Tq, H, Dh}, c.rng);
                 const double scale = 1 / std::sqrt(double(Dh));
                 T32 o({B, Tq, H, Dh}), lse({B, H, Tq});
                 ops::attention_forward(o.view(), lse.view(), q.f, k.f, v.f, cs.causal, scale);
                 T32 dq({B, Tq, H, Dh}), dk({B, Tk, H, Dh}), dv({B, Tk, H, Dh});
                 ops::attention_backward(dq.view(), dk.view(), dv.view(), g.f, q.f, k.f, v.f, o, lse, cs.causal,
                                         scale);
                 auto [want, want_lse] = direct_attention(q.d, k.d, v.d, cs.causal, scale);
                 T64 dq64({B, Tq, H, Dh}), dk64({B, Tk, H, Dh}), dv64({B, Tk, H, Dh});
                 ops::attention_backward(dq64.view(), dk64.view(), dv64.view(), g.d, q.d, k.d, v.d, want, want_lse,
                                         cs.causal, scale);
                 c.damage(o.view());
                 double e = std::max(rel_error(o.view(), want.view()), rel_error(lse.view(), want_lse.view()));
                 for (auto [a, b] : {std::pair{&dq, &dq64}, std::pair{&dk, &dk64}, std::pair{&dv, &dv64}})
                     e = std::max(e, rel_error(a->view(), b->view()));
                 // f32 dot products of Dh and sums over up to 266 keys, then the backward's products
                 // of those: ~1e-6 relative; 2e-5 leaves room without hiding a wrong block.
                 return Measure{e, 2e-5};
             }});
    }
}

inline void add_embedding(std::vector<Check>& out) {
    out.push_back({"embedding", "token_embedding.backward f64 vs finite differences (repeated ids)", [](Ctx& c) {
                       const i64 B = 2, T = c.full ? 77 : 5, V = c.full ? 50 : 7, C = c.full ? 40 : 6, P = T + 2;
                       Tensor<std::int32_t, Cpu> ids({B, T});
                       for (i64 i = 0; i < ids.numel(); ++i) ids[i] = std::int32_t(c.rng.below(std::uint64_t(V)));
                       ids[1] = ids[0];  // a repeated id must collect both positions
                       T64 tok = randn({V, C}, c.rng), pos = randn({P, C}, c.rng), g = randn({B, T, C}, c.rng);
                       T64 dtok0 = randn({V, C}, c.rng), dpos0 = randn({P, C}, c.rng);
                       auto loss = [&] {
                           T64 y({B, T, C});
                           ops::token_embedding_forward(y.view(), ids, tok, pos);
                           return dot(g, y) + dot(dtok0, tok) + dot(dpos0, pos);
                       };
                       T64 dtok = pickscore::clone(dtok0.view()), dpos = pickscore::clone(dpos0.view());
                       ops::token_embedding_backward(dtok.view(), dpos.view(), g, ids);
                       c.damage(dtok.view());
                       return gradcheck(c, {{"token_table", tok, dtok}, {"pos_table", pos, dpos}}, loss);
                   }});
    out.push_back({"embedding", "class_position.backward f64 vs finite differences", [](Ctx& c) {
                       const i64 B = 2, P = c.full ? 256 : 4, C = c.full ? 40 : 6;
                       T64 patches = randn({B, P, C}, c.rng), cls = randn({C}, c.rng), pos = randn({1 + P, C}, c.rng);
                       T64 g = randn({B, 1 + P, C}, c.rng), dcls0 = randn({C}, c.rng), dpos0 = randn({1 + P, C}, c.rng);
                       auto loss = [&] {
                           T64 y({B, 1 + P, C});
                           ops::class_position_forward(y.view(), patches, cls, pos);
                           return dot(g, y) + dot(dcls0, cls) + dot(dpos0, pos);
                       };
                       T64 dp({B, P, C}), dcls = pickscore::clone(dcls0.view()), dpos = pickscore::clone(dpos0.view());
                       ops::class_position_backward(dp.view(), dcls.view(), dpos.view(), g);
                       c.damage(dcls.view());
                       return gradcheck(c, {{"patches", patches, dp}, {"cls", cls, dcls}, {"pos", pos, dpos}}, loss);
                   }});
    out.push_back({"embedding", "select_token.backward f64 vs finite differences", [](Ctx& c) {
                       const i64 B = 3, T = c.full ? 77 : 6, C = c.full ? 40 : 5;
                       Tensor<std::int32_t, Cpu> positions({B});
                       for (i64 b = 0; b < B; ++b) positions[b] = std::int32_t(c.rng.below(std::uint64_t(T)));
                       T64 x = randn({B, T, C}, c.rng), g = randn({B, C}, c.rng);
                       auto loss = [&] {
                           T64 y({B, C});
                           ops::select_token_forward(y.view(), x, positions);
                           return dot(g, y);
                       };
                       T64 dx({B, T, C});
                       ops::select_token_backward(dx.view(), g, positions);
                       c.damage(dx.view());
                       return gradcheck(c, {{"in", x, dx}}, loss);
                   }});
    out.push_back({"embedding", "token/class_position/select_token.forward f32 vs f64", [](Ctx& c) {
                       const i64 B = 2, T = c.full ? 77 : 5, V = 9, C = c.full ? 64 : 7, P = c.full ? 256 : 4;
                       Tensor<std::int32_t, Cpu> ids({B, T}), positions({B});
                       for (i64 i = 0; i < ids.numel(); ++i) ids[i] = std::int32_t(c.rng.below(std::uint64_t(V)));
                       for (i64 b = 0; b < B; ++b) positions[b] = std::int32_t(c.rng.below(std::uint64_t(T)));
                       Pair tok = pair({V, C}, c.rng), tpos = pair({T, C}, c.rng);
                       Pair patches = pair({B, P, C}, c.rng), cls = pair({C}, c.rng), ppos = pair({1 + P, C}, c.rng);
                       T32 te({B, T, C}), ce({B, 1 + P, C}), sel({B, C});
                       ops::token_embedding_forward(te.view(), ids, tok.f, tpos.f);
                       ops::class_position_forward(ce.view(), patches.f, cls.f, ppos.f);
                       ops::select_token_forward(sel.view(), te, positions);
                       T64 te64({B, T, C}), ce64({B, 1 + P, C}), sel64({B, C});
                       for (i64 b = 0; b < B; ++b) {
                           for (i64 t = 0; t < T; ++t)
                               for (i64 j = 0; j < C; ++j) te64.at(b, t, j) = tok.d.at(ids.at(b, t), j) + tpos.d.at(t, j);
                           for (i64 j = 0; j < C; ++j) ce64.at(b, 0, j) = cls.d[j] + ppos.d.at(0, j);
                           for (i64 p = 0; p < P; ++p)
                               for (i64 j = 0; j < C; ++j) ce64.at(b, 1 + p, j) = patches.d.at(b, p, j) + ppos.d.at(1 + p, j);
                           for (i64 j = 0; j < C; ++j) sel64.at(b, j) = te64.at(b, positions[b], j);
                       }
                       c.damage(te.view());
                       // One f32 addition per element: at most half an ulp (2^-24) of the result.
                       return Measure{std::max({rel_error(te.view(), te64.view()), rel_error(ce.view(), ce64.view()),
                                                rel_error(sel.view(), sel64.view())}),
                                      1e-7};
                   }});
}

inline void add_patches(std::vector<Check>& out) {
    out.push_back({"patches", "patchify.forward f32 vs the index formula (exact)", [](Ctx& c) {
                       const i64 B = c.full ? 2 : 1, Cc = 3, H = c.full ? 224 : 28, W = c.full ? 224 : 42, p = 14;
                       Pair img = pair({B, Cc, H, W}, c.rng);
                       const i64 N = (H / p) * (W / p);
                       T32 x({B, N, Cc * p * p});
                       ops::patchify(x.view(), img.f, p);
                       T64 want({B, N, Cc * p * p});
                       for (i64 b = 0; b < B; ++b)
                           for (i64 n = 0; n < N; ++n)
                               for (i64 ch = 0; ch < Cc; ++ch)
                                   for (i64 i = 0; i < p; ++i)
                                       for (i64 j = 0; j < p; ++j)
                                           want.at(b, n, ch * p * p + i * p + j) =
                                               img.d.at(b, ch, (n / (W / p)) * p + i, (n % (W / p)) * p + j);
                       c.damage(x.view());
                       return Measure{rel_error(x.view(), want.view()), 0.0};  // a copy: exact
                   }});
    out.push_back({"patches", "unpatchify (patchify.backward) f64 vs finite differences", [](Ctx& c) {
                       const i64 B = c.full ? 2 : 1, H = c.full ? 56 : 28, W = c.full ? 42 : 14, p = 14;
                       const i64 N = (H / p) * (W / p);
                       T64 img = randn({B, 3, H, W}, c.rng), g = randn({B, N, 3 * p * p}, c.rng);
                       auto loss = [&] {
                           T64 x({B, N, 3 * p * p});
                           ops::patchify(x.view(), img, p);
                           return dot(g, x);
                       };
                       T64 dimg({B, 3, H, W});
                       ops::unpatchify(dimg.view(), g, p);
                       c.damage(dimg.view());
                       return gradcheck(c, {{"image", img, dimg}}, loss);
                   }});
}

inline void add_l2(std::vector<Check>& out) {
    out.push_back({"l2norm", "l2_normalize.forward f32 vs f64", [](Ctx& c) {
                       const i64 R = c.full ? 64 : 5, C = c.full ? 1024 : 37;
                       Pair x = pair({R, C}, c.rng);
                       T32 y({R, C}), norm({R});
                       ops::l2_normalize_forward(y.view(), norm.view(), x.f);
                       T64 want({R, C}), wnorm({R});
                       for (i64 r = 0; r < R; ++r) {
                           double s = 0;
                           for (i64 j = 0; j < C; ++j) s += x.d.at(r, j) * x.d.at(r, j);
                           wnorm[r] = std::sqrt(s);
                           for (i64 j = 0; j < C; ++j) want.at(r, j) = x.d.at(r, j) / wnorm[r];
                       }
                       c.damage(y.view());
                       // A sum of C squares in f32, a sqrt and a division: ~1e-7 relative.
                       return Measure{std::max(rel_error(y.view(), want.view()), rel_error(norm.view(), wnorm.view())),
                                      2e-6};
                   }});
    out.push_back({"l2norm", "l2_normalize.backward f64 vs finite differences", [](Ctx& c) {
                       const i64 R = c.full ? 8 : 3, C = c.full ? 1024 : 11;
                       T64 x = randn({R, C}, c.rng), g = randn({R, C}, c.rng);
                       auto loss = [&] {
                           T64 y({R, C});
                           ops::l2_normalize_forward(y.view(), V64{}, x);
                           return dot(g, y);
                       };
                       T64 y({R, C}), norm({R}), dx({R, C});
                       ops::l2_normalize_forward(y.view(), norm.view(), x);
                       ops::l2_normalize_backward(dx.view(), g, y, norm);
                       c.damage(dx.view());
                       return gradcheck(c, {{"in", x, dx}}, loss);
                   }});
}

// Labels [N,2] cycling through win, loss, tie; counts n_i in 1..3.
template <class A>
void loss_labels(Tensor<A, Cpu>& labels, Tensor<A, Cpu>& counts) {
    const A table[3][2] = {{1, 0}, {0, 1}, {0.5, 0.5}};
    for (i64 i = 0; i < labels.size(0); ++i) {
        labels.at(i, 0) = table[i % 3][0];
        labels.at(i, 1) = table[i % 3][1];
        counts[i] = A(1 + i % 3);
    }
}

inline void add_loss(std::vector<Check>& out) {
    out.push_back(
        {"loss", "pickscore_loss.backward f64 vs finite differences (text, images, logit_scale)", [](Ctx& c) {
             const i64 N = c.full ? 12 : 4, E = c.full ? 64 : 7;
             T64 text = randn({N, E}, c.rng, 0.3), images = randn({N, 2, E}, c.rng, 0.3);
             T64 ls = T64::full({1}, std::log(10.0)), dls0 = T64::full({1}, 0.37);
             T64 labels({N, 2}), counts({N}), weights({N});
             loss_labels(labels, counts);
             ops::preference_weights(weights.view(), counts);
             const double dloss = 0.7;
             auto loss = [&] {
                 return dloss * ops::pickscore_loss_forward<double>(V64{}, text, images, labels, weights, ls) +
                        dot(dls0, ls);
             };
             T64 probs({N, 2}), dtext({N, E}), dimages({N, 2, E}), dls = pickscore::clone(dls0.view());
             ops::pickscore_loss_forward<double>(probs.view(), text, images, labels, weights, ls);
             ops::pickscore_loss_backward(dtext.view(), dimages.view(), dls.view(), probs, text, images, labels,
                                          weights, ls, dloss);
             c.damage(dimages.view());
             return gradcheck(c, {{"text", text, dtext}, {"images", images, dimages}, {"logit_scale", ls, dls}},
                              loss);
         }});
    out.push_back({"loss", "pickscore_loss.forward f32 vs the KL formula in f64", [](Ctx& c) {
                       const i64 N = c.full ? 64 : 6, E = c.full ? 1024 : 16;
                       Pair text = pair({N, E}, c.rng), images = pair({N, 2, E}, c.rng);
                       // L2-normalise in double, then round: the op's inputs are unit vectors.
                       for (i64 r = 0; r < 3 * N; ++r) {
                           T64& d = r < N ? text.d : images.d;
                           T32& f = r < N ? text.f : images.f;
                           const i64 o = (r < N ? r : r - N) * E;
                           double s = 0;
                           for (i64 j = 0; j < E; ++j) s += d[o + j] * d[o + j];
                           for (i64 j = 0; j < E; ++j) f[o + j] = float(d[o + j] / std::sqrt(s)), d[o + j] = f[o + j];
                       }
                       Tensor<float, Cpu> labels({N, 2}), counts({N}), weights({N}), probs({N, 2});
                       loss_labels(labels, counts);
                       ops::preference_weights(weights.view(), counts);
                       T32 ls = T32::full({1}, float(std::log(100.0)));  // PickScore's scale: 100
                       const double got = ops::pickscore_loss_forward<float>(probs.view(), text.f, images.f, labels,
                                                                             weights, ls);
                       T64 value = T64::full({1}, got), want = T64::zeros({1});
                       double wsum = 0;
                       for (i64 i = 0; i < N; ++i) wsum += 1.0 / counts[i];
                       for (i64 i = 0; i < N; ++i) {
                           double s[2];
                           for (int k = 0; k < 2; ++k) {
                               double d = 0;
                               for (i64 j = 0; j < E; ++j) d += text.d.at(i, j) * images.d.at(i, k, j);
                               s[k] = std::exp(double(ls[0])) * d;
                           }
                           const double m = std::max(s[0], s[1]), lz = m + std::log(std::exp(s[0] - m) + std::exp(s[1] - m));
                           double kl = 0;
                           for (int k = 0; k < 2; ++k)
                               if (labels.at(i, k) > 0) kl += labels.at(i, k) * (std::log(labels.at(i, k)) - (s[k] - lz));
                           want[0] += (1.0 / counts[i]) / wsum * kl;
                       }
                       c.damage(value.view());
                       // Scores of size ~100 from f32 dot products: absolute error ~100·sqrt(E)·2^-24
                       // in each logit; the loss is O(1), so 1e-4 relative.
                       return Measure{rel_error(value.view(), want.view()), 1e-4};
                   }});
}

// AdamW, by PyTorch's formula, in double, on the values the op saw.
template <class T>
Measure adamw_against_formula(Ctx& c, double tol) {
    const i64 n = c.full ? 100003 : 1001;
    const ops::AdamWConfig cfg{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.3};
    Tensor<T, Cpu> p = pickscore::to_dtype<T>(randn({n}, c.rng).view());
    using A = pickscore::acc_t<T>;
    Tensor<A, Cpu> m = Tensor<A, Cpu>::zeros({n}), v = Tensor<A, Cpu>::zeros({n});
    T64 p64 = pickscore::to_dtype<double>(p.view()), m64 = T64::zeros({n}), v64 = T64::zeros({n});
    for (std::int64_t step = 1; step <= 3; ++step) {
        Tensor<T, Cpu> g = pickscore::to_dtype<T>(randn({n}, c.rng, step == 2 ? 1e-3 : 1.0).view());
        ops::adamw_step(ops::AdamWSlot<T, Cpu>{p, g, m, v}, step, cfg);
        for (i64 i = 0; i < n; ++i) {
            const double gi = double(g[i]);
            p64[i] *= 1 - cfg.lr * cfg.weight_decay;
            m64[i] = cfg.beta1 * m64[i] + (1 - cfg.beta1) * gi;
            v64[i] = cfg.beta2 * v64[i] + (1 - cfg.beta2) * gi * gi;
            const double mh = m64[i] / (1 - std::pow(cfg.beta1, double(step)));
            const double vh = v64[i] / (1 - std::pow(cfg.beta2, double(step)));
            p64[i] -= cfg.lr * mh / (std::sqrt(vh) + cfg.eps);
        }
    }
    c.damage(p.view());
    return Measure{std::max({rel_error(p.view(), p64.view()), rel_error(m.view(), m64.view()),
                             rel_error(v.view(), v64.view())}),
                   tol};
}

inline void add_adamw(std::vector<Check>& out) {
    // f64: only summation order differs. f32: a few roundings per step over 3 steps, relative
    // to the largest value (parameters O(1), moments O(1)): 1e-6 is ~10 ulps.
    out.push_back({"adamw", "adamw.step f64 vs PyTorch's formula (3 steps)",
                   [](Ctx& c) { return adamw_against_formula<double>(c, 1e-13); }});
    out.push_back({"adamw", "adamw.step f32 vs PyTorch's formula in f64 (3 steps)",
                   [](Ctx& c) { return adamw_against_formula<float>(c, 1e-6); }});
    out.push_back({"adamw", "clip_grad_norm f32 vs the 2-norm formula in f64", [](Ctx& c) {
                       Pair a = pair({c.full ? 10007 : 301}, c.rng), b = pair({7, 13}, c.rng);
                       double s = 0;
                       for (const T64* t : {&a.d, &b.d})
                           for (i64 i = 0; i < t->numel(); ++i) s += (*t)[i] * (*t)[i];
                       const double want_norm = std::sqrt(s), max_norm = 0.5 * want_norm;
                       const double coef = max_norm / (want_norm + 1e-6);
                       const double norm = ops::clip_grad_norm(std::vector<TensorView<float, Cpu>>{a.f, b.f}, max_norm);
                       c.damage(a.f.view());
                       double e = std::abs(norm - want_norm) / want_norm;
                       for (auto [f, d] : {std::pair{&a.f, &a.d}, std::pair{&b.f, &b.d}}) {
                           T64 want = pickscore::clone(d->view());
                           for (i64 i = 0; i < want.numel(); ++i) want[i] *= coef;
                           e = std::max(e, rel_error(f->view(), want.view()));
                       }
                       return Measure{e, 1e-6};  // the norm is summed in double; one f32 scaling
                   }});
}

// x → T → float for random floats with |x| in [2^lo_exp, 2^hi_exp) (T's normal range): the
// relative error is at most the unit roundoff (round to nearest), and every finite
// T → float → T round trip is exact.
template <class T>
Measure round_trip(Ctx& c, double unit_roundoff, double lo_exp, double hi_exp) {
    const i64 n = c.full ? 1 << 20 : 1 << 14;
    T32 x({n});
    for (i64 i = 0; i < n; ++i)
        x[i] = float((c.rng.uniform() < 0.5 ? -1 : 1) * std::exp2(c.rng.uniform(lo_exp, hi_exp)));  // log-uniform
    Tensor<T, Cpu> low = pickscore::to_dtype<T>(x.view());
    T32 back = pickscore::to_dtype<float>(low.view());
    c.damage(back.view());
    double worst = 0;
    for (i64 i = 0; i < n; ++i)
        if (x[i] != 0) worst = std::max(worst, std::abs(double(back[i]) - double(x[i])) / std::abs(double(x[i])));
    // Every bit pattern that is a finite value survives T → float → T unchanged.
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
        T t;
        t.bits = std::uint16_t(bits);
        const float f = float(t);
        if (!std::isfinite(f)) continue;
        if (pickscore::cast<T>(f).bits != t.bits) worst = INFINITY;
    }
    return Measure{worst, unit_roundoff};
}

inline void add_dtype(std::vector<Check>& out) {
    // bf16 keeps 8 significant bits (u = 2^-8) over f32's exponent range; f16 keeps 11 bits
    // (u = 2^-11) between its smallest normal 2^-14 and largest 65504.
    out.push_back({"dtype", "bf16 round trip (nearest: rel. error <= 2^-8; all 65536 patterns)",
                   [](Ctx& c) { return round_trip<pickscore::bf16>(c, std::exp2(-8), -120, 120); }});
    out.push_back({"dtype", "f16 round trip (nearest: rel. error <= 2^-11; all 65536 patterns)",
                   [](Ctx& c) { return round_trip<pickscore::f16>(c, std::exp2(-11), -14, 15.99); }});
}

#if PICKSCORE_CUDA_ENABLED
// The CUDA backend (a GPU, or the host emulation of its kernels) in f32 against the same f64
// computations, on the device's default stream and context. Tolerances as on the CPU, doubled:
// the kernels sum in another order (and the attention backward adds dq with atomics).
inline constexpr const char* cuda_backend_name =
#ifdef PICKSCORE_CUDA_EMULATION
    "host emulation";
#else
    "GPU";
#endif

inline bool cuda_device_present() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

template <class T>
Tensor<T, pickscore::Cuda> up(const Tensor<T, Cpu>& t) {
    return pickscore::cuda::to_device(t.cview());
}
template <class T>
Tensor<T, Cpu> down(const Tensor<T, pickscore::Cuda>& t) {
    return pickscore::cuda::to_host(t.cview());
}

inline void add_cuda(std::vector<Check>& out) {
    const std::string tag = std::string(" (") + cuda_backend_name + ")";
    if (!cuda_device_present()) {
        out.push_back({"cuda", "cuda ops vs f64: no CUDA device found" + tag, nullptr});
        return;
    }
    using pickscore::Cuda;
    using C32 = Tensor<float, Cuda>;
    out.push_back({"cuda", "cuda.gemm.forward f32 (NT, alpha, beta) vs f64" + tag, [](Ctx& c) {
                       const i64 M = c.full ? 257 : 37, N = c.full ? 80 : 29, K = c.full ? 300 : 45;
                       Pair A = pair({M, K}, c.rng), B = pair({N, K}, c.rng), C = pair({M, N}, c.rng);
                       C32 dC = up(C.f);
                       ops::gemm(dC.view(), up(A.f), up(B.f), ops::Trans::N, ops::Trans::T, 0.75, 0.5);
                       T32 got = down(dC);
                       c.damage(got.view());
                       const T64 want = direct_gemm(A.d, B.d, ops::Trans::N, ops::Trans::T, 0.75, 0.5, C.d);
                       return Measure{rel_error(got.view(), want.view()), 2e-5};
                   }});
    out.push_back({"cuda", "cuda.layernorm.forward f32 vs f64" + tag, [](Ctx& c) {
                       const i64 R = c.full ? 257 : 7, C = c.full ? 1280 : 45;
                       Pair x = pair({R, C}, c.rng), w = pair({C}, c.rng), b = pair({C}, c.rng);
                       C32 y({R, C}), mean({R}), rstd({R});
                       ops::layernorm_forward(y.view(), mean.view(), rstd.view(), up(x.f), up(w.f), up(b.f));
                       T32 got = down(y);
                       c.damage(got.view());
                       return Measure{rel_error(got.view(), direct_layernorm(x.d, w.d, b.d, 1e-5).view()), 2e-5};
                   }});
    out.push_back({"cuda", "cuda.softmax.forward f32 vs f64" + tag, [](Ctx& c) {
                       const i64 R = c.full ? 514 : 9, N = c.full ? 257 : 31;
                       Pair x = pair({R, N}, c.rng, 3.0);
                       C32 y({R, N});
                       ops::softmax_forward(y.view(), up(x.f));
                       T32 got = down(y);
                       T64 want({R, N});
                       for (i64 r = 0; r < R; ++r) {
                           double m = -INFINITY, z = 0;
                           for (i64 j = 0; j < N; ++j) m = std::max(m, x.d.at(r, j));
                           for (i64 j = 0; j < N; ++j) z += std::exp(x.d.at(r, j) - m);
                           for (i64 j = 0; j < N; ++j) want.at(r, j) = std::exp(x.d.at(r, j) - m) / z;
                       }
                       c.damage(got.view());
                       return Measure{rel_error(got.view(), want.view()), 2e-6};
                   }});
    out.push_back({"cuda", "cuda.gelu_erf.forward f32 vs f64" + tag, [](Ctx& c) {
                       const i64 n = c.full ? 1 << 16 : 4099;
                       Pair x = pair({n}, c.rng, 3.0);
                       C32 y({n});
                       ops::activation_forward(y.view(), up(x.f), ops::Activation::gelu_erf);
                       T32 got = down(y);
                       T64 want({n});
                       for (i64 i = 0; i < n; ++i) want[i] = direct_activation(x.d[i], ops::Activation::gelu_erf);
                       c.damage(got.view());
                       return Measure{rel_error(got.view(), want.view()), 2e-6};
                   }});
    out.push_back({"cuda", "cuda.attention.forward+backward f32 vs f64" + tag, [](Ctx& c) {
                       const i64 B = 1, T = c.full ? 257 : 37, H = 2, Dh = c.full ? 80 : 16;
                       Pair q = pair({B, T, H, Dh}, c.rng), k = pair({B, T, H, Dh}, c.rng), v = pair({B, T, H, Dh}, c.rng);
                       Pair g = pair({B, T, H, Dh}, c.rng);
                       const double scale = 1 / std::sqrt(double(Dh));
                       C32 dq_({B, T, H, Dh}), o({B, T, H, Dh}), lse({B, H, T}), dk_({B, T, H, Dh}), dv_({B, T, H, Dh});
                       const C32 gq = up(q.f), gk = up(k.f), gv = up(v.f), gg = up(g.f);
                       ops::attention_forward(o.view(), lse.view(), gq, gk, gv, false, scale);
                       ops::attention_backward(dq_.view(), dk_.view(), dv_.view(), gg, gq, gk, gv, o, lse, false, scale);
                       T32 out32 = down(o), dq = down(dq_), dk = down(dk_), dv = down(dv_);
                       auto [want, want_lse] = direct_attention(q.d, k.d, v.d, false, scale);
                       T64 dq64({B, T, H, Dh}), dk64({B, T, H, Dh}), dv64({B, T, H, Dh});
                       ops::attention_backward(dq64.view(), dk64.view(), dv64.view(), g.d, q.d, k.d, v.d, want, want_lse,
                                               false, scale);
                       c.damage(out32.view());
                       double e = rel_error(out32.view(), want.view());
                       e = std::max({e, rel_error(dq.view(), dq64.view()), rel_error(dk.view(), dk64.view()),
                                     rel_error(dv.view(), dv64.view())});
                       return Measure{e, 4e-5};
                   }});
    out.push_back({"cuda", "cuda.l2_normalize.forward f32 vs f64" + tag, [](Ctx& c) {
                       const i64 R = c.full ? 64 : 5, C = c.full ? 1024 : 37;
                       Pair x = pair({R, C}, c.rng);
                       C32 y({R, C}), norm({R});
                       ops::l2_normalize_forward(y.view(), norm.view(), up(x.f));
                       T32 got = down(y);
                       T64 want({R, C});
                       for (i64 r = 0; r < R; ++r) {
                           double s = 0;
                           for (i64 j = 0; j < C; ++j) s += x.d.at(r, j) * x.d.at(r, j);
                           for (i64 j = 0; j < C; ++j) want.at(r, j) = x.d.at(r, j) / std::sqrt(s);
                       }
                       c.damage(got.view());
                       return Measure{rel_error(got.view(), want.view()), 4e-6};
                   }});
}
#endif

inline std::vector<Check> all_checks() {
    std::vector<Check> out;
    add_gemm(out);
    add_layernorm(out);
    add_softmax(out);
    add_gelu(out);
    add_attention(out);
    add_embedding(out);
    add_patches(out);
    add_l2(out);
    add_loss(out);
    add_adamw(out);
    add_sgemm(out);
    add_dtype(out);
#if PICKSCORE_CUDA_ENABLED
    add_cuda(out);
#else
    // This program is built without a CUDA backend (its ops have their own tests: on the host
    // emulation in every build, on the GPU where there is one), so the family is listed as skipped.
    out.push_back({"cuda", "cuda ops vs f64 (no CUDA backend linked into this pickscore)", nullptr});
#endif
    return out;
}

}  // namespace pickscore_cli::selfcheck

// argv[0] is the command's name ("selfcheck"); the arguments follow.
inline int cmd_selfcheck(int argc, char** argv) {
    namespace sc = pickscore_cli::selfcheck;
    auto usage_error = [](const std::string& msg) {
        std::fprintf(stderr, "pickscore selfcheck: %s\n%s", msg.c_str(), selfcheck_usage);
        return 2;
    };
    bool full = false;
    std::string filter, fault;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            std::fputs(selfcheck_usage, stdout);
            return 0;
        } else if (a == "--quick") {
            full = false;
        } else if (a == "--full") {
            full = true;
        } else if (a == "--filter" || a == "--inject-fault") {
            if (i + 1 >= argc) return usage_error(std::string(a) + " needs a value");
            (a == "--filter" ? filter : fault) = argv[++i];
        } else {
            return usage_error("unknown argument '" + std::string(a) + "'");
        }
    }
    std::vector<sc::Check> checks;
    bool fault_matched = false;
    for (sc::Check& c : sc::all_checks()) {
        if (!filter.empty() && c.name.find(filter) == std::string::npos && c.family != filter) continue;
        if (!fault.empty() && c.name.find(fault) != std::string::npos && c.run) fault_matched = true;
        checks.push_back(std::move(c));
    }
    if (checks.empty()) return usage_error("no check matches --filter '" + filter + "'");
    if (!fault.empty() && !fault_matched) return usage_error("no check to run matches --inject-fault '" + fault + "'");

    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    std::printf("pickscore selfcheck (%s): %zu checks, sgemm kernel %.*s, %d threads\n", full ? "full" : "quick",
                checks.size(), int(pickscore::cpu::simd_name(pickscore::cpu::detected_simd()).size()),
                pickscore::cpu::simd_name(pickscore::cpu::detected_simd()).data(), pickscore::num_threads());
    if (!fault.empty()) std::printf("injecting a fault into the checks matching '%s' (testing the self-check)\n", fault.c_str());
    std::printf("  %-78s %10s %10s %-6s %8s\n", "check", "error", "tolerance", "result", "ms");

    struct Row {
        std::string family;
        int pass = 0, fail = 0, skip = 0;
    };
    std::vector<Row> table;
    auto row = [&](const std::string& family) -> Row& {
        for (Row& r : table)
            if (r.family == family) return r;
        table.push_back({family});
        return table.back();
    };
    std::vector<std::string> failed;
    for (const sc::Check& c : checks) {
        Row& r = row(c.family);
        if (!c.run) {
            std::printf("  %-78s %10s %10s %-6s\n", c.name.c_str(), "-", "-", "SKIP");
            ++r.skip;
            continue;
        }
        sc::Ctx ctx;
        ctx.full = full;
        ctx.fault = !fault.empty() && c.name.find(fault) != std::string::npos;
        const auto start = clock::now();
        sc::Measure m{INFINITY, 0};
        std::string error;
        try {
            m = c.run(ctx);
        } catch (const std::exception& e) {  // a library error is a failed check, reported, not fatal
            error = e.what();
        }
        const double ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();
        const bool ok = error.empty() && m.error <= m.tolerance;  // NaN fails
        std::printf("  %-78s %10.2e %10.1e %-6s %8.1f\n", c.name.c_str(), m.error, m.tolerance, ok ? "PASS" : "FAIL",
                    ms);
        if (!error.empty()) std::printf("    error: %s\n", error.c_str());
        std::fflush(stdout);
        ++(ok ? r.pass : r.fail);
        if (!ok) failed.push_back(c.name);
    }
    const double secs = std::chrono::duration<double>(clock::now() - t0).count();
    int pass = 0, fail = 0, skip = 0;
    std::printf("\nsummary\n  %-12s %5s %5s %5s\n", "family", "pass", "fail", "skip");
    for (const Row& r : table) {
        std::printf("  %-12s %5d %5d %5d\n", r.family.c_str(), r.pass, r.fail, r.skip);
        pass += r.pass, fail += r.fail, skip += r.skip;
    }
    std::printf("  %-12s %5d %5d %5d   %.1f s\n", "total", pass, fail, skip, secs);
    if (fail) {
        std::printf("selfcheck: %d of %d checks FAILED:\n", fail, pass + fail);
        for (const std::string& f : failed) std::printf("  %s\n", f.c_str());
        return 1;
    }
    std::printf("selfcheck: all %d checks passed\n", pass);
    return 0;
}
