// pickscore/cuda/blas.hpp — every GEMM of the CUDA backend goes through blas::matmul, the one
// function that maps pickscore's row-major convention onto cuBLASLt's column-major arguments.
//
// Row-major, as everywhere in pickscore:
//     C[M,N] = epilogue(alpha · op(A) · op(B) + beta · C),  op(A) is [M,K], op(B) is [K,N],
// A is stored [M,K] (Trans::N) or [K,M] (Trans::T) with leading dimension lda (elements between
// rows), likewise B and C; `batch` independent products with element strides stride_a/b/c.
// The Linear layer's y[M,N] = x[M,K] · W[N,K]ᵀ + b is {ta = N, tb = T, epilogue = bias}.
//
// How it maps: a row-major [R,C] matrix is a column-major [C,R] one with the same leading
// dimension, so C = op(A)·op(B) is Cᵀ = op(B)ᵀ·op(A)ᵀ in cuBLAS's terms: cuBLAS m = N, n = M,
// k = K, cuBLAS's A is our B (transposed iff tb = T), cuBLAS's B is our A (iff ta = T). A bias
// over our columns is a bias over cuBLAS's rows (CUBLASLT_EPILOGUE_BIAS); the bias gradient over
// op(A)'s rows is cuBLAS's BGRADB, over op(B)'s columns BGRADA.
//
// Epilogues (bias, bias_grad: [N] unless noted; aux: [M,N] row-major with leading dimension ldaux):
//   none              C = alpha·op(A)·op(B) + beta·C
//   bias              ... + bias[j]
//   gelu_tanh         C = gelu_tanh(alpha·op(A)·op(B) + beta·C); aux (optional) receives the argument
//   bias_gelu_tanh    C = gelu_tanh(... + bias[j]); aux (optional) receives the argument
//   dgelu_tanh        C = (alpha·op(A)·op(B) + beta·C) · gelu_tanh'(aux)          (aux required)
//   dgelu_tanh_bgrad  as dgelu_tanh, and bias_grad[j] = Σ_i C[i,j]                 (written)
//   bgrad_a           as none, and bias_grad[i] = Σ_k op(A)[i,k]   (length M, written)
//   bgrad_b           as none, and bias_grad[j] = Σ_k op(B)[k,j]   (length N, written)
// The GELU here is cuBLASLt's: the TANH approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
// not CLIP's exact erf GELU (which stays a kernel of ours; see docs/design.md on when the tanh
// epilogue may serve). Bias gradients are written, not accumulated, as cuBLASLt does.
//
// Element types: f32 or bf16 for A, B, C, bias and aux alike; products accumulate in f32. The f32
// path computes in true f32 (CUBLAS_COMPUTE_32F) unless allow_tf32 (or the context's option) is
// set. Where cuBLASLt offers no algorithm for an epilogue (its heuristic decides: odd aux leading
// dimensions, alignments, ...), matmul runs the plain GEMM and applies the epilogue with kernels
// of ours (kernels/gemm_epilogue.cuh), with the same results up to rounding. Epilogues other than
// `none` need batch == 1. The work is queued on the current context's stream.
#pragma once

#include <cstdint>

#include "../core/dtype.hpp"
#include "../ops/common.hpp"

namespace pickscore::cuda::blas {

enum class Epilogue { none, bias, gelu_tanh, bias_gelu_tanh, dgelu_tanh, dgelu_tanh_bgrad, bgrad_a, bgrad_b };

struct Gemm {
    DType dtype = DType::f32;  // of A, B, C, bias, aux: f32 or bf16
    ops::Trans ta = ops::Trans::N, tb = ops::Trans::N;
    std::int64_t M = 0, N = 0, K = 0;
    std::int64_t batch = 1;
    const void* A = nullptr;
    std::int64_t lda = 0, stride_a = 0;
    const void* B = nullptr;
    std::int64_t ldb = 0, stride_b = 0;
    void* C = nullptr;
    std::int64_t ldc = 0, stride_c = 0;
    float alpha = 1.0f, beta = 0.0f;
    Epilogue epilogue = Epilogue::none;
    const void* bias = nullptr;  // bias, bias_gelu_tanh
    void* bias_grad = nullptr;   // dgelu_tanh_bgrad, bgrad_a, bgrad_b
    void* aux = nullptr;         // gelu epilogues (written, optional), dgelu epilogues (read)
    std::int64_t ldaux = 0;
    bool allow_tf32 = false;  // or the current context's ContextOptions::allow_tf32
};

// Queues the product on the current context's stream. Throws pickscore::Error naming the
// argument that does not fit, or CudaError from cuBLAS(Lt).
void matmul(const Gemm& g);

// How the last matmul on this thread ran: through a cuBLASLt epilogue, or the plain GEMM plus
// our epilogue kernels (for tests of both paths).
enum class Path { lt_epilogue, fallback_epilogue, plain };
Path last_path();

// dst[i] += src[i] for i < n, in f32, rounding once to the element type (the bias-gradient
// accumulation of linear_backward). Queued on the current stream.
void accumulate(DType dtype, void* dst, const void* src, std::int64_t n);

}  // namespace pickscore::cuda::blas
