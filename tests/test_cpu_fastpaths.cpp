// The CPU backend's f32 fast paths against the readable references and against double precision:
// blocked attention (cpu/attention_blocked.hpp) and the eight-lane exp / GELU family
// (cpu/vector_math.hpp), on the awkward shapes (257 tokens with head dim 80, 77 causal tokens, Tq !=
// Tk, batch 1, odd widths, many query tiles) and over the whole range of the element-wise inputs
// (tails, overflow, NaN) — both the AVX2 code (where the CPU has it) and the portable fallback.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numbers>
#include <pickscore/cpu/attention.hpp>
#include <pickscore/cpu/attention_blocked.hpp>
#include <pickscore/cpu/vector_math.hpp>
#include <pickscore/ops/activation.hpp>
#include <pickscore/ops/attention.hpp>
#include <string>
#include <vector>

#include "support/gradcheck.hpp"

using namespace pickscore;
using namespace pickscore::test;
using ops::Activation;

namespace {

using T32 = Tensor<float, Cpu>;

T32 to_f32(const T64& x) { return to_dtype<float>(x.view()); }
T64 to_f64(const TensorView<const float, Cpu>& x) { return to_dtype<double>(x); }

bool identical(const TensorView<const float, Cpu>& a, const TensorView<const float, Cpu>& b) {
    if (a.shape() != b.shape()) return false;
    for (std::int64_t i = 0; i < a.numel(); ++i)
        if (!(a[i] == b[i]) && !(std::isnan(a[i]) && std::isnan(b[i]))) return false;
    return true;
}

// Largest |a − exact| over all elements.
double max_abs_error(const TensorView<const float, Cpu>& a, const TensorView<const double, Cpu>& exact) {
    REQUIRE(a.shape() == exact.shape());
    double worst = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        const double e = std::abs(double(a[i]) - exact[i]);
        if (std::isnan(e)) return INFINITY;
        worst = std::max(worst, e);
    }
    return worst;
}

// ---- attention -----------------------------------------------------------------------------------

struct Case {
    std::int64_t B, Tq, Tk, H, Dh;
    bool causal;
    std::int64_t tile_floats = cpu::kAttentionTileFloats;
    Shape q() const { return Shape{B, Tq, H, Dh}; }
    Shape k() const { return Shape{B, Tk, H, Dh}; }
    Shape lse() const { return Shape{B, H, Tq}; }
    double scale() const { return 1.0 / std::sqrt(double(Dh)); }
    std::string str() const {
        return "B=" + std::to_string(B) + " Tq=" + std::to_string(Tq) + " Tk=" + std::to_string(Tk) +
               " H=" + std::to_string(H) + " Dh=" + std::to_string(Dh) + (causal ? " causal" : "") +
               " tile=" + std::to_string(tile_floats);
    }
};

const Case cases[] = {
    {1, 257, 257, 3, 80, false},        // ViT-H/14: 257 tokens, head dim 80 (one tile per head)
    {2, 77, 77, 2, 64, true},           // the text tower: 77 causal tokens
    {1, 77, 77, 1, 13, true, 16 * 80},  // causal over 5 tiles of 16 rows (backward: 10 of 8)
    {2, 7, 11, 3, 13, false},           // Tq < Tk, odd head dim
    {1, 19, 5, 2, 24, false},           // Tq > Tk
    {1, 300, 131, 1, 9, false, 4000},   // Tq != Tk over 12 tiles of 25 rows (backward: 24 of 13)
    {1, 1, 1, 1, 1, false},             // the smallest
    {1, 1, 1, 1, 1, true},
    {3, 33, 33, 5, 7, true, 300},  // odd everything: 6 tiles of 6 rows (backward: 11 of 3)
};

// What the double reference gives for the f32 inputs (exactly representable in double).
struct Exact {
    T64 out, lse, dq, dk, dv;
};

