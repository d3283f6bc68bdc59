// pickscore/ops/gemm.hpp — matrix products: general, batched, and the Linear layer's convention.
//
// Linear convention (PyTorch's nn.Linear, the checkpoints' [out, in] weights):
//     y[M, N] = x[M, K] · W[N, K]ᵀ + b[N]
// where M is every leading dimension of x folded together (x may be [B, T, K]).
// Backward:  dx = dy · W        (written)
//            dW += dyᵀ · x      (accumulated)
//            db += Σ_rows dy    (accumulated)
#pragma once

#include <cstdint>
#include <vector>

#include "../core/tensor.hpp"
#include "../cpu/gemm.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/gemm.hpp"
#endif

namespace pickscore::ops {

namespace detail {
inline void gemm_dims(const char* op, const Shape& c, const Shape& a, const Shape& b, Trans ta, Trans tb, int first,
                      std::int64_t& M, std::int64_t& N, std::int64_t& K) {
    M = c[first];
    N = c[first + 1];
    const std::int64_t am = ta == Trans::N ? a[first] : a[first + 1];
    K = ta == Trans::N ? a[first + 1] : a[first];
    const std::int64_t bk = tb == Trans::N ? b[first] : b[first + 1];
    const std::int64_t bn = tb == Trans::N ? b[first + 1] : b[first];
    require<ShapeError>(am == M && bk == K && bn == N, op, ": C ", c, " = op(A ", a, ")", ta == Trans::T ? "ᵀ" : "",
                        " · op(B ", b, ")", tb == Trans::T ? "ᵀ" : "", " does not fit");
}
}  // namespace detail

// C[M,N] = alpha · op(A) · op(B) + beta · C, with op(A) = A[M,K] or A[K,M]ᵀ, op(B) = B[K,N] or B[N,K]ᵀ.
template <class T, class D>
void gemm(TensorView<T, D> C, In<T, D> A, In<T, D> B, Trans ta = Trans::N, Trans tb = Trans::N, double alpha = 1.0,
          double beta = 0.0) {
    check_rank("gemm", "C", C.shape(), 2);
    check_rank("gemm", "A", A.shape(), 2);
    check_rank("gemm", "B", B.shape(), 2);
    std::int64_t M, N, K;
    detail::gemm_dims("gemm", C.shape(), A.shape(), B.shape(), ta, tb, 0, M, N, K);
    if constexpr (is_cpu<D>) {
        cpu::gemm<T>(ta, tb, M, N, K, alpha, A.data(), A.size(1), B.data(), B.size(1), beta, C.data(), C.size(1));
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::gemm<T>(ta, tb, M, N, K, alpha, A.data(), A.size(1), B.data(), B.size(1), beta, C.data(), C.size(1));
#endif
    } else {
        static_assert(dependent_false<D>, "gemm: no backend for this device in this build");
    }
}

// C[i] = alpha · op(A[i]) · op(B[i]) + beta · C[i] for every i of the leading (batch) dimension.
template <class T, class D>
void gemm_batched(TensorView<T, D> C /*Bt,M,N*/, In<T, D> A, In<T, D> B, Trans ta = Trans::N, Trans tb = Trans::N,
                  double alpha = 1.0, double beta = 0.0) {
    check_rank("gemm_batched", "C", C.shape(), 3);
    check_rank("gemm_batched", "A", A.shape(), 3);
    check_rank("gemm_batched", "B", B.shape(), 3);
    check_dim("gemm_batched", "C", C.shape(), 0, "A", A.shape(), 0);
    check_dim("gemm_batched", "C", C.shape(), 0, "B", B.shape(), 0);
    std::int64_t M, N, K;
    detail::gemm_dims("gemm_batched", C.shape(), A.shape(), B.shape(), ta, tb, 1, M, N, K);
    if constexpr (is_cpu<D>) {
        for (std::int64_t i = 0; i < C.size(0); ++i) {
            auto c = C.select(i);
            auto a = A.select(i);
            auto b = B.select(i);
            cpu::gemm<T>(ta, tb, M, N, K, alpha, a.data(), a.size(1), b.data(), b.size(1), beta, c.data(), c.size(1));
        }
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::gemm_batched<T>(ta, tb, C.size(0), M, N, K, alpha, A.data(), A.size(2), A.size(1) * A.size(2), B.data(),
                              B.size(2), B.size(1) * B.size(2), beta, C.data(), C.size(2), M * N);
#endif
    } else {
        static_assert(dependent_false<D>, "gemm_batched: no backend for this device in this build");
    }
}

// y[..., N] = x[..., K] · W[N, K]ᵀ + b[N]   (b may be empty)
template <class T, class D>
void linear_forward(TensorView<T, D> y, In<T, D> x, In<T, D> W, In<T, D> b) {
    check_rank("linear_forward", "W", W.shape(), 2);
    require<ShapeError>(x.rank() >= 1 && y.rank() == x.rank(), "linear_forward: y has shape ", y.shape(),
                        " and x has shape ", x.shape(), " (same rank expected)");
    check_dim("linear_forward", "x", x.shape(), -1, "W", W.shape(), 1);
    check_dim("linear_forward", "y", y.shape(), -1, "W", W.shape(), 0);
    require<ShapeError>(x.shape().rows() == y.shape().rows(), "linear_forward: y has shape ", y.shape(),
                        " and x has shape ", x.shape(), " (leading dimensions must agree)");
    if (!b.empty()) check_shape("linear_forward", "b", b.shape(), Shape{W.size(0)});
    const auto y2 = y.as_matrix();
    const auto x2 = x.as_matrix();
    const std::int64_t M = x2.size(0), N = W.size(0), K = W.size(1);
    if constexpr (is_cpu<D>) {
        double beta = 0.0;
        if (!b.empty()) {
            for (std::int64_t i = 0; i < M; ++i)
                for (std::int64_t j = 0; j < N; ++j) y2[i * N + j] = b[j];
            beta = 1.0;
        }
        cpu::gemm<T>(Trans::N, Trans::T, M, N, K, 1.0, x2.data(), K, W.data(), K, beta, y2.data(), N);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::linear_forward<T>(y2.data(), x2.data(), W.data(), b.data(), M, N, K);
#endif
    } else {
        static_assert(dependent_false<D>, "linear_forward: no backend for this device in this build");
    }
}

// dx[..., K] = dy · W (written; may be empty), dW[N, K] += dyᵀ · x, db[N] += Σ dy (may be empty).
template <class T, class D>
void linear_backward(TensorView<T, D> dx, TensorView<T, D> dW, TensorView<T, D> db, In<T, D> dy, In<T, D> x,
                     In<T, D> W) {
    check_rank("linear_backward", "W", W.shape(), 2);
    check_shape("linear_backward", "dW", dW.shape(), W.shape());
    check_dim("linear_backward", "x", x.shape(), -1, "W", W.shape(), 1);
    check_dim("linear_backward", "dy", dy.shape(), -1, "W", W.shape(), 0);
    require<ShapeError>(x.shape().rows() == dy.shape().rows(), "linear_backward: dy has shape ", dy.shape(),
                        " and x has shape ", x.shape(), " (leading dimensions must agree)");
    if (!dx.empty()) check_shape("linear_backward", "dx", dx.shape(), x.shape());
    if (!db.empty()) check_shape("linear_backward", "db", db.shape(), Shape{W.size(0)});
    const auto dy2 = dy.as_matrix();
    const auto x2 = x.as_matrix();
    const std::int64_t M = x2.size(0), N = W.size(0), K = W.size(1);
    if constexpr (is_cpu<D>) {
        if (!dx.empty())
            cpu::gemm<T>(Trans::N, Trans::N, M, K, N, 1.0, dy2.data(), N, W.data(), K, 0.0, dx.data(), K);
        cpu::gemm<T>(Trans::T, Trans::N, N, K, M, 1.0, dy2.data(), N, x2.data(), K, 1.0, dW.data(), K);
        if (!db.empty()) {
            using Acc = acc_t<T>;
            std::vector<Acc> sum(std::size_t(N), Acc(0));
            for (std::int64_t i = 0; i < M; ++i)
                for (std::int64_t j = 0; j < N; ++j) sum[std::size_t(j)] += cast<Acc>(dy2[i * N + j]);
            for (std::int64_t j = 0; j < N; ++j) db[j] = cast<T>(cast<Acc>(db[j]) + sum[std::size_t(j)]);
        }
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::linear_backward<T>(dx.data(), dW.data(), db.data(), dy2.data(), x2.data(), W.data(), M, N, K);
#endif
    } else {
        static_assert(dependent_false<D>, "linear_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
