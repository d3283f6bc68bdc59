// The transformer ops of the CPU backend: LayerNorm, softmax, the GELU family, attention and the
// element-wise sums. Every backward against finite differences in double; every forward against an
// independent computation written here; f32/bf16/f16 against the f64 reference; aliasing where the
// headers promise it; and the shape errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <numbers>
#include <pickscore/ops/activation.hpp>
#include <pickscore/ops/attention.hpp>
#include <pickscore/ops/elementwise.hpp>
#include <pickscore/ops/layernorm.hpp>
#include <pickscore/ops/softmax.hpp>
#include <string>
#include <vector>

#include "support/gradcheck.hpp"

using namespace pickscore;
using namespace pickscore::test;
using ops::Accumulate;
using ops::Activation;

namespace {

// A double tensor whose values are exactly representable in T: what a T computation actually sees.
template <class T>
T64 representable_in(const T64& x) {
    const Tensor<T> t = to_dtype<T>(x.view());
    return to_dtype<double>(t.view());
}

// Relative tolerance for a T result against the f64 reference on the same (representable) inputs.
// bf16/f16: the one final rounding costs at most half an ulp (2^-9, 2^-11 relative); we allow twice
// that. f32: the final rounding is negligible next to float accumulation over up to ~1000 terms
// (relative error about sqrt(n)·2^-24 ≈ 2e-6), so 1e-5.
template <class T>
constexpr double rtol_of = std::is_same_v<T, bf16>  ? 0x1p-8
                           : std::is_same_v<T, f16> ? 0x1p-10
                                                    : 1e-5;
// Absolute part for results near zero, where float accumulation (not the final rounding) dominates.
constexpr double atol_low = 1e-5;

template <class F>
std::string shape_error_of(F&& f) {
    try {
        f();
    } catch (const ShapeError& e) {
        return e.what();
    }
    return "(no ShapeError thrown)";
}

void check_mentions(const std::string& msg, std::initializer_list<const char*> parts) {
    for (const char* p : parts)
        CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << msg << "' does not mention " << p);
}

Shape without_last(const Shape& s) {
    Shape r;
    for (int i = 0; i + 1 < s.rank(); ++i) r.push_back(s[i]);
    return r;
}

// Element-for-element equality (the same computation, merely with aliased buffers).
bool identical(C64 a, C64 b) {
    REQUIRE(a.shape() == b.shape());
    return std::equal(a.begin(), a.end(), b.begin());
}

void sub_inplace(V64 a, C64 b) {
    for (std::int64_t i = 0; i < a.numel(); ++i) a[i] -= b[i];
}

}  // namespace

// ---- LayerNorm -----------------------------------------------------------------------------------

namespace {
// The textbook formulas, one row at a time: μ = E[x], σ² = E[x²] − μ² (a different route from
// the library's two passes), out = (x − μ)/√(σ² + eps)·w + b.
void layernorm_reference(V64 out, std::vector<double>& mean, std::vector<double>& rstd, C64 x, C64 w, C64 b,
                         double eps) {
    const std::int64_t C = x.shape().last(), R = x.shape().rows();
    mean.assign(std::size_t(R), 0.0);
    rstd.assign(std::size_t(R), 0.0);
    for (std::int64_t r = 0; r < R; ++r) {
        double s = 0, s2 = 0;
        for (std::int64_t j = 0; j < C; ++j) {
            s += x[r * C + j];
            s2 += x[r * C + j] * x[r * C + j];
        }
        const double mu = s / double(C), var = std::max(0.0, s2 / double(C) - mu * mu);
        mean[std::size_t(r)] = mu;
        rstd[std::size_t(r)] = 1.0 / std::sqrt(var + eps);
        for (std::int64_t j = 0; j < C; ++j) out[r * C + j] = (x[r * C + j] - mu) * rstd[std::size_t(r)] * w[j] + b[j];
    }
}

const Shape layernorm_shapes[] = {Shape{1, 13}, Shape{2, 257, 13}, Shape{1, 77, 80},
                                  Shape{3, 1},  Shape{5},          Shape{2, 3, 33}};
}  // namespace