Exact exact_of(const Case& c, const T32& q, const T32& k, const T32& v, const T32& g) {
    Exact e{T64(c.q()), T64(c.lse()), T64(c.q()), T64(c.k()), T64(c.k())};
    const T64 q64 = to_f64(q.cview()), k64 = to_f64(k.cview()), v64 = to_f64(v.cview()), g64 = to_f64(g.cview());
    cpu::attention_forward<double>(e.out.data(), e.lse.data(), q64.data(), k64.data(), v64.data(), c.B, c.Tq, c.Tk, c.H,
                                   c.Dh, c.causal, c.scale());
    cpu::attention_backward<double>(e.dq.data(), e.dk.data(), e.dv.data(), g64.data(), q64.data(), k64.data(),
                                    v64.data(), e.out.data(), e.lse.data(), c.B, c.Tq, c.Tk, c.H, c.Dh, c.causal,
                                    c.scale());
    return e;
}

}  // namespace

TEST_CASE("blocked attention forward: the reference's values to f32 rounding, lse included") {
    Rng rng(700);
    for (const Case& c : cases) {
        const T32 q = to_f32(randn(c.q(), rng)), k = to_f32(randn(c.k(), rng)), v = to_f32(randn(c.k(), rng));
        const T32 g = to_f32(randn(c.q(), rng));
        const Exact e = exact_of(c, q, k, v, g);
        // Written, not accumulated: start from NaN.
        T32 out = T32::full(c.q(), NAN), lse = T32::full(c.lse(), NAN);
        cpu::attention_forward_blocked(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.H, c.Dh,
                                       c.causal, c.scale(), c.tile_floats);
        T32 ref(c.q()), ref_lse(c.lse());
        cpu::attention_forward<float>(ref.data(), ref_lse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.H,
                                      c.Dh, c.causal, c.scale());
        // The scores are f32 dot products of Dh ≤ 80 terms of size ~1 (error ~ sqrt(Dh)·2^-24·|q||k|
        // ≈ 1e-6 here), an absolute error that carries into P, lse and out (averages of N(0,1)
        // values, |out| < 1): 1e-5 absolute is ten times that. The reference in f32 makes errors of
        // the same kind, so the blocked path may be at most twice as far from the exact values as
        // the reference is (plus one float ulp of the outputs, for cases where both are near exact).
        const double err = max_abs_error(out.cview(), e.out.cview());
        const double ref_err = max_abs_error(ref.cview(), e.out.cview());
        const double lse_err = max_abs_error(lse.cview(), e.lse.cview());
        const double ref_lse_err = max_abs_error(ref_lse.cview(), e.lse.cview());
        CHECK_MESSAGE(err <= 1e-5, c.str() << ": out error " << err);
        CHECK_MESSAGE(err <= 2 * ref_err + 1e-7, c.str() << ": out error " << err << ", reference's " << ref_err);
        CHECK_MESSAGE(lse_err <= 1e-5, c.str() << ": lse error " << lse_err);
        CHECK_MESSAGE(lse_err <= 2 * ref_lse_err + 1e-6,
                      c.str() << ": lse error " << lse_err << ", reference's " << ref_lse_err);
        // Inference (no lse) computes the same output.
        T32 out2(c.q());
        cpu::attention_forward_blocked(out2.data(), nullptr, q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.H, c.Dh,
                                       c.causal, c.scale(), c.tile_floats);
        CHECK_MESSAGE(identical(out2.cview(), out.cview()), c.str());
    }
}

