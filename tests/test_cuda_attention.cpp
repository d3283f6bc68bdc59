// Attention on CUDA tensors (pickscore/cuda/attention.hpp) against the CPU reference: forward (out
// and lse) and backward (dq, dk, dv), f32 and bf16, causal and not, head dims 64/80/128 (the
// tensor-core kernels) and odd ones (the tiled kernel), 257 and 77 tokens, tiny and odd lengths,
// Tq != Tk, batch 1. Runs under the host emulation in every build and on a GPU where one is
// present (tests/cuda/, with larger shapes and cuDNN's fused attention as well).
//
// Tolerances.
//  f32: against the f64 reference with the CPU f32 test's bounds (tests/test_ops_transformer.cpp):
//   out within 1e-5 absolute + 1e-5 relative (f32 sums of at most ~1000 terms, expf), lse within
//   1e-5 + 1e-5·|lse|, gradients within 1e-4 absolute + 1e-5 relative (sums over up to 257 rows
//   of O(1) terms with cancellation; dq's f32 atomic additions come in any order).
//  bf16 (docs/design.md's rule): the CUDA result may be at most twice as far from the f64
//   reference (largest absolute difference over the tensor) as an independent bf16 computation
//   written here is, plus a tiny floor (below). That computation rounds exactly where
//   the tensor-core kernels round and nowhere else, in double otherwise:
//     inputs q, k, v, dout are bf16 values (the f64 reference sees the same values);
//     forward: P = exp(s − max) unrounded for the row sum l, rounded to bf16 for Σ P v (the
//       kernel feeds P to the P·V mma as bf16), out = bf16(Σ bf16(P) v / l);
//     backward (from the saved out and lse the CUDA forward wrote, which all three use):
//       P = exp(scale·q·k − lse), D = dout·out, dS = P (dout·v − D) unrounded, then
//       dv = bf16(Σ bf16(P) dout), dk = bf16(scale Σ bf16(dS) q), dq = bf16(scale Σ bf16(dS) k).
//   The kernels do the same roundings (P is rounded against the running row maximum rather than
//   the final one, which only changes which bf16 values it rounds to, not how far), and in between
//   accumulate in f32 instead of double, errors about 2^-15 smaller than bf16's 2^-9 half-ulp. So
//   both errors have the same size and source, and a factor of two is room for the different
//   rounding points, not for a missing rounding or a wrong index (those cost orders of magnitude).
//   The floor, 2^-16·max(1, max|reference|) (inputs are O(1)), covers tensors the bf16 roundings
//   leave exact, where f32 sums still differ in the last bits (dk when a query sees one key:
//   dS = P(dP − D) cancels to ~1e-7 instead of 0).
//   lse (f32 in every path): within 5e-5 + 1e-5·|lse| — f32 dot products of Dh ≤ 128 bf16
//   products (tensor-core accumulation is not IEEE-sequential) and exp2/log2 approximations of
//   ~2^-22 relative on the GPU; a wrong mask or tile moves lse by far more.
//  The tiled kernel takes bf16 calls with other head dims or unaligned tensors; it rounds only the
//  outputs, so it meets the same rule with room to spare.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <pickscore/core/random.hpp>
#include <pickscore/cuda/attention.hpp>
#include <pickscore/cuda/context.hpp>
#include <pickscore/cuda/runtime.hpp>
#include <pickscore/cuda/storage.hpp>
#include <pickscore/ops/attention.hpp>

#include "support/gradcheck.hpp"

using namespace pickscore;
using namespace pickscore::test;
namespace cu = pickscore::cuda;