TEST_CASE("layernorm forward matches the textbook formulas") {
    Rng rng(10);
    for (const Shape& s : layernorm_shapes) {
        const std::int64_t C = s.last(), R = s.rows();
        // Non-zero mean and a spread other than 1, so both statistics matter.
        T64 x = randn(s, rng, 2.0, 3.0), w = randn(Shape{C}, rng), b = randn(Shape{C}, rng);
        for (double eps : {1e-5, 0.1}) {
            T64 out(s), mean(Shape{R}), rstd(Shape{R}), ref(s);
            std::vector<double> ref_mean, ref_rstd;
            ops::layernorm_forward(out, mean, rstd, x, w, b, eps);
            layernorm_reference(ref, ref_mean, ref_rstd, x, w, b, eps);
            // E[x²] − μ² loses about |μ|²/σ² · 2^-53 relative; with μ = 3, σ = 2 that is ~1e-15.
            CHECK_MESSAGE(max_scaled_error(out.cview(), ref.cview(), 1e-12, 1e-12) <= 1.0, s << " eps " << eps);
            for (std::int64_t r = 0; r < R; ++r) {
                CHECK(mean[r] == doctest::Approx(ref_mean[std::size_t(r)]).epsilon(1e-13));
                CHECK(rstd[r] == doctest::Approx(ref_rstd[std::size_t(r)]).epsilon(1e-12));
            }
        }
        // Statistics shaped like in's leading dimensions are accepted too, and inference saves nothing.
        if (s.rank() >= 2) {
            T64 out(s), mean(without_last(s)), rstd(without_last(s)), out2(s);
            ops::layernorm_forward(out, mean, rstd, x, w, b);
            ops::layernorm_forward(out2, {}, {}, x, w, b);
            CHECK(identical(out2, out));
        }
    }
}

TEST_CASE("layernorm forward may write over its input") {
    Rng rng(11);
    T64 x = randn(Shape{4, 29}, rng, 1.5, -1.0), w = randn(Shape{29}, rng), b = randn(Shape{29}, rng);
    T64 out(x.shape()), mean(Shape{4}), rstd(Shape{4});
    ops::layernorm_forward(out, {}, {}, x, w, b);
    T64 y = clone(x.view()), ym(Shape{4}), yr(Shape{4});
    ops::layernorm_forward(y, ym, yr, y, w, b);
    CHECK(identical(y, out));
    ops::layernorm_forward(out, mean, rstd, x, w, b);
    CHECK(identical(ym, mean));
    CHECK(identical(yr, rstd));
}

TEST_CASE("layernorm backward matches finite differences (written and accumulated din)") {
    Rng rng(12);
    for (const Shape& s : layernorm_shapes)
        for (Accumulate mode : {Accumulate::no, Accumulate::yes}) {
            const std::int64_t C = s.last(), R = s.rows();
            T64 x = randn(s, rng, 1.5, 0.5), w = randn(Shape{C}, rng), b = randn(Shape{C}, rng);
            T64 g = randn(s, rng);
            auto loss = [&] {
                T64 y(s);
                ops::layernorm_forward(y, {}, {}, x, w, b);
                return dot(y, g);
            };
            T64 y(s), mean(Shape{R}), rstd(Shape{R});
            ops::layernorm_forward(y, mean, rstd, x, w, b);
            // Written din must ignore what the buffer held; accumulated din must add to it.
            T64 din0 = mode == Accumulate::yes ? randn(s, rng) : T64::full(s, 1e30);
            T64 din = clone(din0.view());
            T64 dw0 = randn(Shape{C}, rng), dw = clone(dw0.view());
            T64 db0 = randn(Shape{C}, rng), db = clone(db0.view());
            ops::layernorm_backward(din, dw, db, g, x, w, mean, rstd, mode);
            if (mode == Accumulate::yes) sub_inplace(din, din0);
            sub_inplace(dw, dw0);
            sub_inplace(db, db0);
            check_gradients("layernorm " + s.str() + (mode == Accumulate::yes ? " accumulate" : " write"),
                            {{"in", x, din}, {"weight", w, dw}, {"bias", b, db}}, loss, rng);
        }
}