TEST_CASE("blocked attention backward: the reference's gradients to f32 rounding, all written") {
    Rng rng(701);
    for (const Case& c : cases) {
        const T32 q = to_f32(randn(c.q(), rng)), k = to_f32(randn(c.k(), rng)), v = to_f32(randn(c.k(), rng));
        const T32 g = to_f32(randn(c.q(), rng));
        const Exact e = exact_of(c, q, k, v, g);
        T32 out(c.q()), lse(c.lse());
        cpu::attention_forward_blocked(out.data(), lse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.H, c.Dh,
                                       c.causal, c.scale(), c.tile_floats);
        T32 dq = T32::full(c.q(), NAN), dk = T32::full(c.k(), NAN), dv = T32::full(c.k(), NAN);
        cpu::attention_backward_blocked(dq.data(), dk.data(), dv.data(), g.data(), q.data(), k.data(), v.data(),
                                        out.data(), lse.data(), c.B, c.Tq, c.Tk, c.H, c.Dh, c.causal, c.scale(),
                                        c.tile_floats);
        T32 rq(c.q()), rk(c.k()), rv(c.k());
        cpu::attention_backward<float>(rq.data(), rk.data(), rv.data(), g.data(), q.data(), k.data(), v.data(),
                                       out.data(), lse.data(), c.B, c.Tq, c.Tk, c.H, c.Dh, c.causal, c.scale());
        // Gradients are sums over up to 300 queries or keys of O(1) terms that partly cancel: f32
        // accumulation errors ~ sqrt(T)·2^-24·Σ|terms| on top of the forward's; 1e-4 absolute, and
        // at most twice the reference's own error (plus 1e-6 for cases where both are near exact).
        const struct {
            const char* name;
            const T32& got;
            const T32& ref;
            const T64& exact;
        } grads[] = {{"dq", dq, rq, e.dq}, {"dk", dk, rk, e.dk}, {"dv", dv, rv, e.dv}};
        for (const auto& gr : grads) {
            const double err = max_abs_error(gr.got.cview(), gr.exact.cview());
            const double ref_err = max_abs_error(gr.ref.cview(), gr.exact.cview());
            CHECK_MESSAGE(err <= 1e-4, c.str() << ": " << gr.name << " error " << err);
            CHECK_MESSAGE(err <= 2 * ref_err + 1e-6,
                          c.str() << ": " << gr.name << " error " << err << ", reference's " << ref_err);
        }
    }
}

TEST_CASE("blocked attention: no queries, and keys no query sees, get zero gradients") {
    // Tq = 0: nothing to compute forward, and dk = dv = 0.
    const Case none{2, 0, 6, 2, 5, false};
    Rng rng(702);
    const T32 k = to_f32(randn(none.k(), rng)), v = to_f32(randn(none.k(), rng));
    T32 dk = T32::full(none.k(), NAN), dv = T32::full(none.k(), NAN);
    cpu::attention_backward_blocked(nullptr, dk.data(), dv.data(), nullptr, nullptr, k.data(), v.data(), nullptr,
                                    nullptr, none.B, none.Tq, none.Tk, none.H, none.Dh, false, 1.0);
    for (std::int64_t i = 0; i < dk.numel(); ++i) REQUIRE((dk[i] == 0.0f && dv[i] == 0.0f));
    // Causal with Tq < Tk (the cpu functions allow it; ops do not): keys past the last query.
    const Case c{1, 4, 9, 2, 3, true};
    const T32 q = to_f32(randn(c.q(), rng)), k2 = to_f32(randn(c.k(), rng)), v2 = to_f32(randn(c.k(), rng));
    const T32 g = to_f32(randn(c.q(), rng));
    const Exact e = exact_of(c, q, k2, v2, g);
    T32 out(c.q()), lse(c.lse());
    cpu::attention_forward_blocked(out.data(), lse.data(), q.data(), k2.data(), v2.data(), c.B, c.Tq, c.Tk, c.H, c.Dh,
                                   c.causal, c.scale());
    CHECK(max_abs_error(out.cview(), e.out.cview()) <= 1e-6);  // 3-term dot products
    T32 dq = T32::full(c.q(), NAN), dk2 = T32::full(c.k(), NAN), dv2 = T32::full(c.k(), NAN);
    cpu::attention_backward_blocked(dq.data(), dk2.data(), dv2.data(), g.data(), q.data(), k2.data(), v2.data(),
                                    out.data(), lse.data(), c.B, c.Tq, c.Tk, c.H, c.Dh, c.causal, c.scale());
    CHECK(max_abs_error(dq.cview(), e.dq.cview()) <= 1e-5);
    CHECK(max_abs_error(dk2.cview(), e.dk.cview()) <= 1e-5);
    CHECK(max_abs_error(dv2.cview(), e.dv.cview()) <= 1e-5);
    for (std::int64_t j = 4; j < 9; ++j)
        for (std::int64_t i = 0; i < 2 * 3; ++i) REQUIRE((dk2[j * 6 + i] == 0.0f && dv2[j * 6 + i] == 0.0f));
}