namespace {

struct Case {
    std::int64_t B, Tq, Tk, H, Dh;
    bool causal;
    Shape q() const { return Shape{B, Tq, H, Dh}; }
    Shape k() const { return Shape{B, Tk, H, Dh}; }
    Shape lse() const { return Shape{B, H, Tq}; }
    double scale() const { return 1.0 / std::sqrt(double(Dh)); }
    std::string str() const {
        return "B=" + std::to_string(B) + " Tq=" + std::to_string(Tq) + " Tk=" + std::to_string(Tk) +
               " H=" + std::to_string(H) + " Dh=" + std::to_string(Dh) + (causal ? " causal" : "");
    }
};

// The table: the CPU tests' shapes (tests/test_ops_transformer.cpp) and the tensor-core kernels'
// edges. Emulated mma costs microseconds, so these stay small; large_cases() runs on a GPU only
// (its own test cases, which tools/gpu_check.sh can leave out under compute-sanitizer).
const std::vector<Case>& cases() {
    static const std::vector<Case> table = {
        {1, 1, 1, 1, 1, false},     {2, 5, 5, 3, 13, true},      {2, 7, 11, 2, 13, false},  // tiled kernel
        {1, 9, 4, 1, 8, false},                                                             //
        {2, 77, 77, 2, 64, true},   {1, 257, 257, 2, 80, false}, {1, 257, 257, 1, 80, true},  // CLIP's
        {1, 33, 100, 2, 64, false}, {1, 100, 33, 1, 80, false},                               // Tq != Tk
        {1, 70, 70, 1, 128, false}, {1, 70, 70, 1, 128, true},                                // Dh 128
        {1, 1, 1, 1, 64, false},    {2, 3, 3, 2, 64, true},      {1, 64, 64, 1, 80, true},    // tiny, exact tile
    };
    return table;
}
[[maybe_unused]] const std::vector<Case>& large_cases() {
    static const std::vector<Case> table = {
        {4, 257, 257, 16, 80, false}, {8, 77, 77, 16, 64, true},   {2, 300, 513, 4, 128, false},
        {2, 1000, 1000, 2, 64, true}, {3, 129, 129, 5, 80, true},
    };
    return table;
}

template <class T>
T64 representable_in(const T64& x) {
    const Tensor<T> t = to_dtype<T>(x.view());
    return to_dtype<double>(t.view());
}

double round_bf16(double x) { return double(float(bf16(x))); }

template <class T>
Tensor<T, Cuda> device_copy(const T64& x) {
    const Tensor<T> t = to_dtype<T>(x.view());
    return cu::to_device(t.view());
}

// A device tensor of NaNs (0xFF bytes), so that an element the kernel does not write shows.
template <class T>
Tensor<T, Cuda> poisoned(Shape s) {
    Tensor<T, Cuda> t(s);
    if (t.numel()) cu::check(cudaMemset(t.data(), 0xFF, t.bytes()), "cudaMemset");
    return t;
}

template <class T>
T64 host_double(const Tensor<T, Cuda>& t) {
    const Tensor<T> h = cu::to_host(t.view());
    return to_dtype<double>(h.view());
}

// Largest |a − b| (infinite when either holds a NaN).
double max_abs_diff(const T64& a, const T64& b) {
    REQUIRE(a.shape() == b.shape());
    double worst = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        const double d = std::abs(a[i] - b[i]);
        if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
    }
    return worst;
}
double max_abs(const T64& a) {
    double m = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a[i]));
    return m;
}

// ---- the independent bf16 computation (see the top of the file) ----------------------------------

struct Index {
    std::int64_t Tq, Tk, H, Dh;
    std::int64_t q(std::int64_t b, std::int64_t t, std::int64_t h) const { return ((b * Tq + t) * H + h) * Dh; }
    std::int64_t k(std::int64_t b, std::int64_t t, std::int64_t h) const { return ((b * Tk + t) * H + h) * Dh; }
};