TEST_CASE_TEMPLATE("layernorm in low precision agrees with the f64 reference", T, float, bf16, f16) {
    Rng rng(13);
    for (const Shape& s : {Shape{2, 257, 13}, Shape{3, 1280}, Shape{1, 77, 80}}) {
        const std::int64_t C = s.last(), R = s.rows();
        T64 x = representable_in<T>(randn(s, rng, 1.0, 0.5));
        T64 w = representable_in<T>(randn(Shape{C}, rng, 0.2, 1.0));
        T64 b = representable_in<T>(randn(Shape{C}, rng, 0.1));
        T64 ref(s), ref_mean(Shape{R}), ref_rstd(Shape{R});
        ops::layernorm_forward(ref, ref_mean, ref_rstd, x, w, b);
        Tensor<T> out(s);
        Tensor<float> mean(Shape{R}), rstd(Shape{R});
        ops::layernorm_forward(out, mean, rstd, to_dtype<T>(x.view()), to_dtype<T>(w.view()), to_dtype<T>(b.view()));
        CHECK_MESSAGE(max_scaled_error(out.cview(), ref.cview(), atol_low, rtol_of<T>) <= 1.0, s);
        // The statistics stay in float whatever T is: float accumulation only.
        CHECK(max_scaled_error(mean.cview(), ref_mean.cview(), 1e-6, 1e-5) <= 1.0);
        CHECK(max_scaled_error(rstd.cview(), ref_rstd.cview(), 1e-6, 1e-5) <= 1.0);

        // Backward in T against the f64 backward on the same inputs.
        T64 g = representable_in<T>(randn(s, rng));
        T64 din(s), dw = zeros(Shape{C}), db = zeros(Shape{C});
        ops::layernorm_backward(din, dw, db, g, x, w, ref_mean, ref_rstd);
        Tensor<T> din_t(s), dw_t = Tensor<T>::zeros(Shape{C}), db_t = Tensor<T>::zeros(Shape{C});
        ops::layernorm_backward(din_t, dw_t, db_t, to_dtype<T>(g.view()), to_dtype<T>(x.view()), to_dtype<T>(w.view()),
                                mean, rstd);
        // din: one rounding after float sums over C terms. dw, db: sums over R rows of O(1) terms,
        // so the absolute float error grows like sqrt(R)·2^-24·|terms| — well inside 1e-4.
        CHECK_MESSAGE(max_scaled_error(din_t.cview(), din.cview(), 1e-4, rtol_of<T>) <= 1.0, s);
        CHECK_MESSAGE(max_scaled_error(dw_t.cview(), dw.cview(), 1e-4, rtol_of<T>) <= 1.0, s);
        CHECK_MESSAGE(max_scaled_error(db_t.cview(), db.cview(), 1e-4, rtol_of<T>) <= 1.0, s);
    }
}

// ---- softmax -------------------------------------------------------------------------------------

namespace {
const Shape softmax_shapes[] = {Shape{1, 1}, Shape{3, 13}, Shape{2, 257}, Shape{2, 3, 77}, Shape{5}};

// exp(x_j) / Σ exp(x_k) by the definition (the test inputs are small enough not to overflow).
void softmax_reference(V64 out, C64 in) {
    const std::int64_t N = in.shape().last(), R = in.shape().rows();
    for (std::int64_t r = 0; r < R; ++r) {
        double sum = 0;
        for (std::int64_t j = 0; j < N; ++j) sum += std::exp(in[r * N + j]);
        for (std::int64_t j = 0; j < N; ++j) out[r * N + j] = std::exp(in[r * N + j]) / sum;
    }
}
}  // namespace

TEST_CASE("softmax forward follows the definition, is shift invariant and does not overflow") {
    Rng rng(20);
    for (const Shape& s : softmax_shapes) {
        T64 x = randn(s, rng, 2.0), out(s), ref(s);
        ops::softmax_forward(out, x);
        softmax_reference(ref, x);
        CHECK_MESSAGE(max_scaled_error(out.cview(), ref.cview(), 1e-16, 1e-13) <= 1.0, s);
        // Shifted by 1000 a naive exp overflows; the stable form gives the same probabilities.
        T64 shifted = clone(x.view()), out_shifted(s);
        for (double& v : shifted) v += 1000.0;
        ops::softmax_forward(out_shifted, shifted);
        // Adding 1000 rounds x to about 1000·2^-53 ≈ 1e-13 absolute; exp carries that over relatively.
        CHECK_MESSAGE(max_scaled_error(out_shifted.cview(), ref.cview(), 1e-16, 1e-12) <= 1.0, s);
        // Rows sum to one.
        const std::int64_t N = s.last();
        for (std::int64_t r = 0; r < s.rows(); ++r) {
            double sum = 0;
            for (std::int64_t j = 0; j < N; ++j) sum += out_shifted[r * N + j];
            CHECK(sum == doctest::Approx(1.0).epsilon(1e-14));
        }
    }
    // −∞ entries (a mask) get probability zero.
    T64 x = T64::full(Shape{1, 4}, 0.0), out(Shape{1, 4});
    x[1] = -std::numeric_limits<double>::infinity();
    ops::softmax_forward(out, x);
    CHECK(out[1] == 0.0);
    CHECK(out[0] == doctest::Approx(1.0 / 3.0).epsilon(1e-15));
}

TEST_CASE("softmax forward may write over its input") {
    Rng rng(21);
    T64 x = randn(Shape{3, 45}, rng), out(x.shape());
    ops::softmax_forward(out, x);
    ops::softmax_forward(x, x);
    CHECK(identical(x, out));
}

TEST_CASE("softmax backward matches finite differences") {
    Rng rng(22);
    for (const Shape& s : softmax_shapes) {
        T64 x = randn(s, rng, 1.5), g = randn(s, rng);
        auto loss = [&] {
            T64 y(s);
            ops::softmax_forward(y, x);
            return dot(y, g);
        };
        T64 y(s), din = T64::full(s, 1e30);  // written: the old contents must not matter
        ops::softmax_forward(y, x);
        ops::softmax_backward(din, g, y);
        check_gradients("softmax " + s.str(), {{"in", x, din}}, loss, rng);
    }
}

