// The program every consumer test builds (find_package, add_subdirectory, meson subproject): it
// uses pickscore the way a user's project would — tensors, the Linear layer, an error — and exits
// non-zero when a result is wrong, so a consumer that compiles but links or behaves wrongly fails.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include <pickscore/core.hpp>
#include <pickscore/ops/gemm.hpp>

int main() {
    using namespace pickscore;
    constexpr std::int64_t M = 3, K = 5, N = 4;
    Tensor<float> x(Shape{M, K}), W(Shape{N, K}), b(Shape{N});
    Tensor<float> y = Tensor<float>::zeros(Shape{M, N});
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float(i % 7) - 3.0f;
    for (std::int64_t i = 0; i < W.numel(); ++i) W[i] = 0.25f * float(i % 5) - 0.5f;
    for (std::int64_t j = 0; j < N; ++j) b[j] = float(j);

    ops::linear_forward(y, x, W, b);

    int wrong = 0;
    for (std::int64_t i = 0; i < M; ++i) {
        for (std::int64_t j = 0; j < N; ++j) {
            double want = b[j];
            for (std::int64_t k = 0; k < K; ++k) want += double(x.at(i, k)) * double(W.at(j, k));
            // All inputs are small multiples of 1/4, so every product and sum is exact in float.
            if (y.at(i, j) != float(want)) {
                std::fprintf(stderr, "y[%lld,%lld] = %g, expected %g\n", (long long)i, (long long)j,
                             double(y.at(i, j)), want);
                ++wrong;
            }
        }
    }

    // A mismatched shape must throw ShapeError, catchable as pickscore::Error.
    bool threw = false;
    try {
        Tensor<float> W_bad(Shape{N, K + 1});
        ops::linear_forward(y, x, W_bad, {});
    } catch (const Error& e) {
        threw = dynamic_cast<const ShapeError*>(&e) != nullptr &&
                std::string(e.what()).find("linear_forward") != std::string::npos;
    }
    if (!threw) {
        std::fprintf(stderr, "a mismatched weight did not throw a ShapeError naming linear_forward\n");
        ++wrong;
    }

    if (wrong) return 1;
    std::printf("consumer: linear_forward %lldx%lld -> %lld ok\n", (long long)M, (long long)K, (long long)N);
    return 0;
}