TEST_CASE("blocked attention gives the same bits for any thread count") {
    // Each (batch, head, tile) is one task whose products run on one thread, and sgemm sums every
    // element in the same order however it splits C, so the thread count changes no bit.
    const Case c{2, 77, 77, 3, 64, true, 16 * 80};
    Rng rng(703);
    const T32 q = to_f32(randn(c.q(), rng)), k = to_f32(randn(c.k(), rng)), v = to_f32(randn(c.k(), rng));
    const T32 g = to_f32(randn(c.q(), rng));
    auto run = [&](int threads) {
        set_num_threads(threads);
        std::vector<T32> r;
        for (const Shape& s : {c.q(), c.lse(), c.q(), c.k(), c.k()}) r.emplace_back(s);
        cpu::attention_forward_blocked(r[0].data(), r[1].data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.H,
                                       c.Dh, c.causal, c.scale(), c.tile_floats);
        cpu::attention_backward_blocked(r[2].data(), r[3].data(), r[4].data(), g.data(), q.data(), k.data(), v.data(),
                                        r[0].data(), r[1].data(), c.B, c.Tq, c.Tk, c.H, c.Dh, c.causal, c.scale(),
                                        c.tile_floats);
        return r;
    };
    const int before = num_threads();
    const auto one = run(1), three = run(3);
    set_num_threads(before);
    for (std::size_t i = 0; i < one.size(); ++i) CHECK(identical(one[i].cview(), three[i].cview()));
}

TEST_CASE("ops::attention_* on f32 run the blocked path") {
    const Case c{1, 257, 257, 2, 80, false};
    Rng rng(704);
    const T32 q = to_f32(randn(c.q(), rng)), k = to_f32(randn(c.k(), rng)), v = to_f32(randn(c.k(), rng));
    const T32 g = to_f32(randn(c.q(), rng));
    T32 out(c.q()), lse(c.lse()), bout(c.q()), blse(c.lse());
    ops::attention_forward(out.view(), lse.view(), q.cview(), k.cview(), v.cview(), false, c.scale());
    cpu::attention_forward_blocked(bout.data(), blse.data(), q.data(), k.data(), v.data(), c.B, c.Tq, c.Tk, c.H, c.Dh,
                                   false, c.scale());
    CHECK(identical(out.cview(), bout.cview()));
    CHECK(identical(lse.cview(), blse.cview()));
    T32 dq(c.q()), dk(c.k()), dv(c.k()), bq(c.q()), bk(c.k()), bv(c.k());
    ops::attention_backward(dq.view(), dk.view(), dv.view(), g.cview(), q.cview(), k.cview(), v.cview(), out.cview(),
                            lse.cview(), false, c.scale());
    cpu::attention_backward_blocked(bq.data(), bk.data(), bv.data(), g.data(), q.data(), k.data(), v.data(), out.data(),
                                    lse.data(), c.B, c.Tq, c.Tk, c.H, c.Dh, false, c.scale());
    CHECK(identical(dq.cview(), bq.cview()));
    CHECK(identical(dk.cview(), bk.cview()));
    CHECK(identical(dv.cview(), bv.cview()));
}

// ---- exp and the GELU family ---------------------------------------------------------------------

namespace {

// Inputs over the whole range: a dense sweep of [−20, 20], random normals of several scales, and the
// special values (zero, tiny, the exp over/underflow edges, huge, infinite).
std::vector<float> activation_inputs() {
    std::vector<float> x;
    for (int i = -200000; i <= 200000; ++i) x.push_back(float(i) * 1e-4f);
    Rng rng(710);
    for (double sd : {0.3, 1.0, 3.0, 10.0}) {
        const T64 r = randn(Shape{20000}, rng, sd);
        for (std::int64_t i = 0; i < r.numel(); ++i) x.push_back(float(r[i]));
    }
    for (float s : {0.0f, 1e-30f, 1e-8f, 1e-3f, 0.7499f, 0.75f, 1.0606f, 1.0607f, 13.0f, 13.5f, 40.0f, 51.3f, 52.0f,
                    88.0f, 100.0f, 1e10f, 3e38f})
        for (float sign : {1.0f, -1.0f}) x.push_back(sign * s);
    return x;
}

double activation_exact(Activation a, double x) {
    switch (a) {
        case Activation::gelu_erf:
            return 0.5 * x * std::erfc(-x / std::numbers::sqrt2);
        case Activation::gelu_tanh: {
            const double u = std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * x * x * x);
            return x / (1.0 + std::exp(-2.0 * u));
        }
        case Activation::quick_gelu:
            return x / (1.0 + std::exp(-1.702 * x));
    }
    return NAN;
}

