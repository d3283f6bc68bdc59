// pickscore/cuda/gemm.hpp — the CUDA backend of ops/gemm.hpp: GEMM, batched GEMM and the Linear
// layer, all through blas::matmul (cuBLASLt). Same arguments as the CPU backend
// (pickscore/cpu/gemm.hpp): row-major, leading dimensions in elements, shapes already checked by
// the ops layer. Element types: float and bf16 (accumulation in f32).
//
// Linear backward fuses the bias gradient into the weight-gradient GEMM (cuBLASLt's BGRADB
// epilogue, which writes Σ_rows dy into a scratch vector) and then adds it to db, because
// parameter gradients accumulate.
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
#pragma once

#include <cstdint>
#include <type_traits>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../ops/common.hpp"
#include "blas.hpp"
#include "context.hpp"
#include "storage.hpp"

namespace pickscore::cuda {

template <class T>
inline constexpr bool blas_supported = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

// C = alpha · op(A) · op(B) + beta · C  (row-major, as cpu::gemm)
template <class T>
void gemm(ops::Trans ta, ops::Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, double beta, T* C, std::int64_t ldc) {
    static_assert(blas_supported<T>, "the CUDA backend's GEMM supports f32 and bf16");
    blas::Gemm g;
    g.dtype = dtype_of<T>;
    g.ta = ta;
    g.tb = tb;
    g.M = M;
    g.N = N;
    g.K = K;
    g.A = A;
    g.lda = lda;
    g.B = B;
    g.ldb = ldb;
    g.C = C;
    g.ldc = ldc;
    g.alpha = float(alpha);
    g.beta = float(beta);
    blas::matmul(g);
}

// C[i] = alpha · op(A[i]) · op(B[i]) + beta · C[i] for i < batch, matrices packed with strides.
template <class T>
void gemm_batched(ops::Trans ta, ops::Trans tb, std::int64_t batch, std::int64_t M, std::int64_t N, std::int64_t K,
                  double alpha, const T* A, std::int64_t lda, std::int64_t stride_a, const T* B, std::int64_t ldb,
                  std::int64_t stride_b, double beta, T* C, std::int64_t ldc, std::int64_t stride_c) {
    static_assert(blas_supported<T>, "the CUDA backend's GEMM supports f32 and bf16");
    blas::Gemm g;
    g.dtype = dtype_of<T>;
    g.ta = ta;
    g.tb = tb;
    g.M = M;
    g.N = N;
    g.K = K;
    g.batch = batch;
    g.A = A;
    g.lda = lda;
    g.stride_a = stride_a;
    g.B = B;
    g.ldb = ldb;
    g.stride_b = stride_b;
    g.C = C;
    g.ldc = ldc;
    g.stride_c = stride_c;
    g.alpha = float(alpha);
    g.beta = float(beta);
    blas::matmul(g);
}

// y[M,N] = x[M,K] · W[N,K]ᵀ + b[N]   (b may be null)
template <class T>
void linear_forward(T* y, const T* x, const T* W, const T* b, std::int64_t M, std::int64_t N, std::int64_t K) {
    static_assert(blas_supported<T>, "the CUDA backend's Linear supports f32 and bf16");
    blas::Gemm g;
    g.dtype = dtype_of<T>;
    g.ta = ops::Trans::N;
    g.tb = ops::Trans::T;
    g.M = M;
    g.N = N;
    g.K = K;
    g.A = x;
    g.lda = K;
    g.B = W;
    g.ldb = K;
    g.C = y;
    g.ldc = N;
    if (b != nullptr) {
        g.epilogue = blas::Epilogue::bias;
        g.bias = b;
    }
    blas::matmul(g);
}

// dx[M,K] = dy · W (written; dx may be null), dW[N,K] += dyᵀ · x, db[N] += Σ_rows dy (db may be null).
template <class T>
void linear_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, std::int64_t M, std::int64_t N,
                     std::int64_t K) {
    static_assert(blas_supported<T>, "the CUDA backend's Linear supports f32 and bf16");
    if (dx != nullptr) gemm<T>(ops::Trans::N, ops::Trans::N, M, K, N, 1.0, dy, N, W, K, 0.0, dx, K);
    if (M == 0) return;  // no rows: the parameter gradients gain nothing
    blas::Gemm g;
    g.dtype = dtype_of<T>;
    g.ta = ops::Trans::T;  // op(A) = dyᵀ [N,M]
    g.tb = ops::Trans::N;  // op(B) = x [M,K]
    g.M = N;
    g.N = K;
    g.K = M;
    g.A = dy;
    g.lda = N;
    g.B = x;
    g.ldb = K;
    g.C = dW;
    g.ldc = K;
    g.beta = 1.0f;
    Tensor<T, Cuda> db_step;
    if (db != nullptr) {
        db_step = Tensor<T, Cuda>(Shape{N});
        g.epilogue = blas::Epilogue::bgrad_a;  // Σ_k op(A)[n,k] = Σ_m dy[m,n]
        g.bias_grad = db_step.data();
    }
    blas::matmul(g);
    if (db != nullptr) blas::accumulate(dtype_of<T>, db, db_step.data(), N);
}

}  // namespace pickscore::cuda
