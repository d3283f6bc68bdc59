// pickscore/cpu/gemm.hpp — matrix products on the CPU: the readable reference and the dispatch to
// the blocked SIMD sgemm (cpu/sgemm.hpp) for f32.
//
// Row-major throughout: op(A) is M x K, op(B) is K x N, C is M x N, each with a leading dimension
// (the distance between rows in elements). beta == 0 means C is not read, as in BLAS.
#pragma once

#include <cstdint>

#include "../core/dtype.hpp"
#include "../core/threads.hpp"
#include "../ops/common.hpp"
#include "sgemm.hpp"

namespace pickscore::cpu {

using ops::Trans;

// C = alpha * op(A) * op(B) + beta * C, by the definition, accumulating in acc_t<T>.
template <class T>
void gemm_reference(Trans ta, Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha, const T* A,
                    std::int64_t lda, const T* B, std::int64_t ldb, double beta, T* C, std::int64_t ldc) {
    using Acc = acc_t<T>;
    for (std::int64_t i = 0; i < M; ++i) {
        for (std::int64_t j = 0; j < N; ++j) {
            Acc sum = 0;
            for (std::int64_t k = 0; k < K; ++k) {
                const Acc a = cast<Acc>(ta == Trans::N ? A[i * lda + k] : A[k * lda + i]);
                const Acc b = cast<Acc>(tb == Trans::N ? B[k * ldb + j] : B[j * ldb + k]);
                sum += a * b;
            }
            Acc c = Acc(alpha) * sum;
            if (beta != 0.0) c += Acc(beta) * cast<Acc>(C[i * ldc + j]);
            C[i * ldc + j] = cast<T>(c);
        }
    }
}

// The CPU GEMM every op uses: the blocked, vectorised, multi-threaded sgemm for f32, the
// reference loops (rows spread over the thread pool) for every other element type.
template <class T>
void gemm(Trans ta, Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha, const T* A,
          std::int64_t lda, const T* B, std::int64_t ldb, double beta, T* C, std::int64_t ldc) {
    if constexpr (std::is_same_v<T, float>) {
        sgemm(ta, tb, M, N, K, float(alpha), A, lda, B, ldb, float(beta), C, ldc);
    } else {
        constexpr std::int64_t rows_per_task = 16;
        const std::int64_t tasks = (M + rows_per_task - 1) / rows_per_task;
        parallel_for(tasks, [&](std::int64_t t) {
            const std::int64_t i0 = t * rows_per_task;
            const std::int64_t m = std::min(rows_per_task, M - i0);
            const T* a = ta == Trans::N ? A + i0 * lda : A + i0;
            gemm_reference(ta, tb, m, N, K, alpha, a, lda, B, ldb, beta, C + i0 * ldc, ldc);
        });
    }
}

}  // namespace pickscore::cpu