// f'(x), and the sum of the magnitudes of the terms it is formed from (its natural scale: near its
// zero, x ≈ −0.75, the terms cancel).
struct Grad {
    double value, scale;
};
Grad activation_grad_exact(Activation a, double x) {
    switch (a) {
        case Activation::gelu_erf: {
            const double cdf = 0.5 * std::erfc(-x / std::numbers::sqrt2);
            const double xpdf = x * std::exp(-0.5 * x * x) * 0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2;
            return {cdf + xpdf, std::abs(cdf) + std::abs(xpdf)};
        }
        case Activation::gelu_tanh: {
            const double c = std::sqrt(2.0 / std::numbers::pi), u = c * (x + 0.044715 * x * x * x);
            const double s = 1.0 / (1.0 + std::exp(-2.0 * u));
            const double t = 2.0 * x * s * (1.0 - s) * c * (1.0 + 3 * 0.044715 * x * x);
            return {s + t, std::abs(s) + std::abs(t)};
        }
        case Activation::quick_gelu: {
            const double s = 1.0 / (1.0 + std::exp(-1.702 * x)), t = 1.702 * x * s * (1.0 - s);
            return {s + t, std::abs(s) + std::abs(t)};
        }
    }
    return {NAN, NAN};
}

std::string name_of(Activation a) {
    return a == Activation::gelu_erf ? "gelu_erf" : a == Activation::gelu_tanh ? "gelu_tanh" : "quick_gelu";
}

// The implementations this CPU can run: the portable one always, the AVX2 one where supported.
struct ElementwiseImpl {
    std::string name;
    std::function<void(float*, const float*, std::int64_t, Activation)> forward;
    std::function<void(float*, const float*, const float*, std::int64_t, Activation)> backward;
    std::function<float(float*, std::int64_t, float)> exp_shifted_sum;
};

std::vector<ElementwiseImpl> elementwise_impls() {
    namespace vm = cpu::vector_math_detail;
    std::vector<ElementwiseImpl> impls;
    impls.push_back(
        {"portable", vm::activation_forward_portable, vm::activation_backward_portable, vm::exp_shifted_sum_portable});
#ifdef PICKSCORE_SGEMM_X86
    if (cpu::vector_math_available())
        impls.push_back(
            {"avx2",
             [](float* o, const float* i, std::int64_t n, Activation a) { vm::activation_forward_avx2(o, i, n, a); },
             [](float* d, const float* g, const float* i, std::int64_t n, Activation a) {
                 vm::activation_backward_avx2(d, g, i, n, a);
             },
             [](float* x, std::int64_t n, float s) { return vm::exp_shifted_sum_avx2(x, n, s); }});
#endif
    return impls;
}

}  // namespace

