// The CUDA backend of the transformer ops and the optimizer — LayerNorm (plain and fused with the
// residual add; backward written and accumulated), softmax, GELU (erf, tanh) and quick GELU,
// add/add_inplace/scale/fill, f32 <-> bf16 conversion, AdamW over a flat buffer with its bf16
// copy and on-the-fly clipping, the global gradient norm and clipping by a norm kept on the
// device — against the CPU backend, in f32 and bf16, forward and backward, on the CPU tests'
// shapes plus the awkward ones (257 tokens, widths 1, 13, 33, 80, rows too long for the register
// cache, views at odd offsets that defeat the 16-byte accesses, batch 1).
// Runs under PICKSCORE_CUDA_EMULATION in every build, and on a GPU when one is present
// (tests/cuda/, linked with pickscore::cuda).
//
// How results are compared (docs/design.md). The f64 reference is the CPU backend in double on the
// same inputs (rounded to T first), so only the arithmetic differs:
//   - f32: within the bound tests/test_ops_transformer.cpp holds the CPU's own f32 result to
//     against the same f64 reference (stated where used), which also covers the GPU's intrinsics
//     (expf, erff, tanhf: 2 ulps) and nvcc's fused multiply-adds;
//   - bf16: at most twice as far (max over the tensor) from the f64 reference as the CPU backend's
//     own bf16 result, plus half a bf16 ulp (2⁻⁹) of the largest magnitude: where the CPU's
//     rounding lands on the reference, an f32 sum formed in another order may round to the
//     neighbouring bf16 value. A real fault (a wrong index, a missing term, an unwritten element)
//     is far larger;
//   - single roundings of the same f32 operation (add, scale, fill, convert, the residual sum):
//     the same bits as the CPU.
// Outputs are poisoned with NaN (0xFF bytes) before each run, so an element never written shows;
// a NaN where the reference has none fails every comparison.
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include "support/cuda_compare.hpp"
#include <pickscore/core/random.hpp>
#include <pickscore/cuda/context.hpp>
#include <pickscore/cuda/convert.hpp>
#include <pickscore/cuda/runtime.hpp>
#include <pickscore/cuda/storage.hpp>
#include <pickscore/ops/activation.hpp>
#include <pickscore/ops/elementwise.hpp>
#include <pickscore/ops/layernorm.hpp>
#include <pickscore/ops/optim.hpp>
#include <pickscore/ops/softmax.hpp>
#include <string>
#include <type_traits>
#include <vector>

using namespace pickscore;
namespace cu = pickscore::cuda;
using ops::Accumulate;
using ops::Activation;
using T64 = Tensor<double, Cpu>;

