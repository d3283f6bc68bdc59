// pickscore's Linear layer on the GPU (ops::linear_forward on Tensor<bf16, Cuda>: cuBLASLt through
// blas::matmul with the bias fused as a cuBLASLt epilogue) against raw cuBLASLt at the same shape,
// in the same run, at the ViT-H/14 shapes: y[M, N] = x[M, K] · W[N, K]ᵀ + b, M = 257 · batch for
// batch 16 and 256, (N, K) = (3840, 1280) QKV, (1280, 1280) attention out, (5120, 1280) MLP up,
// (1280, 5120) MLP down. bf16 in and out, fp32 accumulation.
//
//   BM_linear/raw_lt/...          raw cuBLASLt, no epilogue: descriptors and the heuristic's first
//                                 algorithm set up once, only cublasLtMatmul in the timed loop
//                                 (the baseline of the goal)
//   BM_linear/raw_lt_bias/...     the same with cuBLASLt's BIAS epilogue (what the fusion costs
//                                 cuBLASLt itself)
//   BM_linear/pickscore_bias/...  ops::linear_forward with a bias, everything it does per call
//                                 included (descriptor set-up, algorithm cache look-up)
// Goal (issue 3): pickscore_bias at least 95% of raw_lt at every shape. The flops counter counts
// 2·M·N·K (the bias add is not counted). Before timing, pickscore's output is compared with raw
// cuBLASLt + bias on the first rows, so a benchmark of a wrong product cannot pass unnoticed.
//
//   bench_cuda_gemm [google benchmark flags]       (exit 77 without a CUDA device)
// Timing, rotation and reporting: cuda_bench.cuh.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <pickscore/ops/gemm.hpp>

#include "cuda_bench.cuh"

namespace {

using namespace pickscore;
using namespace pickscore::bench;

enum class Variant { raw, raw_bias, pickscore_bias };

const char* variant_name(Variant v) {
    switch (v) {
        case Variant::raw: return "raw_lt";
        case Variant::raw_bias: return "raw_lt_bias";
        case Variant::pickscore_bias: return "pickscore_bias";
    }
    return "?";
}

std::string shape_name(std::int64_t M, std::int64_t N, std::int64_t K) {
    return "/M:" + std::to_string(M) + "/N:" + std::to_string(N) + "/K:" + std::to_string(K);
}

std::string bench_name(Variant v, std::int64_t M, std::int64_t N, std::int64_t K) {
    return std::string("BM_linear/") + variant_name(v) + shape_name(M, N, K);
}

// The first `rows` rows of a row-major [M, N] bf16 device matrix, as floats.
std::vector<float> head_rows(const Tensor<bf16, Cuda>& y, std::int64_t rows, std::int64_t N) {
    std::vector<bf16> h(std::size_t(rows * N));
    cuda::check(cudaMemcpyAsync(h.data(), y.data(), h.size() * sizeof(bf16), cudaMemcpyDeviceToHost,
                                cuda::current().stream()),
                "cudaMemcpyAsync (device to host)");
    cuda::synchronize();
    std::vector<float> f(h.size());
    std::transform(h.begin(), h.end(), f.begin(), [](bf16 v) { return cast<float>(v); });
    return f;
}

void bm_linear(benchmark::State& state, Variant variant, std::int64_t M, std::int64_t N, std::int64_t K) {
    guarded(state, [&] {
        const double bytes_per_set = 2.0 * double(M * K + N * K + M * N + N);
        const int sets = rotation_sets(bytes_per_set);
        std::vector<Tensor<bf16, Cuda>> x, W, b, y;
        for (int i = 0; i < sets; ++i) {
            const std::uint64_t seed = 100 + std::uint64_t(i) * 4;
            x.emplace_back(Shape{M, K});
            fill_uniform<bf16>(x.back(), -1.0f, 1.0f, seed);
            W.emplace_back(Shape{N, K});
            fill_uniform<bf16>(W.back(), -0.1f, 0.1f, seed + 1);
            b.emplace_back(Shape{N});
            fill_uniform<bf16>(b.back(), -1.0f, 1.0f, seed + 2);
            y.emplace_back(Shape{M, N});
            fill_uniform<bf16>(y.back(), -1.0f, 1.0f, seed + 3);
        }
        const Work work{2.0 * double(M) * double(N) * double(K), 0};
        if (variant == Variant::pickscore_bias) {
            // pickscore's result must be raw cuBLASLt's (up to the rounding of another algorithm)
            RawLinear ref(M, N, K, true);
            Tensor<bf16, Cuda> y_ref(Shape{M, N});
            ref.run(x[0].data(), W[0].data(), b[0].data(), y_ref.data());
            ops::linear_forward<bf16, Cuda>(y[0], x[0], W[0], b[0]);
            const std::int64_t rows = std::min<std::int64_t>(M, 64);
            const std::vector<float> got = head_rows(y[0], rows, N), want = head_rows(y_ref, rows, N);
            float scale = 0, diff = 0;
            for (std::size_t i = 0; i < got.size(); ++i) {
                scale = std::max(scale, std::fabs(want[i]));
                diff = std::max(diff, std::isnan(got[i]) ? INFINITY : std::fabs(got[i] - want[i]));
            }
            // bf16 outputs of two fp32-accumulating algorithms differ by a few bf16 ulps at most
            require(diff <= 1e-2f * scale, "ops::linear_forward differs from raw cuBLASLt + bias by ", diff,
                    " (largest |y| ", scale, ")");
            run_timed(state, work, bench_name(Variant::raw, M, N, K), [&](std::int64_t i) {
                const auto k = std::size_t(i % sets);
                ops::linear_forward<bf16, Cuda>(y[k], x[k], W[k], b[k]);
            });
        } else {
            const bool bias = variant == Variant::raw_bias;
            RawLinear gemm(M, N, K, bias);
            run_timed(state, work, bias ? bench_name(Variant::raw, M, N, K) : std::string(), [&](std::int64_t i) {
                const auto k = std::size_t(i % sets);
                gemm.run(x[k].data(), W[k].data(), bias ? b[k].data() : nullptr, y[k].data());
            });
        }
    });
}

}  // namespace

int main(int argc, char** argv) {
    return pickscore::bench::main_with(argc, argv, [] {
        pickscore::bench::register_ceilings();
        const std::int64_t nk[4][2] = {{3840, 1280}, {1280, 1280}, {5120, 1280}, {1280, 5120}};
        for (const std::int64_t batch : {16, 256}) {
            const std::int64_t M = 257 * batch;
            for (const auto& s : nk)
                for (const Variant v : {Variant::raw, Variant::raw_bias, Variant::pickscore_bias})
                    pickscore::bench::add(bench_name(v, M, s[0], s[1]), bm_linear, v, M, s[0], s[1]);
        }
    });
}
