// GEMM and the Linear convention: forward against the definition, backward against finite
// differences, the f32 fast path against the reference loops, and the shape errors.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <pickscore/ops/gemm.hpp>

#include "support/gradcheck.hpp"

using namespace pickscore;
using namespace pickscore::test;
using ops::Trans;

namespace {
struct LinearCase {
    Shape x;   // [..., K]
    std::int64_t n;
    bool bias;
};
}  // namespace

TEST_CASE("linear backward matches finite differences") {
    // Awkward shapes: 257 tokens, batch 1, widths that are not multiples of 8.
    const LinearCase cases[] = {
        {Shape{1, 5}, 3, true},  {Shape{2, 257, 13}, 7, true}, {Shape{1, 77, 80}, 19, false},
        {Shape{9, 31}, 33, true}, {Shape{4}, 6, true},
    };
    Rng rng(1);
    for (const auto& c : cases) {
        const std::int64_t K = c.x[-1];
        T64 x = randn(c.x, rng);
        T64 W = randn(Shape{c.n, K}, rng, 1.0 / std::sqrt(double(K)));
        T64 b = c.bias ? randn(Shape{c.n}, rng) : T64();
        Shape yshape = c.x;
        yshape = [&] {
            Shape s;
            for (int i = 0; i + 1 < c.x.rank(); ++i) s.push_back(c.x[i]);
            s.push_back(c.n);
            return s;
        }();
        T64 g = randn(yshape, rng);
        auto loss = [&] {
            T64 y(yshape);
            ops::linear_forward<double>(y, x, W, b);
            return dot(y, g);
        };
        // Parameter gradients accumulate: start from non-zero values and subtract them afterwards.
        T64 dx(c.x);
        T64 dW0 = randn(W.shape(), rng), dW = clone(dW0.view());
        T64 db0 = c.bias ? randn(Shape{c.n}, rng) : T64(), db = c.bias ? clone(db0.view()) : T64();
        ops::linear_backward<double>(dx, dW, db, g, x, W);
        for (std::int64_t i = 0; i < dW.numel(); ++i) dW[i] -= dW0[i];
        for (std::int64_t i = 0; i < db.numel(); ++i) db[i] -= db0[i];
        std::vector<GradInput> inputs{{"x", x, dx}, {"W", W, dW}};
        if (c.bias) inputs.push_back({"b", b, db});
        check_gradients("linear " + c.x.str() + " -> " + std::to_string(c.n), inputs, loss, rng);
    }
}

TEST_CASE("gemm transposes and batches follow the definition") {
    Rng rng(2);
    for (Trans ta : {Trans::N, Trans::T})
        for (Trans tb : {Trans::N, Trans::T}) {
            const std::int64_t M = 7, N = 5, K = 9;
            T64 A = randn(ta == Trans::N ? Shape{M, K} : Shape{K, M}, rng);
            T64 B = randn(tb == Trans::N ? Shape{K, N} : Shape{N, K}, rng);
            T64 C = randn(Shape{M, N}, rng);
            T64 C0 = clone(C.view());
            ops::gemm<double>(C, A, B, ta, tb, 0.5, 2.0);
            for (std::int64_t i = 0; i < M; ++i)
                for (std::int64_t j = 0; j < N; ++j) {
                    double s = 0;
                    for (std::int64_t k = 0; k < K; ++k)
                        s += (ta == Trans::N ? A.at(i, k) : A.at(k, i)) * (tb == Trans::N ? B.at(k, j) : B.at(j, k));
                    CHECK(C.at(i, j) == doctest::Approx(0.5 * s + 2.0 * C0.at(i, j)).epsilon(1e-12));
                }
        }
    T64 A = randn(Shape{3, 4, 6}, rng), B = randn(Shape{3, 5, 6}, rng), C(Shape{3, 4, 5});
    ops::gemm_batched<double>(C, A, B, Trans::N, Trans::T);
    for (std::int64_t b = 0; b < 3; ++b)
        for (std::int64_t i = 0; i < 4; ++i)
            for (std::int64_t j = 0; j < 5; ++j) {
                double s = 0;
                for (std::int64_t k = 0; k < 6; ++k) s += A.at(b, i, k) * B.at(b, j, k);
                CHECK(C.at(b, i, j) == doctest::Approx(s).epsilon(1e-12));
            }
}

TEST_CASE("the f32 GEMM agrees with the double reference on awkward shapes") {
    Rng rng(3);
    const std::int64_t shapes[][3] = {{1, 1, 1},   {257, 13, 80},  {5, 1280 / 8, 33}, {64, 64, 64},
                                      {257, 96, 257}, {3, 517, 129}, {130, 70, 1000}};
    for (const auto& s : shapes)
        for (Trans ta : {Trans::N, Trans::T})
            for (Trans tb : {Trans::N, Trans::T}) {
                const std::int64_t M = s[0], N = s[1], K = s[2];
                Tensor<float> A(ta == Trans::N ? Shape{M, K} : Shape{K, M});
                Tensor<float> B(tb == Trans::N ? Shape{K, N} : Shape{N, K});
                Tensor<float> C(Shape{M, N});
                fill_normal(A.view(), rng);
                fill_normal(B.view(), rng);
                fill_normal(C.view(), rng);
                auto Ad = to_dtype<double>(A.view()), Bd = to_dtype<double>(B.view()), Cd = to_dtype<double>(C.view());
                ops::gemm<float>(C, A, B, ta, tb, 1.5, -0.5);
                ops::gemm<double>(Cd, Ad, Bd, ta, tb, 1.5, -0.5);
                // f32 accumulation over K terms of size ~1: error grows like sqrt(K)·eps·|terms|.
                const double atol = 1e-6 * std::sqrt(double(K)) * 4, rtol = 1e-5;
                CHECK_MESSAGE(max_scaled_error(C.cview(), Cd.cview(), atol, rtol) <= 1.0,
                              "M=" << M << " N=" << N << " K=" << K << " ta=" << int(ta) << " tb=" << int(tb));
            }
}

TEST_CASE("gemm and linear name the op and both shapes on a mismatch") {
    Tensor<float> x(Shape{4, 8}), W(Shape{3, 7}), y(Shape{4, 3});
    try {
        ops::linear_forward<float>(y, x, W, {});
        FAIL("no error thrown");
    } catch (const ShapeError& e) {
        const std::string msg = e.what();
        CHECK(msg.find("linear_forward") != std::string::npos);
        CHECK(msg.find("[4, 8]") != std::string::npos);
        CHECK(msg.find("[3, 7]") != std::string::npos);
    }
    Tensor<float> A(Shape{4, 5}), B(Shape{6, 3}), C(Shape{4, 3});
    CHECK_THROWS_AS(ops::gemm<float>(C, A, B), ShapeError);
    Tensor<float> b(Shape{4});
    Tensor<float> W2(Shape{3, 8});
    CHECK_THROWS_AS(ops::linear_forward<float>(y, x, W2, b), ShapeError);
}
