// The fused ops of the CPU backend, which are the references of the fused CUDA kernels:
// add_layernorm_forward (the residual join of a pre-LN block and the LayerNorm after it), and the
// flat optimizer path of ops/optim.hpp (adamw_step_flat with its bf16 working copy and on-the-fly
// clipping, the norm left in a one-element tensor). Each against the unfused composition it
// replaces (the same arithmetic: identical results), the fused backward against finite
// differences, the aliasing promises, and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <pickscore/ops/elementwise.hpp>
#include <pickscore/ops/layernorm.hpp>
#include <pickscore/ops/optim.hpp>
#include <string>
#include <vector>

#include "support/gradcheck.hpp"

using namespace pickscore;
using namespace pickscore::test;
using ops::Accumulate;

namespace {

template <class E = ShapeError>
std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "(no error thrown)";
}

void check_mentions(const std::string& msg, std::initializer_list<const char*> parts) {
    for (const char* p : parts)
        CHECK_MESSAGE(msg.find(p) != std::string::npos, "'" << msg << "' does not mention " << p);
}

// Same values, bit for bit (NaN equal to NaN of the same payload).
template <class A, class B>
bool same_bits(const TensorView<A>& a, const TensorView<B>& b) {
    static_assert(sizeof(A) == sizeof(B));
    if (a.shape() != b.shape()) return false;
    return std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

const Shape fused_shapes[] = {Shape{1, 13}, Shape{2, 257, 13}, Shape{1, 77, 80},
                              Shape{3, 1},  Shape{5},          Shape{2, 3, 33}};

}  // namespace

// ---- add_layernorm_forward ---------------------------------------------------------------------

TEST_CASE_TEMPLATE("add_layernorm_forward is add followed by layernorm_forward", T, double, float, bf16) {
    Rng rng(90);
    for (const Shape& s : fused_shapes) {
        const std::int64_t C = s.last(), R = s.rows();
        const Tensor<T> a = to_dtype<T>(randn(s, rng, 1.5, 0.5).view()), b = to_dtype<T>(randn(s, rng).view());
        const Tensor<T> w = to_dtype<T>(randn(Shape{C}, rng).view()), bias = to_dtype<T>(randn(Shape{C}, rng).view());
        // Unfused.
        Tensor<T> resid(s), out(s);
        Tensor<acc_t<T>> mean(Shape{R}), rstd(Shape{R});
        ops::add(resid.view(), a, b);
        ops::layernorm_forward(out.view(), mean.view(), rstd.view(), resid, w, bias);
        // Fused: the same arithmetic, so the same bits.
        Tensor<T> fresid(s), fout(s);
        Tensor<acc_t<T>> fmean(Shape{R}), frstd(Shape{R});
        ops::add_layernorm_forward(fresid.view(), fout.view(), fmean.view(), frstd.view(), a, b, w, bias);
        CHECK_MESSAGE(same_bits(fresid.cview(), resid.cview()), s);
        CHECK_MESSAGE(same_bits(fout.cview(), out.cview()), s);
        CHECK(same_bits(fmean.cview(), mean.cview()));
        CHECK(same_bits(frstd.cview(), rstd.cview()));
        // The residual stream updated in place (resid_out over a, or over b), and inference.
        Tensor<T> x = clone(a.view()), y = clone(b.view()), out2(s), out3(s), out4(s);
        ops::add_layernorm_forward(x.view(), out2.view(), {}, {}, x, b, w, bias);
        ops::add_layernorm_forward(y.view(), out3.view(), {}, {}, a, y, w, bias);
        CHECK(same_bits(x.cview(), resid.cview()));
        CHECK(same_bits(y.cview(), resid.cview()));
        CHECK(same_bits(out2.cview(), out.cview()));
        CHECK(same_bits(out3.cview(), out.cview()));
        if (s.rank() >= 2) {  // statistics shaped like the leading dimensions
            Shape lead;
            for (int i = 0; i + 1 < s.rank(); ++i) lead.push_back(s[i]);
            Tensor<acc_t<T>> m2(lead), r2(lead);
            Tensor<T> resid4(s);
            ops::add_layernorm_forward(resid4.view(), out4.view(), m2.view(), r2.view(), a, b, w, bias);
            CHECK(same_bits(out4.cview(), out.cview()));
            CHECK(std::memcmp(m2.data(), mean.data(), mean.bytes()) == 0);
        }
    }
}