namespace {

using test::poisoned;
using test::random_host;
using test::type_name;

// ---- helpers ----------------------------------------------------------------------------------------------

template <class T>
T64 as_f64(const TensorView<T, Cpu>& t) {
    return to_dtype<double>(t);
}

// A device view of `shape` that starts one element into its storage: never 16-byte aligned, so the
// kernels take their one-element-per-access paths. The storage is kept alive by `owner`.
template <class T>
TensorView<T, Cuda> odd_view(Tensor<T, Cuda>& owner, Shape shape) {
    owner = poisoned<T>(Shape{shape.numel() + 1});
    return TensorView<T, Cuda>(owner.data() + 1, shape);
}

template <class T>
TensorView<T, Cuda> upload_to(TensorView<T, Cuda> dst, const TensorView<T, Cpu>& src) {
    cu::copy<T>(dst, src.cview());
    return dst;
}

template <class T>
Tensor<T, Cpu> download(const TensorView<T, Cuda>& t) {
    return cu::to_host(t.cview());
}

bool has_nan_mismatch(const T64& got, const T64& ref) {
    for (std::int64_t i = 0; i < got.numel(); ++i)
        if (std::isnan(got[i]) != std::isnan(ref[i])) return true;
    return false;
}

// The comparison rule of this file (see the opening comment). `got` is the CUDA result, `cpu` the
// CPU backend's result in the same type, `ref` the f64 reference; atol/rtol the f32 bound, to which
// cpu_factor·|cpu − ref| is added per element where the GPU's math functions (2 ulps where glibc's
// are within 1) meet an ill-conditioned formula (see the activations).
template <class T>
void compare(const std::string& what, const T64& got, const T64& cpu, const T64& ref, double atol, double rtol,
             double cpu_factor = 0.0) {
    REQUIRE(got.shape() == ref.shape());
    CHECK_MESSAGE(!has_nan_mismatch(got, ref), what, ": NaN where the reference has none (or the reverse)");
    if constexpr (std::is_same_v<T, float>) {
        double worst = 0;
        std::int64_t at = 0;
        for (std::int64_t i = 0; i < got.numel(); ++i) {
            if (std::isnan(ref[i])) continue;
            const double tol = atol + rtol * std::abs(ref[i]) + cpu_factor * std::abs(cpu[i] - ref[i]);
            const double e = std::abs(got[i] - ref[i]) / tol;
            if (e > worst) worst = e, at = i;
        }
        CHECK_MESSAGE(worst <= 1.0, what, ": element ", at, " is ", got[at], ", expected ", ref[at], " (", worst,
                      " times the tolerance)");
    } else {
        double err = 0, err_cpu = 0, mag = 0;
        for (std::int64_t i = 0; i < got.numel(); ++i) {
            if (std::isnan(ref[i])) continue;
            err = std::max(err, std::abs(got[i] - ref[i]));
            err_cpu = std::max(err_cpu, std::abs(cpu[i] - ref[i]));
            mag = std::max(mag, std::abs(ref[i]));
        }
        CHECK_MESSAGE(err <= 2.0 * err_cpu + 0x1p-9 * mag, what, ": bf16 error ", err, " vs the CPU's ", err_cpu,
                      " (largest magnitude ", mag, ")");
    }
}

template <class T>
void compare(const std::string& what, const TensorView<T, Cpu>& got, const TensorView<T, Cpu>& cpu, const T64& ref,
             double atol, double rtol, double cpu_factor = 0.0) {
    compare<T>(what, as_f64(got), as_f64(cpu), ref, atol, rtol, cpu_factor);
}

template <class T>
bool same_bits(const TensorView<T, Cpu>& a, const TensorView<T, Cpu>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

template <class F>
std::string error_of(F&& body) {
    try {
        body();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error thrown)";
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// ---- the shapes -------------------------------------------------------------------------------------------

// Row ops (LayerNorm, softmax). The CPU tests' shapes (tests/test_ops_transformer.cpp), the ViT
// width, rows longer than the register cache (2056 and 6200: C / V / 32 > 64 / V, read again from
// memory per pass; 6200 also needs more than 48 KiB of shared memory in the LayerNorm backward),
// odd widths that are long too (777: scalar accesses, the large register cache; 2051: scalar
// accesses, no cache), and `odd`: the tensors start one element into their storage.
struct RowCase {
    Shape shape;
    bool odd = false;
};
const RowCase layernorm_cases[] = {
    {Shape{1, 13}},    {Shape{2, 257, 13}},  {Shape{1, 77, 80}},        {Shape{3, 1}},    {Shape{5}},
    {Shape{2, 3, 33}}, {Shape{3, 1280}},     {Shape{2, 2056}},          {Shape{1, 2051}}, {Shape{2, 777}},
    {Shape{1, 6200}},  {Shape{4, 80}, true}, {Shape{2, 257, 16}, true},
};
const RowCase softmax_cases[] = {
    {Shape{1, 1}},    {Shape{3, 13}},   {Shape{2, 257}},  {Shape{2, 3, 77}}, {Shape{5}},           {Shape{4, 257}},
    {Shape{2, 1000}}, {Shape{2, 2056}}, {Shape{1, 2051}}, {Shape{2, 777}},   {Shape{3, 64}, true},
};

std::string describe(const char* op, const RowCase& c, const char* type) {
    return std::string(op) + " " + c.shape.str() + (c.odd ? " (odd offset) " : " ") + type;
}

// A device tensor holding `host`, aligned or at an odd offset.
template <class T>
struct Dev {
    Tensor<T, Cuda> owner;
    TensorView<T, Cuda> view;
};
template <class T>
Dev<T> to_dev(const TensorView<T, Cpu>& host, bool odd) {
    Dev<T> d;
    if (odd) {
        d.view = odd_view<T>(d.owner, host.shape());
    } else {
        d.owner = poisoned<T>(host.shape());
        d.view = d.owner.view();
    }
    upload_to<T>(d.view, host);
    return d;
}
template <class T>
Dev<T> fresh(Shape shape, bool odd) {
    Dev<T> d;
    if (odd) {
        d.view = odd_view<T>(d.owner, shape);
    } else {
        d.owner = poisoned<T>(shape);
        d.view = d.owner.view();
    }
    return d;
}

}  // namespace

// ---- LayerNorm --------------------------------------------------------------------------------------------

namespace {

template <class T>
void layernorm_case(const RowCase& c, Accumulate mode, Rng& rng) {
    const Shape s = c.shape;
    const std::int64_t C = s.last(), R = s.rows();
    const std::string tag = describe("layernorm", c, type_name<T>());
    CAPTURE(tag);
    const auto x = random_host<T>(s, rng, 1.0, 0.5), w = random_host<T>(Shape{C}, rng, 0.2, 1.0);
    const auto b = random_host<T>(Shape{C}, rng, 0.1), g = random_host<T>(s, rng);
    const auto din0 = random_host<T>(s, rng), dw0 = random_host<T>(Shape{C}, rng), db0 = random_host<T>(Shape{C}, rng);

    // f64 reference, and the CPU backend in T.
    T64 ref(s), ref_mean(Shape{R}), ref_rstd(Shape{R});
    ops::layernorm_forward(ref.view(), ref_mean.view(), ref_rstd.view(), as_f64(x.cview()), as_f64(w.cview()),
                           as_f64(b.cview()));
    Tensor<T> out_c(s);
    Tensor<float> mean_c(Shape{R}), rstd_c(Shape{R});
    ops::layernorm_forward(out_c.view(), mean_c.view(), rstd_c.view(), x, w, b);

    // CUDA forward.
    auto dx = to_dev<T>(x, c.odd), dw = to_dev<T>(w, c.odd), db = to_dev<T>(b, c.odd);
    auto dout = fresh<T>(s, c.odd);
    auto dmean = poisoned<float>(Shape{R}), drstd = poisoned<float>(Shape{R});
    ops::layernorm_forward(dout.view, dmean.view(), drstd.view(), dx.view, dw.view, db.view);
    // out: the CPU test's f32 bound (atol 1e-5, rtol 1e-5: float sums over up to ~6000 terms).
    compare<T>(tag + " out", download(dout.view), out_c, ref, 1e-5, 1e-5);
    // The statistics are f32 whatever T is: float accumulation only (the CPU test's 1e-6, 1e-5).
    compare<float>(tag + " mean", download(dmean.view()), mean_c, ref_mean, 1e-6, 1e-5);
    compare<float>(tag + " rstd", download(drstd.view()), rstd_c, ref_rstd, 1e-6, 1e-5);
    // Inference (no statistics) writes the same output; and in place over the input.
    auto dout2 = fresh<T>(s, c.odd);
    ops::layernorm_forward(dout2.view, {}, {}, dx.view, dw.view, db.view);
    CHECK(same_bits(download(dout2.view).cview(), download(dout.view).cview()));
    auto dinplace = to_dev<T>(x, c.odd);
    ops::layernorm_forward(dinplace.view, {}, {}, dinplace.view, dw.view, db.view);
    CHECK(same_bits(download(dinplace.view).cview(), download(dout.view).cview()));

    // Backward from the same f32 statistics (the CPU backend's), both backends.
    T64 rdin = mode == Accumulate::yes ? as_f64(din0.cview()) : T64(s);
    T64 rdw = as_f64(dw0.cview()), rdb = as_f64(db0.cview());
    ops::layernorm_backward(rdin.view(), rdw.view(), rdb.view(), as_f64(g.cview()), as_f64(x.cview()),
                            as_f64(w.cview()), ref_mean.cview(), ref_rstd.cview(), mode);
    Tensor<T> din_c = clone(din0.view()), dw_c = clone(dw0.view()), db_c = clone(db0.view());
    ops::layernorm_backward(din_c.view(), dw_c.view(), db_c.view(), g, x, w, mean_c, rstd_c, mode);

    auto dg = to_dev<T>(g, c.odd);
    auto ddin = mode == Accumulate::yes ? to_dev<T>(din0, c.odd) : fresh<T>(s, c.odd);  // written: poisoned
    auto ddw = to_dev<T>(dw0, c.odd), ddb = to_dev<T>(db0, c.odd);
    auto dm = cu::to_device(mean_c.view()), dr = cu::to_device(rstd_c.view());
    ops::layernorm_backward(ddin.view, ddw.view, ddb.view, dg.view, dx.view, dw.view, dm.cview(), dr.cview(), mode);
    const std::string m = mode == Accumulate::yes ? " (accumulated)" : " (written)";
    // din: one rounding after float sums over C terms; dweight, dbias: sums over R rows of O(1)
    // terms, so the absolute float error grows like sqrt(R)·2⁻²⁴ — the CPU test's atol 1e-4.
    compare<T>(tag + " din" + m, download(ddin.view), din_c, rdin, 1e-4, 1e-5);
    compare<T>(tag + " dweight" + m, download(ddw.view), dw_c, rdw, 1e-4, 1e-5);
    compare<T>(tag + " dbias" + m, download(ddb.view), db_c, rdb, 1e-4, 1e-5);
}

template <class T>
void add_layernorm_case(const RowCase& c, Rng& rng) {
    const Shape s = c.shape;
    const std::int64_t C = s.last(), R = s.rows();
    const std::string tag = describe("add_layernorm", c, type_name<T>());
    CAPTURE(tag);
    const auto a = random_host<T>(s, rng, 1.0, 0.5), b = random_host<T>(s, rng);
    const auto w = random_host<T>(Shape{C}, rng, 0.2, 1.0), bias = random_host<T>(Shape{C}, rng, 0.1);
    Tensor<T> resid_c(s), out_c(s);
    Tensor<float> mean_c(Shape{R}), rstd_c(Shape{R});
    ops::add_layernorm_forward(resid_c.view(), out_c.view(), mean_c.view(), rstd_c.view(), a, b, w, bias);
    // f64 reference of the LayerNorm part, on the residual sum as T holds it.
    T64 ref(s), ref_mean(Shape{R}), ref_rstd(Shape{R});
    ops::layernorm_forward(ref.view(), ref_mean.view(), ref_rstd.view(), as_f64(resid_c.cview()), as_f64(w.cview()),
                           as_f64(bias.cview()));

    auto da = to_dev<T>(a, c.odd), db = to_dev<T>(b, c.odd), dw = to_dev<T>(w, c.odd), dbias = to_dev<T>(bias, c.odd);
    auto dresid = fresh<T>(s, c.odd), dout = fresh<T>(s, c.odd);
    auto dmean = poisoned<float>(Shape{R}), drstd = poisoned<float>(Shape{R});
    ops::add_layernorm_forward(dresid.view, dout.view, dmean.view(), drstd.view(), da.view, db.view, dw.view,
                               dbias.view);
    // a + b rounded once to T: the CPU's bits.
    CHECK_MESSAGE(same_bits(download(dresid.view).cview(), resid_c.cview()), tag, " resid");
    compare<T>(tag + " out", download(dout.view), out_c, ref, 1e-5, 1e-5);
    compare<float>(tag + " mean", download(dmean.view()), mean_c, ref_mean, 1e-6, 1e-5);
    compare<float>(tag + " rstd", download(drstd.view()), rstd_c, ref_rstd, 1e-6, 1e-5);
    // The residual stream in place (resid_out over a): the same results.
    auto dout2 = fresh<T>(s, c.odd);
    ops::add_layernorm_forward(da.view, dout2.view, {}, {}, da.view, db.view, dw.view, dbias.view);
    CHECK(same_bits(download(da.view).cview(), resid_c.cview()));
    CHECK(same_bits(download(dout2.view).cview(), download(dout.view).cview()));
}

}  // namespace

TEST_CASE_TEMPLATE("layernorm forward/backward on CUDA match the CPU", T, float, bf16) {
    Rng rng(100);
    for (const RowCase& c : layernorm_cases)
        for (Accumulate mode : {Accumulate::no, Accumulate::yes}) layernorm_case<T>(c, mode, rng);
}

TEST_CASE_TEMPLATE("add_layernorm_forward on CUDA matches the CPU, the residual sum bit for bit", T, float, bf16) {
    Rng rng(101);
    for (const RowCase& c : layernorm_cases) add_layernorm_case<T>(c, rng);
}

TEST_CASE("layernorm backward on CUDA is deterministic and refuses rows too wide for it") {
    Rng rng(102);
    const Shape s{300, 80};
    const auto x = random_host<float>(s, rng), w = random_host<float>(Shape{80}, rng);
    const auto g = random_host<float>(s, rng);
    auto dx = cu::to_device(x.view()), dw = cu::to_device(w.view()), dg = cu::to_device(g.view());
    Tensor<float, Cuda> out(s), mean(Shape{300}), rstd(Shape{300});
    ops::layernorm_forward(out.view(), mean.view(), rstd.view(), dx, dw, dw);
    Tensor<float, Cpu> first[3];
    for (int run = 0; run < 2; ++run) {
        Tensor<float, Cuda> din(s);
        Tensor<float, Cuda> gw = cu::to_device(Tensor<float, Cpu>::zeros(Shape{80}).view());
        Tensor<float, Cuda> gb = cu::to_device(Tensor<float, Cpu>::zeros(Shape{80}).view());
        ops::layernorm_backward(din.view(), gw.view(), gb.view(), dg, dx, dw, mean, rstd);
        Tensor<float, Cpu> now[3] = {download(din.view()), download(gw.view()), download(gb.view())};
        for (int k = 0; k < 3; ++k) {
            if (run == 0)
                first[k] = clone(now[k].view());
            else
                CHECK(same_bits(now[k].cview(), first[k].cview()));
        }
    }
    // 40,000 f32 columns need 2 · 40,000 · 4 bytes of column sums per warp: above 227 KiB.
    Tensor<float, Cuda> wide(Shape{1, 40000}), wide_w(Shape{40000}), wide_s(Shape{1});
    const std::string msg = error_of([&] {
        ops::layernorm_backward(wide.view(), wide_w.view(), wide_w.view(), wide, wide, wide_w, wide_s, wide_s);
    });
    CHECK(contains(msg, "layernorm_backward"));
    CHECK(contains(msg, "40000"));
}

// ---- softmax ------------------------------------------------------------------------------------------------

namespace {

template <class T>
void softmax_case(const RowCase& c, Rng& rng) {
    const Shape s = c.shape;
    const std::string tag = describe("softmax", c, type_name<T>());
    CAPTURE(tag);
    auto x = random_host<T>(s, rng, 2.0);
    const std::int64_t N = s.last();
    if (s.rows() >= 2 && N >= 3) {
        x[1] = cast<T>(-std::numeric_limits<double>::infinity());  // a masked entry: probability 0
        for (std::int64_t j = 0; j < N; ++j)
            x[N + j] = cast<T>(-std::numeric_limits<double>::infinity());  // all masked: NaN
    }
    T64 ref(s);
    ops::softmax_forward(ref.view(), as_f64(x.cview()));
    Tensor<T> y_c(s);
    ops::softmax_forward(y_c.view(), x);
    auto dx = to_dev<T>(x, c.odd);
    auto dy = fresh<T>(s, c.odd);
    ops::softmax_forward(dy.view, dx.view);
    // Probabilities can be tiny: below ~1e-6 only an absolute bound means something (the CPU test's).
    compare<T>(tag + " forward", download(dy.view), y_c, ref, 1e-6, 1e-5);
    auto dinplace = to_dev<T>(x, c.odd);
    ops::softmax_forward(dinplace.view, dinplace.view);
    CHECK(same_bits(download(dinplace.view).cview(), download(dy.view).cview()));

    // Backward from the same saved output (the CPU's, in T).
    const auto g = random_host<T>(s, rng);
    T64 rdin(s);
    ops::softmax_backward(rdin.view(), as_f64(g.cview()), as_f64(y_c.cview()));
    Tensor<T> din_c(s);
    ops::softmax_backward(din_c.view(), g, y_c);
    auto dg = to_dev<T>(g, c.odd), dyc = to_dev<T>(y_c, c.odd);
    auto ddin = fresh<T>(s, c.odd);
    ops::softmax_backward(ddin.view, dg.view, dyc.view);
    compare<T>(tag + " backward", download(ddin.view), din_c, rdin, 1e-6, 1e-5);
}

}  // namespace

TEST_CASE_TEMPLATE("softmax forward/backward on CUDA match the CPU, masks included", T, float, bf16) {
    Rng rng(110);
    for (const RowCase& c : softmax_cases) softmax_case<T>(c, rng);
}

// ---- activations --------------------------------------------------------------------------------------------

namespace {
const Activation all_activations[] = {Activation::gelu_erf, Activation::gelu_tanh, Activation::quick_gelu};
const char* name_of(Activation a) {
    return a == Activation::gelu_erf ? "gelu_erf" : a == Activation::gelu_tanh ? "gelu_tanh" : "quick_gelu";
}
}  // namespace

TEST_CASE_TEMPLATE("activations forward/backward on CUDA match the CPU", T, float, bf16) {
    Rng rng(120);
    const RowCase cases[] = {{Shape{1}}, {Shape{3, 13}}, {Shape{2, 257, 7}}, {Shape{4, 333}}, {Shape{5, 11}, true}};
    for (const RowCase& c : cases)
        for (Activation a : all_activations) {
            const std::string tag = describe(name_of(a), c, type_name<T>());
            CAPTURE(tag);
            auto x = random_host<T>(c.shape, rng, 3.0);
            if (x.numel() > 3) {  // the tails, where exp overflows in float or 1 + erf cancels
                x[0] = cast<T>(40.0);
                x[1] = cast<T>(-40.0);
                x[2] = cast<T>(-100.0);
            }
            const auto g = random_host<T>(c.shape, rng);
            T64 ref(c.shape), rdin(c.shape);
            ops::activation_forward(ref.view(), as_f64(x.cview()), a);
            ops::activation_backward(rdin.view(), as_f64(g.cview()), as_f64(x.cview()), a);
            Tensor<T> y_c(c.shape), din_c(c.shape);
            ops::activation_forward(y_c.view(), x, a);
            ops::activation_backward(din_c.view(), g, x, a);
            auto dx = to_dev<T>(x, c.odd), dg = to_dev<T>(g, c.odd);
            auto dy = fresh<T>(c.shape, c.odd), ddin = fresh<T>(c.shape, c.odd);
            ops::activation_forward(dy.view, dx.view, a);
            ops::activation_backward(ddin.view, dg.view, dx.view, a);
            // f32: the CPU test's bound (1e-6 absolute for the tail cancellation of 1 + erf and
            // 1 + tanh, 4e-7 relative) doubled, plus four times the CPU's own f32 error at the
            // element: the formulas amplify the error of erf/tanh/exp (e.g. gelu_tanh' by
            // |x|·du/dx through 1 − tanh², up to ~20x for |x| near 5), and the GPU's erff, tanhf and
            // expf are within 2 ulps where glibc's are within 1.
            compare<T>(tag + " forward", download(dy.view), y_c, ref, 2e-6, 1e-6, 4.0);
            compare<T>(tag + " backward", download(ddin.view), din_c, rdin, 2e-6, 1e-6, 4.0);
            // In place: out over in, din over dout.
            ops::activation_forward(dx.view, dx.view, a);
            ops::activation_backward(dg.view, dg.view, to_dev<T>(x, c.odd).view, a);
            CHECK(same_bits(download(dx.view).cview(), download(dy.view).cview()));
            CHECK(same_bits(download(dg.view).cview(), download(ddin.view).cview()));
        }
    Tensor<T, Cuda> t(Shape{4});
    CHECK(contains(error_of([&] { ops::activation_forward(t.view(), t, Activation(7)); }), "activation_forward"));
}

// ---- element-wise and conversion ----------------------------------------------------------------------------

TEST_CASE_TEMPLATE("add, add_inplace, scale_inplace and fill on CUDA give the CPU's bits", T, float, bf16) {
    Rng rng(130);
    const RowCase cases[] = {{Shape{1}},          {Shape{7}},          {Shape{8}},
                             {Shape{3, 257, 13}}, {Shape{1003}, true}, {Shape{2, 33}, true}};
    for (const RowCase& c : cases) {
        const std::string tag = describe("elementwise", c, type_name<T>());
        CAPTURE(tag);
        const auto a = random_host<T>(c.shape, rng), b = random_host<T>(c.shape, rng);
        Tensor<T> sum_c(c.shape);
        ops::add(sum_c.view(), a, b);
        auto da = to_dev<T>(a, c.odd), db = to_dev<T>(b, c.odd), dsum = fresh<T>(c.shape, c.odd);
        ops::add(dsum.view, da.view, db.view);
        CHECK(same_bits(download(dsum.view).cview(), sum_c.cview()));
        ops::add_inplace(da.view, db.view);  // acc += x
        CHECK(same_bits(download(da.view).cview(), sum_c.cview()));
        ops::add(db.view, dsum.view, db.view);  // out over b
        Tensor<T> sum2_c(c.shape);
        ops::add(sum2_c.view(), sum_c, b);
        CHECK(same_bits(download(db.view).cview(), sum2_c.cview()));
        ops::scale_inplace(dsum.view, -0.3);
        ops::scale_inplace(sum_c.view(), -0.3);
        CHECK(same_bits(download(dsum.view).cview(), sum_c.cview()));
        for (double value : {0.0, -1.7, 3.0e38}) {  // 3e38: f32 and bf16 round it differently from f64
            ops::fill(dsum.view, value);
            ops::fill(sum_c.view(), value);
            CHECK(same_bits(download(dsum.view).cview(), sum_c.cview()));
        }
    }
}

TEST_CASE("f32 <-> bf16 conversion on CUDA rounds as the CPU does") {
    Rng rng(140);
    for (const RowCase& c :
         {RowCase{Shape{1}}, RowCase{Shape{7}}, RowCase{Shape{2, 517}}, RowCase{Shape{1003}, true}}) {
        CAPTURE(c.shape);
        auto x = random_host<float>(c.shape, rng, 100.0);
        if (x.numel() >= 7) {  // ties (to even: down, up), the largest finite, overflow to inf, NaN, -0
            x[0] = std::bit_cast<float>(0x3f808000u);
            x[1] = std::bit_cast<float>(0x3f818000u);
            x[2] = std::numeric_limits<float>::max();
            x[3] = -std::numeric_limits<float>::infinity();
            x[4] = std::numeric_limits<float>::quiet_NaN();
            x[5] = -0.0f;
            x[6] = 1e-40f;  // subnormal
        }
        Tensor<bf16> y_c(c.shape);
        convert<bf16, float>(y_c.view(), x.cview());
        auto dx = to_dev<float>(x, c.odd);
        auto dy = fresh<bf16>(c.shape, c.odd);
        cu::convert(dy.view, dx.view.cview());
        const auto y = download(dy.view);
        for (std::int64_t i = 0; i < y.numel(); ++i) {
            if (std::isnan(float(y_c[i]))) {
                CHECK(std::isnan(float(y[i])));
            } else {
                REQUIRE(y[i].bits == y_c[i].bits);
            }
        }
        // bf16 -> f32 is exact, and the tensor helpers work too.
        auto back = fresh<float>(c.shape, c.odd);
        cu::convert(back.view, dy.view.cview());
        const auto b = download(back.view);
        for (std::int64_t i = 0; i < y.numel(); ++i)
            if (!std::isnan(float(y[i]))) REQUIRE(b[i] == float(y[i]));
        const auto b2 = download(cu::to_dtype<float>(dy.view.cview()).view());
        CHECK(std::memcmp(b2.data(), b.data(), b.bytes()) == 0);
    }
    Tensor<float, Cuda> a(Shape{3}), wrong(Shape{4});
    Tensor<bf16, Cuda> c(Shape{3});
    CHECK(contains(error_of([&] { cu::convert(c.view(), wrong.cview()); }), "cuda::convert"));
    (void)a;
}

// ---- the optimizer ------------------------------------------------------------------------------------------

namespace {

// |cuda − cpu| for AdamW's f32 state: the same operations in the same order, but nvcc may fuse a
// multiply and an add (m's lerp, v's update, the decay and the step): a few ulps of each value,
// and of the update lr·m̂/(√v̂ + ε), which is at most ~3·lr for the default betas. 8 ulps of
// |x| + 4·lr cover three steps. (Under the emulation the bits agree.)
void check_adamw_state(const std::string& what, const Tensor<float>& got, const Tensor<float>& cpu, double lr) {
    for (std::int64_t i = 0; i < got.numel(); ++i) {
        const double tol = 8 * 0x1p-24 * (std::abs(double(cpu[i])) + 4 * lr) + 1e-30;
        if (!(std::abs(double(got[i]) - double(cpu[i])) <= tol)) {
            FAIL_CHECK(what, ": element ", i, " is ", got[i], ", the CPU has ", cpu[i]);
            return;
        }
    }
}

template <class G>
void adamw_flat_case(std::int64_t n, bool odd, bool with_copy, int clip, Rng& rng) {
    // clip: 0 none, 1 a norm that clips, 2 a norm that does not, 3 a NaN norm (the step is skipped)
    const std::string tag = std::string("adamw_step_flat n=") + std::to_string(n) + (odd ? " odd" : "") +
                            (with_copy ? " +copy" : "") + " clip " + std::to_string(clip) + " grad " + type_name<G>();
    CAPTURE(tag);
    ops::AdamWConfig cfg;
    cfg.lr = 1e-3;
    const Shape s{n};
    const auto p0 = random_host<float>(s, rng);
    Tensor<float> p = clone(p0.view()), m = Tensor<float>::zeros(s), v = Tensor<float>::zeros(s);
    Tensor<bf16> copy(s);
    auto dp = to_dev<float>(p0, odd), dm = to_dev<float>(m, odd), dv = to_dev<float>(v, odd);
    auto dcopy = fresh<bf16>(s, odd);
    const double max_norm = clip == 1 ? 0.5 : 1e6;
    for (int t = 1; t <= 3; ++t) {
        const auto g = random_host<G>(s, rng, 0.1);
        auto dg = to_dev<G>(g, odd);
        Tensor<float> norm(Shape{1});
        Tensor<float, Cuda> dnorm(Shape{1});
        if (clip == 3) {
            norm[0] = std::numeric_limits<float>::quiet_NaN();
            cu::copy(dnorm.view(), norm.cview());
        } else if (clip != 0) {
            ops::global_grad_norm(norm.view(), g.cview());
            ops::global_grad_norm(dnorm.view(), dg.view.cview());
        }
        const TensorView<const float> hn = clip ? norm.cview() : TensorView<const float>();
        const TensorView<const float, Cuda> dn = clip ? dnorm.cview() : TensorView<const float, Cuda>();
        ops::adamw_step_flat(p.view(), with_copy ? copy.view() : TensorView<bf16>(), m.view(), v.view(), g.cview(), hn,
                             max_norm, t, cfg);
        ops::adamw_step_flat(dp.view, with_copy ? dcopy.view : TensorView<bf16, Cuda>(), dm.view, dv.view,
                             dg.view.cview(), dn, max_norm, t, cfg);
    }
    const auto gp = download(dp.view);
    check_adamw_state(tag + " param", gp, p, cfg.lr);
    check_adamw_state(tag + " m", download(dm.view), m, 0.0);
    check_adamw_state(tag + " v", download(dv.view), v, 0.0);
    if (clip == 3) CHECK(same_bits(gp.cview(), p0.cview()));  // skipped every time
    if (with_copy) {                                          // bf16 of the device's own master weights, rounded once
        const auto gc = download(dcopy.view);
        CHECK(same_bits(gc.cview(), to_dtype<bf16>(gp.view()).cview()));
    }
}

}  // namespace

TEST_CASE("adamw_step_flat on CUDA matches the CPU: bf16 copy, clipping, skipping, tails, odd offsets") {
    Rng rng(150);
    for (std::int64_t n : {std::int64_t(1), std::int64_t(7), std::int64_t(1003)})
        for (bool odd : {false, true})
            for (int clip : {0, 1, 2, 3}) {
                adamw_flat_case<float>(n, odd, clip != 2, clip, rng);
                adamw_flat_case<bf16>(n, odd, clip != 0, clip, rng);
            }
}

TEST_CASE_TEMPLATE("adamw_step over slots on CUDA matches the CPU", T, float, bf16) {
    Rng rng(151);
    ops::AdamWConfig cfg;
    cfg.lr = 1e-2;
    const Shape shapes[] = {Shape{3, 13}, Shape{257}};
    std::vector<Tensor<T>> p, g;
    std::vector<Tensor<float>> m, v;
    std::vector<Tensor<T, Cuda>> dp, dg;
    std::vector<Tensor<float, Cuda>> dm, dv;
    for (const Shape& s : shapes) {
        p.push_back(random_host<T>(s, rng));
        m.push_back(Tensor<float>::zeros(s));
        v.push_back(Tensor<float>::zeros(s));
        dp.push_back(cu::to_device(p.back().view()));
        dm.push_back(cu::to_device(m.back().view()));
        dv.push_back(cu::to_device(v.back().view()));
    }
    for (int t = 1; t <= 3; ++t) {
        g.clear();
        dg.clear();
        std::vector<ops::AdamWSlot<T>> slots;
        std::vector<ops::AdamWSlot<T, Cuda>> dslots;
        for (std::size_t i = 0; i < p.size(); ++i) {
            g.push_back(random_host<T>(p[i].shape(), rng, 0.1));
            dg.push_back(cu::to_device(g.back().view()));
        }
        for (std::size_t i = 0; i < p.size(); ++i) {
            slots.push_back({p[i], g[i], m[i], v[i]});
            dslots.push_back({dp[i], dg[i], dm[i], dv[i]});
        }
        ops::adamw_step(slots, t, cfg);
        ops::adamw_step(dslots, t, cfg);
    }
    for (std::size_t i = 0; i < p.size(); ++i) {
        check_adamw_state("slot m", download(dm[i].view()), m[i], 0.0);
        check_adamw_state("slot v", download(dv[i].view()), v[i], 0.0);
        const auto gp = download(dp[i].view());
        if constexpr (std::is_same_v<T, float>) {
            check_adamw_state("slot param", gp, p[i], cfg.lr);
        } else {  // the f32 results differ by ulps at most, which may flip a rounding to bf16: one ulp
            for (std::int64_t k = 0; k < gp.numel(); ++k)
                CHECK(std::abs(float(gp[k]) - float(p[i][k])) <= 0x1p-7 * std::abs(float(p[i][k])));
        }
    }
}

TEST_CASE_TEMPLATE("the gradient norm and clipping on CUDA: device buffer, deterministic, as the CPU", T, float, bf16) {
    Rng rng(160);
    // Sizes: one element, a tail, an odd offset (scalar path), and enough for many blocks.
    std::vector<Tensor<T>> host;
    std::vector<Dev<T>> dev;
    const std::pair<std::int64_t, bool> sizes[] = {{1, false}, {1003, false}, {517, true}, {300001, false}};
    for (auto [n, odd] : sizes) {
        host.push_back(random_host<T>(Shape{n}, rng, 0.01));
        dev.push_back(to_dev<T>(host.back(), odd));
    }
    std::vector<TensorView<const T>> hviews;
    std::vector<TensorView<const T, Cuda>> dviews;
    for (std::size_t i = 0; i < host.size(); ++i) {
        hviews.push_back(host[i]);
        dviews.push_back(dev[i].view);
    }
    // The double-returning form (synchronises): double sums of the same exact squares in another
    // order; the CPU's are sequential over blocks of 32768, so at worst 32768·2⁻⁵³ ≈ 4e-12 apart.
    const double norm_cpu = ops::global_grad_norm(hviews);
    CHECK(ops::global_grad_norm(dviews) == doctest::Approx(norm_cpu).epsilon(1e-11));
    // The device-buffer form: the same f32 value (a double sum rounded to f32 once: the order of
    // the double sums could only matter within 1e-16 of a rounding boundary), the same bits each run.
    Tensor<float> hn(Shape{1});
    ops::global_grad_norm(hn.view(), hviews);
    auto dn = poisoned<float>(Shape{1});
    ops::global_grad_norm(dn.view(), dviews);
    const float first = download(dn.view())[0];
    CHECK(first == doctest::Approx(hn[0]).epsilon(1e-7));
    ops::global_grad_norm(dn.view(), dviews);
    CHECK(std::bit_cast<std::uint32_t>(download(dn.view())[0]) == std::bit_cast<std::uint32_t>(first));
    ops::global_grad_norm(dn.view(), dev[1].view);  // one flat buffer
    CHECK(download(dn.view())[0] == doctest::Approx(ops::global_grad_norm(std::vector{host[1].cview()})).epsilon(1e-7));
    ops::global_grad_norm(dn.view(), std::vector<TensorView<const T, Cuda>>{});
    CHECK(download(dn.view())[0] == 0.0f);

    // Clipping by the stored norm, on the device and on the CPU.
    std::vector<TensorView<T>> hv;
    std::vector<TensorView<T, Cuda>> dv;
    for (std::size_t i = 0; i < host.size(); ++i) {
        hv.push_back(host[i]);
        dv.push_back(dev[i].view);
    }
    const double max_norm = norm_cpu / 3;
    ops::clip_grad_norm(hn.view(), hv, max_norm);
    ops::clip_grad_norm(dn.view(), dv, max_norm);
    for (std::size_t i = 0; i < host.size(); ++i) {
        const auto got = download(dev[i].view);
        // The coefficients agree to an f32 ulp or so; the product is rounded to T once.
        const double rel = std::is_same_v<T, float> ? 4 * 0x1p-24 : 0x1p-7;
        for (std::int64_t k = 0; k < got.numel(); ++k)
            REQUIRE(std::abs(cast<double>(got[k]) - cast<double>(host[i][k])) <=
                    rel * std::abs(cast<double>(host[i][k])));
    }
    // A non-finite norm: nothing scaled, nothing thrown; the double-returning form throws.
    Tensor<T> inf_host(Shape{1});
    inf_host[0] = cast<T>(std::numeric_limits<double>::infinity());
    auto dinf = to_dev<T>(inf_host, false);
    const auto before = download(dev[1].view);
    std::vector<TensorView<T, Cuda>> with_inf{dev[1].view, dinf.view};
    ops::clip_grad_norm(dn.view(), with_inf, 1e-3);
    CHECK(std::isinf(download(dn.view())[0]));
    CHECK(same_bits(download(dev[1].view).cview(), before.cview()));
    CHECK(contains(error_of([&] { ops::clip_grad_norm(with_inf, 1e-3); }), "clip_grad_norm"));
    // The double-returning clip on CUDA scales as the CPU's does (from the same values again).
    upload_to<T>(dev[1].view, host[1].view());
    std::vector<TensorView<T, Cuda>> one{dev[1].view};
    std::vector<TensorView<T>> one_h{host[1]};
    const double n1 = ops::clip_grad_norm(one, 1e-3), n1_cpu = ops::clip_grad_norm(one_h, 1e-3);
    CHECK(n1 == doctest::Approx(n1_cpu).epsilon(1e-11));
    const auto after = download(dev[1].view);
    for (std::int64_t k = 0; k < after.numel(); ++k)
        REQUIRE(std::abs(cast<double>(after[k]) - cast<double>(host[1][k])) <=
                (std::is_same_v<T, float> ? 4 * 0x1p-24 : 0x1p-7) * std::abs(cast<double>(host[1][k])));
}

// ---- errors -----------------------------------------------------------------------------------------------

TEST_CASE("the CUDA ops check shapes before dispatching") {
    Tensor<float, Cuda> x(Shape{2, 3, 13}), y(Shape{2, 3, 13}), w(Shape{13}), w12(Shape{12}), s6(Shape{6});
    std::string msg = error_of([&] { ops::layernorm_forward(y.view(), s6.view(), s6.view(), x, w12, w); });
    CHECK(contains(msg, "layernorm_forward"));
    CHECK(contains(msg, "[12]"));
    CHECK(contains(msg, "[13]"));
    Tensor<float, Cuda> b12(Shape{2, 3, 12});
    msg = error_of([&] { ops::add_layernorm_forward(y.view(), y.view(), s6.view(), s6.view(), x, b12, w, w); });
    CHECK(contains(msg, "add_layernorm_forward"));
    CHECK(contains(msg, "[2, 3, 12]"));
    CHECK(contains(msg, "[2, 3, 13]"));
    msg = error_of([&] { ops::softmax_backward(y.view(), x, b12); });
    CHECK(contains(msg, "softmax_backward"));
    CHECK(contains(msg, "[2, 3, 12]"));
    Tensor<float, Cuda> p(Shape{4}), m(Shape{4}), v3(Shape{3});
    msg = error_of([&] { ops::adamw_step_flat(p.view(), {}, m.view(), v3.view(), m.cview(), {}, 0.0, 1, {}); });
    CHECK(contains(msg, "adamw_step_flat"));
    CHECK(contains(msg, "[3]"));
    CHECK(contains(msg, "[4]"));
}