double dot(const double* a, const double* b, std::int64_t n) {
    double s = 0;
    for (std::int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

void bf16_forward(T64& out, const T64& q, const T64& k, const T64& v, const Case& c) {
    const Index ix{c.Tq, c.Tk, c.H, c.Dh};
    std::vector<double> s(std::size_t(c.Tk)), o(std::size_t(c.Dh));
    for (std::int64_t b = 0; b < c.B; ++b)
        for (std::int64_t h = 0; h < c.H; ++h)
            for (std::int64_t i = 0; i < c.Tq; ++i) {
                const std::int64_t n = c.causal ? std::min(i + 1, c.Tk) : c.Tk;
                double m = -INFINITY;
                for (std::int64_t j = 0; j < n; ++j) {
                    s[std::size_t(j)] = c.scale() * dot(&q[ix.q(b, i, h)], &k[ix.k(b, j, h)], c.Dh);
                    m = std::max(m, s[std::size_t(j)]);
                }
                double l = 0;
                std::fill(o.begin(), o.end(), 0.0);
                for (std::int64_t j = 0; j < n; ++j) {
                    const double p = std::exp(s[std::size_t(j)] - m);
                    l += p;
                    const double pr = round_bf16(p);
                    for (std::int64_t d = 0; d < c.Dh; ++d) o[std::size_t(d)] += pr * v[ix.k(b, j, h) + d];
                }
                for (std::int64_t d = 0; d < c.Dh; ++d) out[ix.q(b, i, h) + d] = round_bf16(o[std::size_t(d)] / l);
            }
}

void bf16_backward(T64& dq, T64& dk, T64& dv, const T64& dout, const T64& q, const T64& k, const T64& v,
                   const T64& out, const T64& lse, const Case& c) {
    const Index ix{c.Tq, c.Tk, c.H, c.Dh};
    T64 aq = zeros(c.q()), ak = zeros(c.k()), av = zeros(c.k());
    for (std::int64_t b = 0; b < c.B; ++b)
        for (std::int64_t h = 0; h < c.H; ++h)
            for (std::int64_t i = 0; i < c.Tq; ++i) {
                const double* qi = &q[ix.q(b, i, h)];
                const double* gi = &dout[ix.q(b, i, h)];
                const double D = dot(gi, &out[ix.q(b, i, h)], c.Dh);
                const std::int64_t n = c.causal ? std::min(i + 1, c.Tk) : c.Tk;
                for (std::int64_t j = 0; j < n; ++j) {
                    const double* kj = &k[ix.k(b, j, h)];
                    const double P = std::exp(c.scale() * dot(qi, kj, c.Dh) - lse[(b * c.H + h) * c.Tq + i]);
                    const double dS = P * (dot(gi, &v[ix.k(b, j, h)], c.Dh) - D);
                    const double Pr = round_bf16(P), dSr = round_bf16(dS);
                    for (std::int64_t d = 0; d < c.Dh; ++d) {
                        av[ix.k(b, j, h) + d] += Pr * gi[d];
                        ak[ix.k(b, j, h) + d] += dSr * qi[d];
                        aq[ix.q(b, i, h) + d] += dSr * kj[d];
                    }
                }
            }
    for (std::int64_t e = 0; e < aq.numel(); ++e) dq[e] = round_bf16(c.scale() * aq[e]);
    for (std::int64_t e = 0; e < ak.numel(); ++e) {
        dk[e] = round_bf16(c.scale() * ak[e]);
        dv[e] = round_bf16(av[e]);
    }
}

// The bf16 rule for one tensor.
void check_bf16_rule(const char* what, const Case& c, const T64& cuda, const T64& ref_bf16, const T64& ref64) {
    const double err = max_abs_diff(cuda, ref64), err_ref = max_abs_diff(ref_bf16, ref64);
    const double floor = 0x1p-16 * std::max(1.0, max_abs(ref64));
    CHECK_MESSAGE(err <= 2 * err_ref + floor, std::string(what) << " " << c.str() << ": |cuda - f64| = " << err
                                                                << ", |bf16 reference - f64| = " << err_ref);
}

// Forward and backward of one case on the current attention backend, against the references.
template <class T>
void check_case(const Case& c, Rng& rng) {
    const double scale = c.scale();
    const T64 q = representable_in<T>(randn(c.q(), rng)), k = representable_in<T>(randn(c.k(), rng));
    const T64 v = representable_in<T>(randn(c.k(), rng)), g = representable_in<T>(randn(c.q(), rng));
    const Tensor<T, Cuda> qd = device_copy<T>(q), kd = device_copy<T>(k), vd = device_copy<T>(v),
                          gd = device_copy<T>(g);

    // forward
    T64 out64(c.q()), lse64(c.lse());
    ops::attention_forward(out64, lse64, q, k, v, c.causal, scale);
    Tensor<T, Cuda> outd = poisoned<T>(c.q());
    Tensor<float, Cuda> lsed = poisoned<float>(c.lse());
    ops::attention_forward<T, Cuda>(outd, lsed, qd, kd, vd, c.causal, scale);
    const T64 out = host_double(outd), lse = host_double(lsed);
    if constexpr (std::is_same_v<T, float>) {
        CHECK_MESSAGE(max_scaled_error(out.cview(), out64.cview(), 1e-5, 1e-5) <= 1.0, "out " << c.str());
        CHECK_MESSAGE(max_scaled_error(lse.cview(), lse64.cview(), 1e-5, 1e-5) <= 1.0, "lse " << c.str());
    } else {
        T64 out_ref(c.q());
        bf16_forward(out_ref, q, k, v, c);
        check_bf16_rule("out", c, out, out_ref, out64);
        CHECK_MESSAGE(max_scaled_error(lse.cview(), lse64.cview(), 5e-5, 1e-5) <= 1.0, "lse " << c.str());
    }
    // inference: no lse, the same out (cuDNN may pick another engine for that graph: the rule instead)
    Tensor<T, Cuda> out2d = poisoned<T>(c.q());
    ops::attention_forward<T, Cuda>(out2d, {}, qd, kd, vd, c.causal, scale);
    if (!std::is_same_v<T, bf16> || cu::attention_backend() == cu::AttentionBackend::flash) {
        CHECK_MESSAGE(max_abs_diff(host_double(out2d), out) == 0.0, "out without lse " << c.str());
    } else {
        T64 out_ref(c.q());
        bf16_forward(out_ref, q, k, v, c);
        check_bf16_rule("out without lse", c, host_double(out2d), out_ref, out64);
    }

    // backward, from the state the CUDA forward saved
    T64 dq64(c.q()), dk64(c.k()), dv64(c.k());
    ops::attention_backward(dq64, dk64, dv64, g, q, k, v, out, lse, c.causal, scale);
    Tensor<T, Cuda> dqd = poisoned<T>(c.q()), dkd = poisoned<T>(c.k()), dvd = poisoned<T>(c.k());
    ops::attention_backward<T, Cuda>(dqd, dkd, dvd, gd, qd, kd, vd, outd, lsed, c.causal, scale);
    const T64 dq = host_double(dqd), dk = host_double(dkd), dv = host_double(dvd);
    if constexpr (std::is_same_v<T, float>) {
        CHECK_MESSAGE(max_scaled_error(dq.cview(), dq64.cview(), 1e-4, 1e-5) <= 1.0, "dq " << c.str());
        CHECK_MESSAGE(max_scaled_error(dk.cview(), dk64.cview(), 1e-4, 1e-5) <= 1.0, "dk " << c.str());
        CHECK_MESSAGE(max_scaled_error(dv.cview(), dv64.cview(), 1e-4, 1e-5) <= 1.0, "dv " << c.str());
    } else {
        T64 dq_ref(c.q()), dk_ref(c.k()), dv_ref(c.k());
        bf16_backward(dq_ref, dk_ref, dv_ref, g, q, k, v, out, lse, c);
        check_bf16_rule("dq", c, dq, dq_ref, dq64);
        check_bf16_rule("dk", c, dk, dk_ref, dk64);
        check_bf16_rule("dv", c, dv, dv_ref, dv64);
    }
}

}  // namespace

TEST_CASE("attention on CUDA matches the f64 reference (f32)") {
    cu::AttentionBackendGuard flash(cu::AttentionBackend::flash);
    Rng rng(70);
    for (const Case& c : cases()) check_case<float>(c, rng);
}

TEST_CASE("attention on CUDA matches the f64 reference within the bf16 rule (bf16)") {
    cu::AttentionBackendGuard flash(cu::AttentionBackend::flash);
    Rng rng(71);
    for (const Case& c : cases()) {
        // Which kernel each case exercises (the table above is meant to cover both).
        const bool tc = cu::flash_attention_supported(c.Dh, {});
        INFO(c.str() << (tc ? " (tensor cores)" : " (tiled kernel)"));
        check_case<bf16>(c, rng);
    }
}

#if !defined(PICKSCORE_CUDA_EMULATION)
TEST_CASE("large shapes on the GPU (f32)") {
    cu::AttentionBackendGuard flash(cu::AttentionBackend::flash);
    Rng rng(76);
    for (const Case& c : large_cases()) check_case<float>(c, rng);
}

TEST_CASE("large shapes on the GPU (bf16)") {
    cu::AttentionBackendGuard flash(cu::AttentionBackend::flash);
    Rng rng(77);
    for (const Case& c : large_cases()) {
        INFO(c.str());
        check_case<bf16>(c, rng);
    }
}
#endif

TEST_CASE("the tensor-core kernels give the same bits under other thread schedules (dq: up to f32 order)") {
    // Under the emulation each run uses another schedule seed (the order of the threads between
    // barriers); on a GPU the runs simply repeat. out, lse, dk and dv have one summation order;
    // dq is summed with atomics, so only its rounding may differ.
    cu::AttentionBackendGuard flash(cu::AttentionBackend::flash);
    const Case c{1, 130, 130, 2, 80, true};
    Rng rng(75);
    const Tensor<bf16, Cuda> q = device_copy<bf16>(randn(c.q(), rng)), k = device_copy<bf16>(randn(c.k(), rng));
    const Tensor<bf16, Cuda> v = device_copy<bf16>(randn(c.k(), rng)), g = device_copy<bf16>(randn(c.q(), rng));
    std::vector<T64> first;
#if defined(PICKSCORE_CUDA_EMULATION)
    const std::uint64_t seed0 = cu::emu::config().seed;
#endif
    for (int run = 0; run < 4; ++run) {
#if defined(PICKSCORE_CUDA_EMULATION)
        cu::emu::config().seed = seed0 + 0x1234567ull * std::uint64_t(run);
        // The last run lands every cp.async when it is issued: a K/V tile refilled while another
        // warp still reads the previous one would change the result.
        cu::emu::config().cp_async_land_at_issue = run == 3;
#endif
        Tensor<bf16, Cuda> out = poisoned<bf16>(c.q()), dq = poisoned<bf16>(c.q());
        Tensor<bf16, Cuda> dk = poisoned<bf16>(c.k()), dv = poisoned<bf16>(c.k());
        Tensor<float, Cuda> lse = poisoned<float>(c.lse());
        ops::attention_forward<bf16, Cuda>(out, lse, q, k, v, c.causal, c.scale());
        ops::attention_backward<bf16, Cuda>(dq, dk, dv, g, q, k, v, out, lse, c.causal, c.scale());
        std::vector<T64> now;
        now.push_back(host_double(out));
        now.push_back(host_double(lse));
        now.push_back(host_double(dk));
        now.push_back(host_double(dv));
        now.push_back(host_double(dq));
        if (run == 0) {
            first = std::move(now);
            continue;
        }
        for (std::size_t i = 0; i < 4; ++i) CHECK_MESSAGE(max_abs_diff(now[i], first[i]) == 0.0, "tensor " << i);
        // dq: f32 sums of O(1) terms in another order (~1e-6 apart), each rounded to bf16 once —
        // at most one bf16 ulp (2^-7 relative) apart, or the f32 noise near zero.
        for (std::int64_t e = 0; e < now[4].numel(); ++e)
            REQUIRE(std::abs(now[4][e] - first[4][e]) <= 0x1p-7 * std::abs(first[4][e]) + 1e-5);
    }
#if defined(PICKSCORE_CUDA_EMULATION)
    cu::emu::config().seed = seed0;
    cu::emu::config().cp_async_land_at_issue = false;
#endif
}

TEST_CASE("bf16 calls the tensor cores cannot take go to the tiled kernel: head dims and alignment") {
    CHECK(cu::flash_attention_supported(64, {}));
    CHECK(cu::flash_attention_supported(80, {}));
    CHECK(cu::flash_attention_supported(128, {}));
    CHECK_FALSE(cu::flash_attention_supported(96, {}));
    CHECK_FALSE(cu::flash_attention_supported(13, {}));
    alignas(16) static const char buffer[32] = {};
    CHECK(cu::flash_attention_supported(64, {buffer, buffer + 16}));
    CHECK_FALSE(cu::flash_attention_supported(64, {buffer, buffer + 8}));

    // An unaligned view (offset by one element) still computes the right thing.
    cu::AttentionBackendGuard flash(cu::AttentionBackend::flash);
    const Case c{1, 20, 20, 2, 64, true};
    Rng rng(72);
    const T64 q = representable_in<bf16>(randn(c.q(), rng)), k = representable_in<bf16>(randn(c.k(), rng));
    const T64 v = representable_in<bf16>(randn(c.k(), rng));
    Tensor<bf16, Cuda> big = device_copy<bf16>(randn(Shape{q.numel() + 1}, rng));
    cu::copy<bf16>(TensorView<bf16, Cuda>(big.data() + 1, c.q()), device_copy<bf16>(q));
    const TensorView<bf16, Cuda> q_unaligned(big.data() + 1, c.q());
    Tensor<bf16, Cuda> out = poisoned<bf16>(c.q());
    Tensor<float, Cuda> lse = poisoned<float>(c.lse());
    ops::attention_forward<bf16, Cuda>(out, lse, q_unaligned, device_copy<bf16>(k), device_copy<bf16>(v), c.causal,
                                       c.scale());
    T64 out64(c.q()), lse64(c.lse()), out_ref(c.q());
    ops::attention_forward(out64, lse64, q, k, v, c.causal, c.scale());
    bf16_forward(out_ref, q, k, v, c);
    check_bf16_rule("out (unaligned q)", c, host_double(out), out_ref, out64);
}

TEST_CASE("no queries: backward writes zero key gradients") {
    // (ops:: needs a non-empty lse, so this calls the backend directly, as ops would with Tq = 0.)
    for (const std::int64_t Dh : {64, 13}) {  // tensor cores, tiled kernel
        const Case c{1, 0, 5, 2, Dh, false};
        Rng rng(73);
        const Tensor<bf16, Cuda> k = device_copy<bf16>(randn(c.k(), rng)), v = device_copy<bf16>(randn(c.k(), rng));
        Tensor<bf16, Cuda> dk = poisoned<bf16>(c.k()), dv = poisoned<bf16>(c.k());
        cu::attention_backward<bf16>(nullptr, dk.data(), dv.data(), nullptr, nullptr, k.data(), v.data(), nullptr, nullptr,
                                     c.B, c.Tq, c.Tk, c.H, c.Dh, c.causal, c.scale());
        CHECK(max_abs(host_double(dk)) == 0.0);
        CHECK(max_abs(host_double(dv)) == 0.0);
    }
}

TEST_CASE("a head dim whose tiles do not fit in shared memory is a clear error") {
    const Case c{1, 4, 4, 1, 400, false};
    const Tensor<float, Cuda> q = device_copy<float>(zeros(c.q()));
    Tensor<float, Cuda> dq(c.q()), dk(c.k()), dv(c.k());
    Tensor<float, Cuda> lse(c.lse());
    std::string message;
    try {
        ops::attention_backward<float, Cuda>(dq, dk, dv, q, q, q, q, q, lse, false, c.scale());
    } catch (const Error& e) {
        message = e.what();
    }
    CHECK_MESSAGE(message.find("attention_backward") != std::string::npos, message);
    CHECK_MESSAGE(message.find("shared memory") != std::string::npos, message);
}

TEST_CASE("the attention backend: PICKSCORE_ATTENTION and the scoped setting") {
    const char* saved = std::getenv("PICKSCORE_ATTENTION");
    const std::string saved_value = saved ? saved : "";
    ::setenv("PICKSCORE_ATTENTION", "cudnn", 1);
    CHECK(cu::detail::attention_backend_from_environment() == cu::AttentionBackend::cudnn);
    ::setenv("PICKSCORE_ATTENTION", "flash", 1);
    CHECK(cu::detail::attention_backend_from_environment() == cu::AttentionBackend::flash);
    ::setenv("PICKSCORE_ATTENTION", "fast", 1);
    std::string message;
    try {
        (void)cu::detail::attention_backend_from_environment();
    } catch (const Error& e) {
        message = e.what();
    }
    CHECK_MESSAGE(message.find("PICKSCORE_ATTENTION") != std::string::npos, message);
    if (saved) {
        ::setenv("PICKSCORE_ATTENTION", saved_value.c_str(), 1);
    } else {
        ::unsetenv("PICKSCORE_ATTENTION");
    }
    const cu::AttentionBackend before = cu::attention_backend();
    {
        cu::AttentionBackendGuard guard(cu::AttentionBackend::cudnn);
        CHECK(cu::attention_backend() == cu::AttentionBackend::cudnn);
    }
    CHECK(cu::attention_backend() == before);
}

#if defined(PICKSCORE_CUDA_EMULATION)
TEST_CASE("AttentionBackend::cudnn fails clearly under the emulation (cuDNN has handles only)") {
    CHECK_FALSE(cu::cudnn_attention_available());
    cu::AttentionBackendGuard use(cu::AttentionBackend::cudnn);
    const Case c{1, 4, 4, 1, 64, false};
    const Tensor<bf16, Cuda> q = device_copy<bf16>(zeros(c.q()));
    Tensor<bf16, Cuda> out(c.q()), dq(c.q()), dk(c.k()), dv(c.k());
    Tensor<float, Cuda> lse(c.lse());
    for (int which = 0; which < 2; ++which) {
        std::string message;
        try {
            if (which == 0) {
                ops::attention_forward<bf16, Cuda>(out, lse, q, q, q, false, 1.0);
            } else {
                ops::attention_backward<bf16, Cuda>(dq, dk, dv, q, q, q, q, q, lse, false, 1.0);
            }
        } catch (const Error& e) {
            message = e.what();
        }
        CHECK_MESSAGE(message.find("cudnn") != std::string::npos, message);
        CHECK_MESSAGE(message.find("emulation") != std::string::npos, message);
    }
    // f32 is not affected by the setting: our kernel runs.
    const Tensor<float, Cuda> qf = device_copy<float>(zeros(c.q()));
    Tensor<float, Cuda> outf(c.q());
    CHECK_NOTHROW(ops::attention_forward<float, Cuda>(outf, lse, qf, qf, qf, false, 1.0));
}
#else
TEST_CASE("cuDNN's fused attention (the baseline) meets the same bf16 rule, lse included") {
    REQUIRE(cu::cudnn_attention_available());
    cu::AttentionBackendGuard use(cu::AttentionBackend::cudnn);
    Rng rng(74);
    for (const Case& c : {Case{2, 257, 257, 4, 80, false}, Case{2, 77, 77, 4, 64, true},
                          Case{1, 100, 33, 2, 128, false}, Case{1, 257, 257, 2, 80, true}}) {
        INFO("cuDNN " << c.str());
        check_case<bf16>(c, rng);
    }
}
#endif