TEST_CASE("add_layernorm_forward matches the textbook formulas in double") {
    Rng rng(91);
    for (const Shape& s : fused_shapes) {
        const std::int64_t C = s.last(), R = s.rows();
        T64 a = randn(s, rng, 2.0, 3.0), b = randn(s, rng), w = randn(Shape{C}, rng), bias = randn(Shape{C}, rng);
        T64 resid(s), out(s), mean(Shape{R}), rstd(Shape{R});
        ops::add_layernorm_forward(resid.view(), out.view(), mean.view(), rstd.view(), a, b, w, bias, 0.1);
        for (std::int64_t r = 0; r < R; ++r) {
            double sum = 0, sum2 = 0;
            for (std::int64_t j = 0; j < C; ++j) {
                const double x = a[r * C + j] + b[r * C + j];
                REQUIRE(resid[r * C + j] == x);
                sum += x;
                sum2 += x * x;
            }
            const double mu = sum / double(C), var = std::max(0.0, sum2 / double(C) - mu * mu);
            const double rs = 1.0 / std::sqrt(var + 0.1);
            // E[x²] − μ² loses about |μ|²/σ² · 2^-53 relative (μ = 3, σ ≈ 2.2): ~1e-15; 1e-12 is ample.
            CHECK(mean[r] == doctest::Approx(mu).epsilon(1e-13));
            CHECK(rstd[r] == doctest::Approx(rs).epsilon(1e-12));
            for (std::int64_t j = 0; j < C; ++j)
                CHECK(out[r * C + j] ==
                      doctest::Approx((resid[r * C + j] - mu) * rs * w[j] + bias[j]).epsilon(1e-12).scale(1.0));
        }
    }
}

// The fused forward's backward is layernorm_backward with Accumulate::yes into the gradient of the
// residual stream, which then reaches both summands: d/da = d/db = dresid + LN-backward(dout).
TEST_CASE("add_layernorm_forward's backward: layernorm_backward accumulating into the residual gradient") {
    Rng rng(92);
    for (const Shape& s : fused_shapes) {
        const std::int64_t C = s.last(), R = s.rows();
        T64 a = randn(s, rng, 1.5, 0.5), b = randn(s, rng), w = randn(Shape{C}, rng), bias = randn(Shape{C}, rng);
        T64 g_resid = randn(s, rng), g_out = randn(s, rng);  // the loss: <g_resid, resid> + <g_out, out>
        auto loss = [&] {
            T64 resid(s), out(s);
            ops::add_layernorm_forward(resid.view(), out.view(), {}, {}, a, b, w, bias);
            return dot(resid, g_resid) + dot(out, g_out);
        };
        T64 resid(s), out(s), mean(Shape{R}), rstd(Shape{R});
        ops::add_layernorm_forward(resid.view(), out.view(), mean.view(), rstd.view(), a, b, w, bias);
        T64 dresid = clone(g_resid.view()), dw = zeros(Shape{C}), db = zeros(Shape{C});
        ops::layernorm_backward(dresid.view(), dw.view(), db.view(), g_out, resid, w, mean, rstd, Accumulate::yes);
        check_gradients("add_layernorm " + s.str(),
                        {{"a", a, dresid}, {"b", b, dresid}, {"weight", w, dw}, {"bias", bias, db}}, loss, rng);
    }
}

TEST_CASE("add_layernorm_forward names the op and both shapes on a mismatch") {
    Tensor<float> a(Shape{2, 3, 13}), b(Shape{2, 3, 13}), b12(Shape{2, 3, 12}), w(Shape{13}), w12(Shape{12});
    Tensor<float> resid(Shape{2, 3, 13}), out(Shape{2, 3, 13}), mean(Shape{6}), rstd(Shape{6}), mean5(Shape{5});
    check_mentions(
        error_of([&] { ops::add_layernorm_forward(resid.view(), out.view(), mean.view(), rstd.view(), a, b12, w, w); }),
        {"add_layernorm_forward", "b", "[2, 3, 12]", "[2, 3, 13]"});
    check_mentions(
        error_of([&] { ops::add_layernorm_forward(resid.view(), out.view(), mean.view(), rstd.view(), a, b, w12, w); }),
        {"add_layernorm_forward", "weight", "[12]", "[13]"});
    check_mentions(
        error_of([&] { ops::add_layernorm_forward(resid.view(), out.view(), mean5.view(), rstd.view(), a, b, w, w); }),
        {"add_layernorm_forward", "mean", "[5]", "[6]"});
    check_mentions(
        error_of([&] { ops::add_layernorm_forward(resid.view(), b12.view(), mean.view(), rstd.view(), a, b, w, w); }),
        {"add_layernorm_forward", "ln_out", "[2, 3, 12]", "[2, 3, 13]"});
}