TEST_CASE("vector exp: within 2 ulp of exp over the float range, inf above FLT_MAX, NaN kept") {
    std::vector<float> x;
    for (int i = -1000000; i <= 1000000; ++i) x.push_back(float(i) * 9e-5f);  // [−90, 90]
    for (float s : {-87.33654f, -87.3365f, -87.3f, -1e30f, 88.72f, 88.7228f, 88.7229f, 1e30f, -0.0f, 1e-40f})
        x.push_back(s);
    x.push_back(-std::numeric_limits<float>::infinity());
    x.push_back(std::numeric_limits<float>::infinity());
    for (const ElementwiseImpl& impl : elementwise_impls()) {
        std::vector<float> y = x;
        const float sum = impl.exp_shifted_sum(y.data(), std::int64_t(y.size()), 0.0f);
        double worst_ulp = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double e = std::exp(double(x[i]));
            if (e < double(std::numeric_limits<float>::min())) {
                // Below FLT_MIN: flushed to 0 (AVX2) or a subnormal (std::exp).
                REQUIRE_MESSAGE((y[i] >= 0.0f && y[i] <= std::numeric_limits<float>::min()),
                                impl.name << ": exp(" << x[i] << ") = " << y[i]);
            } else if (e > double(std::numeric_limits<float>::max())) {
                REQUIRE_MESSAGE(y[i] == std::numeric_limits<float>::infinity(),
                                impl.name << ": exp(" << x[i] << ") = " << y[i]);
            } else {
                const double ulp = std::ldexp(1.0, std::ilogb(e) - 23);
                worst_ulp = std::max(worst_ulp, std::abs(double(y[i]) - e) / ulp);
            }
        }
        MESSAGE(impl.name << " exp: worst error " << worst_ulp << " ulp");
        CHECK(worst_ulp <= 2.0);
        CHECK(std::isinf(sum));  // the exp of +inf and of values past 88.72 are in it
        // A shifted finite row sums like the exact exponentials (f32 sum of 1000 terms of size ≤ 1:
        // relative error below 1e-5); NaN stays NaN.
        std::vector<float> row(1000), nan_row{1.0f, NAN, 2.0f};
        for (std::size_t i = 0; i < row.size(); ++i) row[i] = float(i % 37) * 0.25f;
        double exact = 0;
        for (float r : row) exact += std::exp(double(r) - 9.0);
        const float s = impl.exp_shifted_sum(row.data(), std::int64_t(row.size()), 9.0f);
        CHECK(std::abs(s - exact) <= 1e-5 * exact);
        impl.exp_shifted_sum(nan_row.data(), 3, 0.0f);
        CHECK(std::isnan(nan_row[1]));
        CHECK(nan_row[0] == doctest::Approx(std::exp(1.0)).epsilon(1e-6));
    }
    std::vector<float> row(1000);
    for (std::size_t i = 0; i < row.size(); ++i) row[i] = float(i % 37) * 0.25f - float(i) * 1e-4f;
    CHECK(cpu::max_of(row.data(), std::int64_t(row.size())) == row[36]);
    CHECK(cpu::max_of(row.data() + 37, 5) == row[41]);
}

