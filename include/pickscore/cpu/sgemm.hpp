// pickscore/cpu/sgemm.hpp — f32 GEMM for the CPU (placeholder until the blocked SIMD kernel lands:
// forwards to the reference loops).
#pragma once

#include <cstdint>

#include "../ops/common.hpp"

namespace pickscore::cpu {

template <class T>
void gemm_reference(ops::Trans ta, ops::Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, double alpha,
                    const T* A, std::int64_t lda, const T* B, std::int64_t ldb, double beta, T* C, std::int64_t ldc);

inline void sgemm(ops::Trans ta, ops::Trans tb, std::int64_t M, std::int64_t N, std::int64_t K, float alpha,
                  const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float beta, float* C,
                  std::int64_t ldc) {
    gemm_reference<float>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace pickscore::cpu