TEST_CASE_TEMPLATE("softmax in low precision agrees with the f64 reference", T, float, bf16, f16) {
    Rng rng(23);
    for (const Shape& s : {Shape{4, 257}, Shape{2, 3, 13}, Shape{2, 1000}}) {
        T64 x = representable_in<T>(randn(s, rng, 2.0)), ref(s);
        ops::softmax_forward(ref, x);
        Tensor<T> out(s);
        ops::softmax_forward(out, to_dtype<T>(x.view()));
        // Probabilities can be tiny; below ~1e-6 only an absolute bound is meaningful.
        CHECK_MESSAGE(max_scaled_error(out.cview(), ref.cview(), 1e-6, rtol_of<T>) <= 1.0, s);
        T64 g = representable_in<T>(randn(s, rng)), din(s);
        const T64 y = representable_in<T>(ref);
        ops::softmax_backward(din, g, y);
        Tensor<T> din_t(s);
        ops::softmax_backward(din_t, to_dtype<T>(g.view()), to_dtype<T>(y.view()));
        CHECK_MESSAGE(max_scaled_error(din_t.cview(), din.cview(), 1e-6, rtol_of<T>) <= 1.0, s);
    }
}

// ---- activations ---------------------------------------------------------------------------------

namespace {
const Activation all_activations[] = {Activation::gelu_erf, Activation::gelu_tanh, Activation::quick_gelu};

const char* name_of(Activation a) {
    switch (a) {
        case Activation::gelu_erf:
            return "gelu_erf";
        case Activation::gelu_tanh:
            return "gelu_tanh";
        case Activation::quick_gelu:
            return "quick_gelu";
    }
    return "?";
}

// The three formulas as written in the papers / PyTorch docs.
double activation_reference(Activation a, double x) {
    switch (a) {
        case Activation::gelu_erf:
            return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
        case Activation::gelu_tanh:
            return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x)));
        case Activation::quick_gelu:
            return x / (1.0 + std::exp(-1.702 * x));
    }
    return NAN;
}

double activate(Activation a, double x) {
    T64 in = T64::full(Shape{1}, x), out(Shape{1});
    ops::activation_forward(out, in, a);
    return out[0];
}
}  // namespace

TEST_CASE("activations take their known values") {
    // Values from Python's math.erf / math.tanh / math.exp. Tail values lose digits where 1 + erf
    // and 1 + tanh cancel (about 1e-14 relative at x = -3), hence 1e-12.
    struct Known {
        Activation a;
        double x, y;
    };
    const Known known[] = {
        {Activation::gelu_erf, 1.0, 0.8413447460685429},       {Activation::gelu_erf, -1.0, -0.15865525393145707},
        {Activation::gelu_erf, 2.0, 1.9544997361036416},       {Activation::gelu_erf, -3.0, -0.00404969409489031},
        {Activation::gelu_tanh, 1.0, 0.8411919906082768},      {Activation::gelu_tanh, -1.0, -0.15880800939172324},
        {Activation::gelu_tanh, -3.0, -0.0036373920817729943}, {Activation::quick_gelu, 1.0, 0.8457957659328212},
        {Activation::quick_gelu, -1.0, -0.1542042340671787},   {Activation::quick_gelu, 2.0, 1.9356586231442083},
    };
    for (const Known& k : known)
        CHECK_MESSAGE(activate(k.a, k.x) == doctest::Approx(k.y).epsilon(1e-12), name_of(k.a) << "(" << k.x << ")");
    for (Activation a : all_activations) CHECK(activate(a, 0.0) == 0.0);
}

