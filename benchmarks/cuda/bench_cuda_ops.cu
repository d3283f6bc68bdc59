// The memory-bound CUDA ops of pickscore against the device's measured copy bandwidth, in the same
// run: LayerNorm (forward, residual-fused forward, backward), softmax (forward, backward), the
// exact-erf GELU of the MLP, and the flat AdamW step — each through the ops API on
// Tensor<T, Cuda>, in f32 and bf16, at ViT-H/14 training shapes (batch 256):
//   LayerNorm   [257·256, 1280] rows of the residual stream
//   softmax     [256·16·257, 257] the attention probabilities of the unfused (cuBLAS) path
//   GELU        [257·256, 5120] the MLP's hidden activations
//   AdamW       2^28 f32 master weights (clipping on the fly, bf16 working copy written)
// Goal (issue 3): each at least 80% of the copy bandwidth (BM_ceiling/copy, bytes read + written).
// The "bytes" counter counts the fewest bytes each call must move: every input read once and every
// output written once (per-row statistics and the per-column parameters included).
//
//   bench_cuda_ops [google benchmark flags]        (exit 77 without a CUDA device)
// Timing, rotation and reporting: cuda_bench.cuh.
#include <cstdint>
#include <string>
#include <vector>

#include <pickscore/ops/activation.hpp>
#include <pickscore/ops/layernorm.hpp>
#include <pickscore/ops/optim.hpp>
#include <pickscore/ops/softmax.hpp>

#include "cuda_bench.cuh"