// ---- the flat optimizer path -------------------------------------------------------------------

namespace {
struct FlatState {
    Tensor<float> p, m, v;
    explicit FlatState(const Tensor<float>& p0)
        : p(clone(p0.view())), m(Tensor<float>::zeros(p0.shape())), v(Tensor<float>::zeros(p0.shape())) {}
    FlatState(const FlatState& o) : p(clone(o.p.view())), m(clone(o.m.view())), v(clone(o.v.view())) {}
};
}  // namespace

TEST_CASE("adamw_step_flat is adamw_step, plus the bf16 copy, in one pass") {
    Rng rng(93);
    ops::AdamWConfig cfg;
    cfg.lr = 1e-3;
    const Shape s{1003};
    Tensor<float> p0(s);
    fill_normal(p0.view(), rng);
    FlatState flat(p0), slot(p0), flat16(p0);
    Tensor<bf16> copy(s);
    for (int t = 1; t <= 3; ++t) {
        Tensor<float> g(s);
        fill_normal(g.view(), rng, 0.0, 0.1);
        const Tensor<bf16> g16 = to_dtype<bf16>(g.view());
        const Tensor<float> g16f = to_dtype<float>(g16.view());  // exactly the bf16 gradient's values
        ops::adamw_step_flat(flat.p.view(), copy.view(), flat.m.view(), flat.v.view(), g.cview(), {}, 0.0, t, cfg);
        ops::adamw_step(ops::AdamWSlot<float>{slot.p, g, slot.m, slot.v}, t, cfg);
        // f32 gradients: the slot path's arithmetic exactly.
        CHECK(same_bits(flat.p.cview(), slot.p.cview()));
        CHECK(same_bits(flat.m.cview(), slot.m.cview()));
        CHECK(same_bits(flat.v.cview(), slot.v.cview()));
        // The working copy is bf16 of the updated master weights, rounded once.
        CHECK(same_bits(copy.cview(), to_dtype<bf16>(flat.p.view()).cview()));
        // bf16 gradients read as their f32 values.
        FlatState ref(flat16);
        ops::adamw_step_flat(flat16.p.view(), {}, flat16.m.view(), flat16.v.view(), g16.cview(), {}, 0.0, t, cfg);
        ops::adamw_step(ops::AdamWSlot<float>{ref.p, g16f, ref.m, ref.v}, t, cfg);
        CHECK(same_bits(flat16.p.cview(), ref.p.cview()));
        CHECK(same_bits(flat16.v.cview(), ref.v.cview()));
    }
    // The step moved the weights (an assertion that could fail if nothing happened).
    CHECK(!same_bits(flat.p.cview(), p0.cview()));
}

TEST_CASE("adamw_step_flat with a norm clips on the fly as clip_grad_norm + adamw_step would") {
    Rng rng(94);
    ops::AdamWConfig cfg;
    cfg.lr = 1e-3;
    const Shape s{777};
    Tensor<float> p0(s), g(s);
    fill_normal(p0.view(), rng);
    fill_normal(g.view(), rng, 0.0, 0.5);   // norm ≈ 14
    for (double max_norm : {1.0, 100.0}) {  // clipped, and not
        CAPTURE(max_norm);
        FlatState fused(p0), unfused(p0);
        Tensor<float> norm(Shape{1}), norm2(Shape{1});
        ops::global_grad_norm(norm.view(), g.cview());
        ops::adamw_step_flat(fused.p.view(), {}, fused.m.view(), fused.v.view(), g.cview(), norm.cview(), max_norm, 1,
                             cfg);
        // Unfused: clip with the same stored-norm rule, then step. f32 gradients: g·coef is
        // rounded to f32 either way, so the results agree bit for bit.
        Tensor<float> gc = clone(g.view());
        ops::clip_grad_norm(norm2.view(), gc.view(), max_norm);
        CHECK(norm2[0] == norm[0]);
        ops::adamw_step(ops::AdamWSlot<float>{unfused.p, gc, unfused.m, unfused.v}, 1, cfg);
        CHECK(same_bits(fused.p.cview(), unfused.p.cview()));
        CHECK(same_bits(fused.m.cview(), unfused.m.cview()));
        CHECK(same_bits(fused.v.cview(), unfused.v.cview()));
        CHECK(same_bits(gc.cview(), g.cview()) == (max_norm == 100.0));  // clipped only when due
    }
    // A non-finite norm skips the step but still writes the copy.
    FlatState st(p0);
    Tensor<float> nan_norm = Tensor<float>::full(Shape{1}, std::numeric_limits<float>::quiet_NaN());
    Tensor<bf16> copy = Tensor<bf16>::full(s, bf16(7.0f));
    ops::adamw_step_flat(st.p.view(), copy.view(), st.m.view(), st.v.view(), g.cview(), nan_norm.cview(), 1.0, 1, cfg);
    CHECK(same_bits(st.p.cview(), p0.cview()));
    CHECK(same_bits(st.m.cview(), Tensor<float>::zeros(s).cview()));
    CHECK(same_bits(copy.cview(), to_dtype<bf16>(p0.view()).cview()));
}