TEST_CASE("activations follow their formulas over a wide range, in f32 too") {
    Rng rng(30);
    const Shape s{3, 257, 7};
    T64 x = randn(s, rng, 3.0);
    x[0] = 40.0;  // tails: the sigmoid's exp overflows in float for very negative inputs
    x[1] = -40.0;
    x[2] = -100.0;
    const Tensor<float> xf = to_dtype<float>(x.view());
    const T64 xr = to_dtype<double>(xf.view());
    double max_tanh_gap = 0;
    for (Activation a : all_activations) {
        T64 out(s);
        ops::activation_forward(out, x, a);
        Tensor<float> outf(s);
        ops::activation_forward(outf, xf, a);
        T64 ref(s), reff(s);
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            ref[i] = activation_reference(a, x[i]);
            reff[i] = activation_reference(a, xr[i]);
        }
        // In the negative tail 1 + erf(·) and 1 + tanh(·) cancel, so a one-ulp difference in how the
        // argument is formed shows as an absolute error of about |x|·ulp(1): atol |x|max·2^-53 ≈ 1e-14
        // (double) and |x|max·2^-24 ≈ 1e-6 (float, |x| <= ~15 here away from the ±40, ±100 tails,
        // where the results are exactly 0 or x). Elsewhere a few ulps of the type.
        CHECK_MESSAGE(max_scaled_error(out.cview(), ref.cview(), 1e-14, 1e-14) <= 1.0, name_of(a));
        CHECK_MESSAGE(max_scaled_error(outf.cview(), reff.cview(), 1e-6, 4e-7) <= 1.0, name_of(a));
        if (a == Activation::gelu_tanh) {
            T64 exact(s);
            ops::activation_forward(exact, x, Activation::gelu_erf);
            for (std::int64_t i = 0; i < x.numel(); ++i)
                max_tanh_gap = std::max(max_tanh_gap, std::abs(out[i] - exact[i]));
        }
    }
    // The tanh approximation is never more than 4.8e-4 from the exact GELU (largest near x = -2.7).
    CHECK(max_tanh_gap < 4.8e-4);
    CHECK(max_tanh_gap > 1e-4);
}

TEST_CASE("activation backward matches finite differences") {
    Rng rng(31);
    for (const Shape& s : {Shape{1}, Shape{3, 13}, Shape{2, 257, 7}})
        for (Activation a : all_activations) {
            T64 x = randn(s, rng, 2.5), g = randn(s, rng);
            auto loss = [&] {
                T64 y(s);
                ops::activation_forward(y, x, a);
                return dot(y, g);
            };
            T64 din = T64::full(s, 1e30);  // written
            ops::activation_backward(din, g, x, a);
            check_gradients(std::string(name_of(a)) + " " + s.str(), {{"in", x, din}}, loss, rng,
                            {.directions = 3, .coordinates = 6});
        }
}

TEST_CASE("activations may work in place") {
    Rng rng(32);
    for (Activation a : all_activations) {
        T64 x = randn(Shape{5, 11}, rng, 2.0), g = randn(Shape{5, 11}, rng);
        T64 out(x.shape()), din(x.shape());
        ops::activation_forward(out, x, a);
        ops::activation_backward(din, g, x, a);
        T64 y = clone(x.view());
        ops::activation_forward(y, y, a);
        CHECK(identical(y, out));
        ops::activation_backward(g, g, x, a);  // din over dout
        CHECK(identical(g, din));
    }
}

TEST_CASE_TEMPLATE("activations in low precision agree with the f64 reference", T, float, bf16, f16) {
    Rng rng(33);
    const Shape s{4, 333};
    for (Activation a : all_activations) {
        T64 x = representable_in<T>(randn(s, rng, 2.0)), g = representable_in<T>(randn(s, rng));
        T64 out(s), din(s);
        ops::activation_forward(out, x, a);
        ops::activation_backward(din, g, x, a);
        Tensor<T> out_t(s), din_t(s);
        const Tensor<T> x_t = to_dtype<T>(x.view()), g_t = to_dtype<T>(g.view());
        ops::activation_forward(out_t, x_t, a);
        ops::activation_backward(din_t, g_t, x_t, a);
        // The float formulas are good to a few ulps of float, except for the tail cancellation in
        // 1 + erf / 1 + tanh (absolute |x|·2^-24 < 1e-6 for these inputs); the rest is the rounding.
        CHECK_MESSAGE(max_scaled_error(out_t.cview(), out.cview(), 1e-6, rtol_of<T>) <= 1.0, name_of(a));
        CHECK_MESSAGE(max_scaled_error(din_t.cview(), din.cview(), 1e-6, rtol_of<T>) <= 1.0, name_of(a));
    }
}

// ---- attention -----------------------------------------------------------------------------------

namespace {
struct AttentionCase {
    std::int64_t B, Tq, Tk, H, Dh;
    bool causal;
    int directions = 3, coordinates = 4;  // fewer for the big cases: each costs two forward passes