TEST_CASE("vector GELU family: forward and backward within a few rounding units of double precision") {
    const std::vector<float> x = activation_inputs();
    const std::int64_t n = std::int64_t(x.size());
    const Tensor<float> in = [&] {
        Tensor<float> t(Shape{n});
        std::copy(x.begin(), x.end(), t.data());
        return t;
    }();
    for (const ElementwiseImpl& impl : elementwise_impls())
        for (Activation a : {Activation::gelu_erf, Activation::gelu_tanh, Activation::quick_gelu}) {
            Tensor<float> y(Shape{n}), ref(Shape{n}), dy(Shape{n}), dref(Shape{n});
            const Tensor<float> ones = Tensor<float>::full(Shape{n}, 1.0f);
            impl.forward(y.data(), in.data(), n, a);
            cpu::activation_forward<float>(ref.data(), in.data(), n, a);
            impl.backward(dy.data(), ones.data(), in.data(), n, a);
            cpu::activation_backward<float>(dref.data(), ones.data(), in.data(), n, a);
            // Error measure, in units of u = 2^-24 (half an f32 ulp of 1): a result whose error is C·u
            // relative, after an input perturbed by C·u relative, has
            //   |got − f(x)| ≤ C·u·(|f(x)| + |x·f'(x)|) + 1e-30          (forward)
            //   |got − f'(x)| ≤ C·u·(Σ|terms of f'| + |x·f''(x)|) + 1e-30 (backward)
            // |x·f'| matters in the tails, where f(x) ≈ x·e^−g(x) and rounding the argument g(x) (e.g. x²/2)
            // shifts the result by |x·g'(x)|·u relative. 1e-30 absolute covers the far tails, where Φ or
            // σ and then the results underflow (below FLT_MIN they are flushed to 0). The largest C over
            // the inputs is reported and bounded.
            const double u = 0x1p-24, floor = 1e-30;
            double worst = 0, worst_ref = 0, worst_grad = 0, worst_grad_ref = 0;
            for (std::int64_t i = 0; i < n; ++i) {
                const double xi = x[std::size_t(i)];
                if (!std::isfinite(xi) || std::abs(xi) > 1e9) continue;  // the exact formulas overflow
                const double f = activation_exact(a, xi);
                const Grad fp = activation_grad_exact(a, xi);
                const double h = 1e-5 * std::max(1.0, std::abs(xi));
                const double fpp =
                    (activation_grad_exact(a, xi + h).value - activation_grad_exact(a, xi - h).value) / (2 * h);
                const double scale_f = u * (std::abs(f) + std::abs(xi * fp.value));
                const double scale_g = u * (fp.scale + std::abs(xi * fpp));
                auto units = [&](double got, double exact, double scale) {
                    const double e = std::abs(got - exact);
                    return e <= floor ? 0.0 : (e - floor) / scale;
                };
                worst = std::max(worst, units(y[i], f, scale_f));
                worst_ref = std::max(worst_ref, units(ref[i], f, scale_f));
                worst_grad = std::max(worst_grad, units(dy[i], fp.value, scale_g));
                worst_grad_ref = std::max(worst_grad_ref, units(dref[i], fp.value, scale_g));
            }
            MESSAGE(impl.name << " " << name_of(a) << ": forward within " << worst
                              << " u (the f32 reference: " << worst_ref << " u), gradient within " << worst_grad
                              << " u (reference: " << worst_grad_ref << " u)");
            // 8 u (measured: under 5): the polynomial fits are good to 2.5e-8 (0.4 u), exp to one ulp
            // (2 u), and the few roundings of the products, sums and the 1 − erfc/2 step add a few u more.
            CHECK_MESSAGE(worst <= 8, impl.name << " " << name_of(a));
            CHECK_MESSAGE(worst_grad <= 8, impl.name << " " << name_of(a));
            // Special values: x = 0 gives 0; +inf gives +inf (f(x) → x); NaN stays NaN.
            Tensor<float> sp(Shape{3}), out(Shape{3});
            sp[0] = 0.0f;
            sp[1] = std::numeric_limits<float>::infinity();
            sp[2] = NAN;
            impl.forward(out.data(), sp.data(), 3, a);
            CHECK(out[0] == 0.0f);
            CHECK(out[1] == std::numeric_limits<float>::infinity());
            CHECK(std::isnan(out[2]));
        }
}

TEST_CASE("vector GELU family: in place, any length, the same value wherever an element sits") {
    Rng rng(711);
    for (Activation a : {Activation::gelu_erf, Activation::gelu_tanh, Activation::quick_gelu})
        for (std::int64_t n : {1, 7, 8, 9, 13, 64, 1000, 70001}) {  // 70001: several tasks of the pool
            const T32 x = to_f32(randn(Shape{n}, rng, 2.0)), g = to_f32(randn(Shape{n}, rng));
            T32 y(Shape{n}), d(Shape{n});
            cpu::activation_forward_vectorized(y.data(), x.data(), n, a);
            cpu::activation_backward_vectorized(d.data(), g.data(), x.data(), n, a);
            // In place (out over in, din over dout), through ops:: as the model calls it.
            T32 yi = clone(x.view()), di = clone(g.view());
            ops::activation_forward(yi.view(), yi.cview(), a);
            ops::activation_backward(di.view(), di.cview(), x.cview(), a);
            CHECK(identical(yi.cview(), y.cview()));
            CHECK(identical(di.cview(), d.cview()));
            // Element by element (each in its own zero-padded register): the same values.
            for (std::int64_t i = 0; i < std::min<std::int64_t>(n, 20); ++i) {
                float yi1 = 0, di1 = 0;
                cpu::activation_forward_vectorized(&yi1, x.data() + i, 1, a);
                cpu::activation_backward_vectorized(&di1, g.data() + i, x.data() + i, 1, a);
                REQUIRE(yi1 == y[i]);
                REQUIRE(di1 == d[i]);
            }
        }
}