TEST_CASE("the device-buffer norm and clipping: the stored f32 norm, no throw on inf/NaN") {
    Rng rng(95);
    Tensor<float> a(Shape{3, 7}), b(Shape{1000});
    fill_normal(a.view(), rng);
    fill_normal(b.view(), rng, 0.0, 0.1);
    std::vector<TensorView<const float>> cviews{a, b};
    const double norm = ops::global_grad_norm(cviews);
    Tensor<float> n(Shape{1});
    ops::global_grad_norm(n.view(), cviews);
    CHECK(n[0] == float(norm));
    ops::global_grad_norm(n.view(), std::vector<TensorView<const float>>{});
    CHECK(n[0] == 0.0f);

    std::vector<TensorView<float>> views{a, b};
    const auto a0 = clone(a.view());
    ops::clip_grad_norm(n.view(), views, 1.0);
    CHECK(n[0] == float(norm));
    const float coef = float(1.0 / (double(n[0]) + 1e-6));
    for (std::int64_t i = 0; i < a.numel(); ++i) REQUIRE(a[i] == a0[i] * coef);

    b[3] = std::numeric_limits<float>::infinity();
    const auto a1 = clone(a.view());
    ops::clip_grad_norm(n.view(), views, 1.0);  // no throw
    CHECK(std::isinf(n[0]));
    CHECK(same_bits(a.cview(), a1.cview()));
}

TEST_CASE("the flat path checks its arguments") {
    Tensor<float> p(Shape{4}), m(Shape{4}), v(Shape{4}), v3(Shape{3}), g(Shape{4}), norm(Shape{1}), norm2(Shape{2});
    Tensor<bf16> copy5(Shape{5});
    ops::AdamWConfig cfg;
    check_mentions(
        error_of([&] { ops::adamw_step_flat(p.view(), {}, m.view(), v3.view(), g.cview(), {}, 0.0, 1, cfg); }),
        {"adamw_step_flat", "v", "[3]", "[4]"});
    check_mentions(
        error_of([&] { ops::adamw_step_flat(p.view(), copy5.view(), m.view(), v.view(), g.cview(), {}, 0.0, 1, cfg); }),
        {"adamw_step_flat", "param_bf16", "[5]", "[4]"});
    check_mentions(error_of([&] {
                       ops::adamw_step_flat(p.view(), {}, m.view(), v.view(), g.cview(), norm2.cview(), 1.0, 1, cfg);
                   }),
                   {"adamw_step_flat", "grad_norm", "[2]", "[1]"});
    check_mentions(error_of<Error>([&] {
                       ops::adamw_step_flat(p.view(), {}, m.view(), v.view(), g.cview(), norm.cview(), -1.0, 1, cfg);
                   }),
                   {"adamw_step_flat", "max_norm"});
    check_mentions(
        error_of<Error>([&] { ops::adamw_step_flat(p.view(), {}, m.view(), v.view(), g.cview(), {}, 0.0, 0, cfg); }),
        {"adamw_step_flat", "step"});
    check_mentions(error_of([&] { ops::global_grad_norm(norm2.view(), g.view()); }),
                   {"global_grad_norm", "norm", "[2]", "[1]"});
}