    Shape q() const { return Shape{B, Tq, H, Dh}; }
    Shape k() const { return Shape{B, Tk, H, Dh}; }
    Shape lse() const { return Shape{B, H, Tq}; }
    double scale() const { return 1.0 / std::sqrt(double(Dh)); }
    std::string str() const {
        return "B=" + std::to_string(B) + " Tq=" + std::to_string(Tq) + " Tk=" + std::to_string(Tk) +
               " H=" + std::to_string(H) + " Dh=" + std::to_string(Dh) + (causal ? " causal" : "");
    }
};

const AttentionCase attention_cases[] = {
    {1, 1, 1, 1, 1, false},           {2, 5, 5, 3, 13, true},         {2, 7, 11, 2, 13, false},
    {1, 9, 4, 1, 8, false},           {2, 77, 77, 2, 64, true, 2, 3}, {1, 257, 257, 2, 80, false, 1, 1},
    {1, 257, 257, 1, 80, true, 1, 1},
};

// Explicit per-head loops: the whole score matrix of one head, masked with −∞, a row softmax by the
// definition (shifted by the row maximum), then the weighted sum of values. (Flat indices rather
// than at(): this runs on 257 tokens and at() checks every index.)
void attention_reference(V64 out, V64 lse, C64 q, C64 k, C64 v, bool causal, double scale) {
    const std::int64_t B = q.size(0), Tq = q.size(1), H = q.size(2), Dh = q.size(3), Tk = k.size(1);
    auto qi = [&](std::int64_t b, std::int64_t t, std::int64_t h, std::int64_t d) {
        return ((b * Tq + t) * H + h) * Dh + d;
    };
    auto ki = [&](std::int64_t b, std::int64_t t, std::int64_t h, std::int64_t d) {
        return ((b * Tk + t) * H + h) * Dh + d;
    };
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t h = 0; h < H; ++h) {
            std::vector<std::vector<double>> S(static_cast<std::size_t>(Tq),
                                               std::vector<double>(static_cast<std::size_t>(Tk)));
            for (std::int64_t i = 0; i < Tq; ++i)
                for (std::int64_t j = 0; j < Tk; ++j) {
                    double s = 0;
                    for (std::int64_t d = 0; d < Dh; ++d) s += q[qi(b, i, h, d)] * k[ki(b, j, h, d)];
                    S[std::size_t(i)][std::size_t(j)] =
                        causal && j > i ? -std::numeric_limits<double>::infinity() : scale * s;
                }
            for (std::int64_t i = 0; i < Tq; ++i) {
                auto& row = S[std::size_t(i)];
                const double m = *std::max_element(row.begin(), row.end());
                double sum = 0;
                for (double& s : row) sum += (s = std::exp(s - m));
                for (double& s : row) s /= sum;
                lse[(b * H + h) * Tq + i] = m + std::log(sum);
                for (std::int64_t d = 0; d < Dh; ++d) {
                    double o = 0;
                    for (std::int64_t j = 0; j < Tk; ++j) o += row[std::size_t(j)] * v[ki(b, j, h, d)];
                    out[qi(b, i, h, d)] = o;
                }
            }
        }
}
}  // namespace

TEST_CASE("attention forward matches explicit per-head loops, lse included") {
    Rng rng(40);
    for (const AttentionCase& c : attention_cases) {
        T64 q = randn(c.q(), rng), k = randn(c.k(), rng), v = randn(c.k(), rng);
        T64 out(c.q()), lse(c.lse()), ref(c.q()), ref_lse(c.lse());
        ops::attention_forward(out, lse, q, k, v, c.causal, c.scale());
        attention_reference(ref, ref_lse, q, k, v, c.causal, c.scale());
        CHECK_MESSAGE(max_scaled_error(out.cview(), ref.cview(), 1e-13, 1e-12) <= 1.0, c.str());
        CHECK_MESSAGE(max_scaled_error(lse.cview(), ref_lse.cview(), 1e-13, 1e-13) <= 1.0, c.str());
        // Inference: no lse, same output.
        T64 out2(c.q());
        ops::attention_forward(out2, {}, q, k, v, c.causal, c.scale());
        CHECK(identical(out2, out));
    }
    // Causal: the first query sees only the first key, so its output is v_0 and its lse s_00.
    T64 q = randn(Shape{1, 3, 2, 4}, rng), k = randn(Shape{1, 3, 2, 4}, rng), v = randn(Shape{1, 3, 2, 4}, rng);
    T64 out(q.shape()), lse(Shape{1, 2, 3});
    ops::attention_forward(out, lse, q, k, v, true, 0.7);
    for (std::int64_t h = 0; h < 2; ++h) {
        double s = 0;
        for (std::int64_t d = 0; d < 4; ++d) {
            CHECK(out.at(0, 0, h, d) == doctest::Approx(v.at(0, 0, h, d)).epsilon(1e-15));
            s += q.at(0, 0, h, d) * k.at(0, 0, h, d);
        }
        CHECK(lse.at(0, h, 0) == doctest::Approx(0.7 * s).epsilon(1e-14));
    }
}