namespace {

using namespace pickscore;
using namespace pickscore::bench;

template <class T>
const char* type_name() {
    return std::is_same_v<T, float> ? "f32" : "bf16";
}

// `sets` tensors of one shape, filled with uniform values in [lo, hi).
template <class T>
std::vector<Tensor<T, Cuda>> random_sets(int sets, Shape shape, float lo, float hi, std::uint64_t seed) {
    std::vector<Tensor<T, Cuda>> v;
    v.reserve(std::size_t(sets));
    for (int i = 0; i < sets; ++i) {
        v.emplace_back(shape);
        fill_uniform<T>(v.back(), lo, hi, seed + std::uint64_t(i) * 7919);
    }
    return v;
}

template <class T>
void bm_layernorm_forward(benchmark::State& state, std::int64_t R, std::int64_t C) {
    guarded(state, [&] {
        const double s = sizeof(T);
        const double bytes = 2.0 * double(R * C) * s + 8.0 * double(R) + 2.0 * double(C) * s;
        const int sets = rotation_sets(bytes);
        auto x = random_sets<T>(sets, Shape{R, C}, -2.0f, 2.0f, 10);
        auto out = random_sets<T>(sets, Shape{R, C}, -1.0f, 1.0f, 11);
        auto mean = random_sets<float>(sets, Shape{R}, -1.0f, 1.0f, 12);
        auto rstd = random_sets<float>(sets, Shape{R}, -1.0f, 1.0f, 13);
        Tensor<T, Cuda> w(Shape{C}), b(Shape{C});
        fill_uniform<T>(w, 0.5f, 1.5f, 14);
        fill_uniform<T>(b, -0.5f, 0.5f, 15);
        run_timed(state, Work{0, bytes}, "", [&](std::int64_t i) {
            const auto k = std::size_t(i % sets);
            ops::layernorm_forward<T, Cuda>(out[k], mean[k], rstd[k], x[k], w, b);
        });
    });
}

template <class T>
void bm_add_layernorm_forward(benchmark::State& state, std::int64_t R, std::int64_t C) {
    guarded(state, [&] {
        const double s = sizeof(T);
        const double bytes = 4.0 * double(R * C) * s + 8.0 * double(R) + 2.0 * double(C) * s;
        const int sets = rotation_sets(bytes);
        auto a = random_sets<T>(sets, Shape{R, C}, -2.0f, 2.0f, 20);
        auto b = random_sets<T>(sets, Shape{R, C}, -1.0f, 1.0f, 21);
        auto resid = random_sets<T>(sets, Shape{R, C}, -1.0f, 1.0f, 22);
        auto out = random_sets<T>(sets, Shape{R, C}, -1.0f, 1.0f, 23);
        auto mean = random_sets<float>(sets, Shape{R}, -1.0f, 1.0f, 24);
        auto rstd = random_sets<float>(sets, Shape{R}, -1.0f, 1.0f, 25);
        Tensor<T, Cuda> w(Shape{C}), bias(Shape{C});
        fill_uniform<T>(w, 0.5f, 1.5f, 26);
        fill_uniform<T>(bias, -0.5f, 0.5f, 27);
        run_timed(state, Work{0, bytes}, "", [&](std::int64_t i) {
            const auto k = std::size_t(i % sets);
            ops::add_layernorm_forward<T, Cuda>(resid[k], out[k], mean[k], rstd[k], a[k], b[k], w, bias);
        });
    });
}

template <class T>
void bm_layernorm_backward(benchmark::State& state, std::int64_t R, std::int64_t C) {
    guarded(state, [&] {
        const double s = sizeof(T);
        // read dout, in, mean, rstd, weight; write din; dweight and dbias read and written
        const double bytes = 3.0 * double(R * C) * s + 8.0 * double(R) + 5.0 * double(C) * s;
        const int sets = rotation_sets(bytes);
        auto x = random_sets<T>(sets, Shape{R, C}, -2.0f, 2.0f, 30);
        auto dout = random_sets<T>(sets, Shape{R, C}, -1.0f, 1.0f, 31);
        auto din = random_sets<T>(sets, Shape{R, C}, -1.0f, 1.0f, 32);
        auto out = random_sets<T>(sets, Shape{R, C}, -1.0f, 1.0f, 33);
        auto mean = random_sets<float>(sets, Shape{R}, -1.0f, 1.0f, 34);
        auto rstd = random_sets<float>(sets, Shape{R}, -1.0f, 1.0f, 35);
        Tensor<T, Cuda> w(Shape{C}), b(Shape{C}), dw(Shape{C}), db(Shape{C});
        fill_uniform<T>(w, 0.5f, 1.5f, 36);
        fill_uniform<T>(b, -0.5f, 0.5f, 37);
        fill_uniform<T>(dw, -0.5f, 0.5f, 38);
        fill_uniform<T>(db, -0.5f, 0.5f, 39);
        // the statistics backward reads are those forward saves
        for (int k = 0; k < sets; ++k)
            ops::layernorm_forward<T, Cuda>(out[std::size_t(k)], mean[std::size_t(k)], rstd[std::size_t(k)],
                                            x[std::size_t(k)], w, b);
        run_timed(state, Work{0, bytes}, "", [&](std::int64_t i) {
            const auto k = std::size_t(i % sets);
            ops::layernorm_backward<T, Cuda>(din[k], dw, db, dout[k], x[k], w, mean[k], rstd[k]);
        });
    });
}

template <class T>
void bm_softmax_forward(benchmark::State& state, std::int64_t R, std::int64_t N) {
    guarded(state, [&] {
        const double bytes = 2.0 * double(R * N) * sizeof(T);
        const int sets = rotation_sets(bytes);
        auto x = random_sets<T>(sets, Shape{R, N}, -4.0f, 4.0f, 40);
        auto out = random_sets<T>(sets, Shape{R, N}, -1.0f, 1.0f, 41);
        run_timed(state, Work{0, bytes}, "", [&](std::int64_t i) {
            const auto k = std::size_t(i % sets);
            ops::softmax_forward<T, Cuda>(out[k], x[k]);
        });
    });
}

template <class T>
void bm_softmax_backward(benchmark::State& state, std::int64_t R, std::int64_t N) {
    guarded(state, [&] {
        const double bytes = 3.0 * double(R * N) * sizeof(T);
        const int sets = rotation_sets(bytes);
        auto x = random_sets<T>(sets, Shape{R, N}, -4.0f, 4.0f, 50);
        auto out = random_sets<T>(sets, Shape{R, N}, -1.0f, 1.0f, 51);
        auto dout = random_sets<T>(sets, Shape{R, N}, -1.0f, 1.0f, 52);
        auto din = random_sets<T>(sets, Shape{R, N}, -1.0f, 1.0f, 53);
        for (int k = 0; k < sets; ++k) ops::softmax_forward<T, Cuda>(out[std::size_t(k)], x[std::size_t(k)]);
        run_timed(state, Work{0, bytes}, "", [&](std::int64_t i) {
            const auto k = std::size_t(i % sets);
            ops::softmax_backward<T, Cuda>(din[k], dout[k], out[k]);
        });
    });
}

template <class T>
void bm_gelu_forward(benchmark::State& state, std::int64_t R, std::int64_t N) {
    guarded(state, [&] {
        const double bytes = 2.0 * double(R * N) * sizeof(T);
        const int sets = rotation_sets(bytes);
        auto x = random_sets<T>(sets, Shape{R, N}, -4.0f, 4.0f, 60);
        auto out = random_sets<T>(sets, Shape{R, N}, -1.0f, 1.0f, 61);
        run_timed(state, Work{0, bytes}, "", [&](std::int64_t i) {
            const auto k = std::size_t(i % sets);
            ops::activation_forward<T, Cuda>(out[k], x[k], ops::Activation::gelu_erf);
        });
    });
}

// One AdamW step over n parameters in one launch: f32 master weights, f32 moments, gradients of
// type G, the bf16 working copy written in the same pass, clipping by a stored global norm.
template <class G>
void bm_adamw_flat(benchmark::State& state, std::int64_t n) {
    guarded(state, [&] {
        // param, m, v read and written (f32), grad read, param_bf16 written
        const double bytes = double(n) * (3.0 * 8.0 + double(sizeof(G)) + 2.0);
        Tensor<float, Cuda> param(Shape{n}), m(Shape{n}), v(Shape{n}), norm(Shape{1});
        Tensor<G, Cuda> grad(Shape{n});
        Tensor<bf16, Cuda> param_bf16(Shape{n});
        fill_uniform<float>(param, -0.1f, 0.1f, 70);
        fill_uniform<float>(m, -1e-3f, 1e-3f, 71);
        fill_uniform<float>(v, 0.0f, 1e-6f, 72);  // second moments are >= 0
        fill_uniform<G>(grad, -1e-3f, 1e-3f, 73);
        fill_uniform<bf16>(param_bf16, -0.1f, 0.1f, 74);
        fill_uniform<float>(norm, 1.5f, 2.0f, 75);  // above max_norm = 1: the clipping path is taken
        const ops::AdamWConfig cfg;                 // PickScore's: lr 3e-6, betas (0.9, 0.999), wd 0.3
        run_timed(state, Work{0, bytes}, "", [&](std::int64_t) {
            ops::adamw_step_flat<G, Cuda>(param, param_bf16, m, v, grad, norm, 1.0, 100, cfg);
        });
    });
}

template <class T>
void register_type() {
    const std::string t = type_name<T>();
    const std::int64_t rows = 257 * 256, width = 1280, hidden = 5120;
    const std::int64_t attn_rows = 256 * 16 * 257, tokens = 257;
    const std::string ln_shape = "/R:" + std::to_string(rows) + "/C:" + std::to_string(width);
    add("BM_layernorm_forward/" + t + ln_shape, bm_layernorm_forward<T>, rows, width);
    add("BM_add_layernorm_forward/" + t + ln_shape, bm_add_layernorm_forward<T>, rows, width);
    add("BM_layernorm_backward/" + t + ln_shape, bm_layernorm_backward<T>, rows, width);
    const std::string sm_shape = "/R:" + std::to_string(attn_rows) + "/N:" + std::to_string(tokens);
    add("BM_softmax_forward/" + t + sm_shape, bm_softmax_forward<T>, attn_rows, tokens);
    add("BM_softmax_backward/" + t + sm_shape, bm_softmax_backward<T>, attn_rows, tokens);
    add("BM_gelu_erf_forward/" + t + "/R:" + std::to_string(rows) + "/N:" + std::to_string(hidden),
        bm_gelu_forward<T>, rows, hidden);
}

}  // namespace

int main(int argc, char** argv) {
    return pickscore::bench::main_with(argc, argv, [] {
        pickscore::bench::register_ceilings();
        register_type<float>();
        register_type<pickscore::bf16>();
        const std::int64_t n = std::int64_t(1) << 28;
        pickscore::bench::add("BM_adamw_step_flat/grad_f32/n:" + std::to_string(n), bm_adamw_flat<float>, n);
        pickscore::bench::add("BM_adamw_step_flat/grad_bf16/n:" + std::to_string(n), bm_adamw_flat<pickscore::bf16>,
                              n);
    });
}