TEST_CASE("attention backward matches finite differences") {
    Rng rng(41);
    for (const AttentionCase& c : attention_cases) {
        T64 q = randn(c.q(), rng), k = randn(c.k(), rng), v = randn(c.k(), rng), g = randn(c.q(), rng);
        auto loss = [&] {
            T64 y(c.q());
            ops::attention_forward(y, {}, q, k, v, c.causal, c.scale());
            return dot(y, g);
        };
        T64 out(c.q()), lse(c.lse());
        ops::attention_forward(out, lse, q, k, v, c.causal, c.scale());
        // Written: start from garbage.
        T64 dq = T64::full(c.q(), 1e30), dk = T64::full(c.k(), 1e30), dv = T64::full(c.k(), 1e30);
        ops::attention_backward(dq, dk, dv, g, q, k, v, out, lse, c.causal, c.scale());
        check_gradients("attention " + c.str(), {{"q", q, dq}, {"k", k, dk}, {"v", v, dv}}, loss, rng,
                        {.directions = c.directions, .coordinates = c.coordinates});
    }
}

TEST_CASE_TEMPLATE("attention in low precision agrees with the f64 reference", T, float, bf16, f16) {
    Rng rng(42);
    for (const AttentionCase& c : {AttentionCase{1, 257, 257, 2, 80, false}, AttentionCase{2, 77, 77, 2, 64, true},
                                   AttentionCase{2, 7, 11, 2, 13, false}}) {
        T64 q = representable_in<T>(randn(c.q(), rng)), k = representable_in<T>(randn(c.k(), rng));
        T64 v = representable_in<T>(randn(c.k(), rng));
        T64 out(c.q()), lse(c.lse());
        ops::attention_forward(out, lse, q, k, v, c.causal, c.scale());
        const Tensor<T> q_t = to_dtype<T>(q.view()), k_t = to_dtype<T>(k.view()), v_t = to_dtype<T>(v.view());
        Tensor<T> out_t(c.q());
        Tensor<float> lse_t(c.lse());
        ops::attention_forward(out_t, lse_t, q_t, k_t, v_t, c.causal, c.scale());
        CHECK_MESSAGE(max_scaled_error(out_t.cview(), out.cview(), atol_low, rtol_of<T>) <= 1.0, c.str());
        // lse is float for every T: float dot products over Dh terms and a sum over Tk exponentials.
        CHECK_MESSAGE(max_scaled_error(lse_t.cview(), lse.cview(), 1e-5, 1e-5) <= 1.0, c.str());

        // Backward in T from the same saved state (out rounded to T, lse in float).
        T64 g = representable_in<T>(randn(c.q(), rng));
        const T64 out_r = to_dtype<double>(out_t.view());
        const T64 lse_r = to_dtype<double>(lse_t.view());
        T64 dq(c.q()), dk(c.k()), dv(c.k());
        ops::attention_backward(dq, dk, dv, g, q, k, v, out_r, lse_r, c.causal, c.scale());
        Tensor<T> dq_t(c.q()), dk_t(c.k()), dv_t(c.k());
        ops::attention_backward(dq_t, dk_t, dv_t, to_dtype<T>(g.view()), q_t, k_t, v_t, out_t, lse_t, c.causal,
                                c.scale());
        // Gradients are sums over up to 257 keys/queries of O(1) terms with cancellation: float
        // accumulation error ~ sqrt(T)·2^-24·|terms| on top of the final rounding.
        CHECK_MESSAGE(max_scaled_error(dq_t.cview(), dq.cview(), 1e-4, rtol_of<T>) <= 1.0, c.str());
        CHECK_MESSAGE(max_scaled_error(dk_t.cview(), dk.cview(), 1e-4, rtol_of<T>) <= 1.0, c.str());
        CHECK_MESSAGE(max_scaled_error(dv_t.cview(), dv.cview(), 1e-4, rtol_of<T>) <= 1.0, c.str());
    }
}

// ---- element-wise --------------------------------------------------------------------------------

TEST_CASE("add, add_inplace and scale_inplace, aliasing included") {
    Rng rng(50);
    const Shape s{3, 257, 13};
    T64 a = randn(s, rng), b = randn(s, rng), out(s);
    ops::add(out, a, b);
    for (std::int64_t i = 0; i < a.numel(); ++i) REQUIRE(out[i] == a[i] + b[i]);
    T64 a2 = clone(a.view()), b2 = clone(b.view());
    ops::add(a2, a2, b);  // out over a
    ops::add(b2, a, b2);  // out over b
    CHECK(identical(a2, out));
    CHECK(identical(b2, out));
    T64 acc = clone(a.view());
    ops::add_inplace(acc, b);
    CHECK(identical(acc, out));
    ops::scale_inplace(acc, -0.5);
    for (std::int64_t i = 0; i < a.numel(); ++i) REQUIRE(acc[i] == -0.5 * (a[i] + b[i]));

    // bf16: the sum in float, rounded once.
    const Tensor<bf16> ab = to_dtype<bf16>(a.view()), bb = to_dtype<bf16>(b.view());
    Tensor<bf16> sum(s);
    ops::add(sum, ab, bb);
    for (std::int64_t i = 0; i < a.numel(); ++i) REQUIRE(sum[i].bits == bf16(float(ab[i]) + float(bb[i])).bits);
    ops::scale_inplace(sum, 3.0);
    CHECK(float(sum[7]) == float(bf16(3.0f * float(bf16(float(ab[7]) + float(bb[7]))))));
}

// ---- shape errors --------------------------------------------------------------------------------

TEST_CASE("the transformer ops name the op and both shapes on a mismatch") {
    Tensor<float> x(Shape{2, 3, 13}), y(Shape{2, 3, 13}), w(Shape{13}), w12(Shape{12}), mean(Shape{6}), rstd(Shape{6});
    check_mentions(shape_error_of([&] { ops::layernorm_forward(y, mean, rstd, x, w12, w); }),
                   {"layernorm_forward", "weight", "[12]", "[13]", "[2, 3, 13]"});
    Tensor<float> y2(Shape{2, 3, 12});
    check_mentions(shape_error_of([&] { ops::layernorm_forward(y2, mean, rstd, x, w, w); }),
                   {"layernorm_forward", "out", "[2, 3, 12]", "[2, 3, 13]"});
    Tensor<float> mean5(Shape{5});
    check_mentions(shape_error_of([&] { ops::layernorm_forward(y, mean5, rstd, x, w, w); }),
                   {"layernorm_forward", "mean", "[5]", "[6]"});
    check_mentions(shape_error_of([&] { ops::layernorm_forward(y, mean, {}, x, w, w); }),
                   {"layernorm_forward", "rstd"});
    check_mentions(shape_error_of([&] { ops::layernorm_backward(y, w, w12, y, x, w, mean, rstd); }),
                   {"layernorm_backward", "dbias", "[12]", "[13]"});
    check_mentions(shape_error_of([&] { ops::layernorm_backward(y, w, w, y, x, w, {}, rstd); }),
                   {"layernorm_backward", "mean", "empty"});

    Tensor<float> s5(Shape{3, 5}), s6(Shape{3, 6});
    check_mentions(shape_error_of([&] { ops::softmax_forward(s5, s6); }), {"softmax_forward", "[3, 5]", "[3, 6]"});
    check_mentions(shape_error_of([&] { ops::softmax_backward(s5, s5, s6); }),
                   {"softmax_backward", "out", "[3, 5]", "[3, 6]"});
    check_mentions(shape_error_of([&] { ops::activation_forward(s5, s6, Activation::gelu_erf); }),
                   {"activation_forward", "[3, 5]", "[3, 6]"});
    check_mentions(shape_error_of([&] { ops::activation_backward(s5, s6, s5, Activation::gelu_erf); }),
                   {"activation_backward", "dout", "[3, 5]", "[3, 6]"});
    check_mentions(shape_error_of([&] { ops::add(s5, s5, s6); }), {"add", "b", "[3, 5]", "[3, 6]"});
    check_mentions(shape_error_of([&] { ops::add_inplace(s5, s6); }), {"add_inplace", "[3, 5]", "[3, 6]"});

    Tensor<float> q(Shape{1, 4, 2, 8}), k(Shape{1, 6, 2, 8}), k3(Shape{1, 6, 3, 8}), lse(Shape{1, 2, 4});
    Tensor<float> o(Shape{1, 4, 2, 8});
    check_mentions(shape_error_of([&] { ops::attention_forward(o, lse, q, k3, k3, false, 1.0); }),
                   {"attention_forward", "[1, 4, 2, 8]", "[1, 6, 3, 8]"});
    check_mentions(shape_error_of([&] { ops::attention_forward(o, lse, q, k, k, true, 1.0); }),
                   {"attention_forward", "causal", "[1, 4, 2, 8]", "[1, 6, 2, 8]"});
    check_mentions(shape_error_of([&] { ops::attention_forward(o, lse, q, k, k3, false, 1.0); }),
                   {"attention_forward", "v", "[1, 6, 3, 8]", "[1, 6, 2, 8]"});
    Tensor<float> lse_bad(Shape{1, 4, 2});
    check_mentions(shape_error_of([&] { ops::attention_forward(o, lse_bad, q, k, k, false, 1.0); }),
                   {"attention_forward", "lse", "[1, 4, 2]", "[1, 2, 4]"});
    Tensor<float> dk(Shape{1, 6, 2, 8}), dk_bad(Shape{1, 5, 2, 8});
    check_mentions(shape_error_of([&] { ops::attention_backward(o, dk_bad, dk, o, q, k, k, o, lse, false, 1.0); }),
                   {"attention_backward", "dk", "[1, 5, 2, 8]", "[1, 6, 2, 8]"});
    check_mentions(shape_error_of([&] { ops::attention_backward(o, dk, dk, o, q, k, k, o, {}, false, 1.0); }),
                   {"attention_backward", "lse", "empty"});
}
