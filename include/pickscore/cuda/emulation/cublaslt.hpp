// pickscore/cuda/emulation/cublaslt.hpp — the subset of cuBLASLt (and cuBLAS) that pickscore
// calls, served by a host GEMM with cuBLAS's exact column-major semantics, so that the code that
// maps pickscore's row-major convention onto cuBLAS arguments (kernels/blas.cuh) runs in every
// emulated test.
// pickscore-requires: pickscore::cuda_emulation
//
// Column-major, as cuBLAS defines it: D[m x n] = epilogue(alpha · op(A) · op(B) + beta · C), where
// element (i, j) of a matrix with leading dimension ld is at i + j·ld, op(A) is m x k (A is
// stored m x k for CUBLAS_OP_N, k x m for CUBLAS_OP_T) and op(B) is k x n. Products accumulate in
// f32 in k order; every element is rounded once to the output type. Epilogues (cuBLASLt's
// definitions, column-major):
//   BIAS           t(i,j) += bias[i]                     (bias length m = rows of D)
//   GELU(_AUX)     D = gelu_tanh(t); AUX stores t in aux (i + j·aux_ld)
//   DGELU          D = t · gelu_tanh'(aux(i,j))
//   DGELU_BGRAD    as DGELU, and bias[i] = Σ_j D(i,j)  (bias gradient, length m)
//   BGRADA         bias[i] = Σ_k op(A)(i,k)            (length m)
//   BGRADB         bias[j] = Σ_k op(B)(k,j)            (length n)
// cuBLASLt's GELU is the tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
// Supported types: A, B, C, D (and bias, aux) all f32 with CUBLAS_COMPUTE_32F(_FAST_TF32), or all
// bf16 with CUBLAS_COMPUTE_32F; the scale type is f32. Anything else is CUBLAS_STATUS_NOT_SUPPORTED,
// and invalid layouts are CUBLAS_STATUS_INVALID_VALUE, as in the library.
//
// Only included in emulation builds (pickscore/cuda/libraries.hpp picks it).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../../core/dtype.hpp"
#include "../../core/threads.hpp"
#include "runtime.hpp"

// ---- types and enumerators (values as in cublas_api.h, cublasLt.h, library_types.h) ----------------
enum cublasStatus_t : int {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
};

enum cublasOperation_t : int { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 };

enum cudaDataType_t : int { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType = cudaDataType_t;

enum cublasComputeType_t : int {
    CUBLAS_COMPUTE_16F = 64,
    CUBLAS_COMPUTE_32F = 68,
    CUBLAS_COMPUTE_32F_FAST_16F = 74,
    CUBLAS_COMPUTE_32F_FAST_16BF = 75,
    CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
    CUBLAS_COMPUTE_64F = 70,
};

enum cublasMath_t : int { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
enum cublasGemmAlgo_t : int { CUBLAS_GEMM_DEFAULT = -1 };

enum cublasLtEpilogue_t : int {
    CUBLASLT_EPILOGUE_DEFAULT = 1,
    CUBLASLT_EPILOGUE_BIAS = 4,
    CUBLASLT_EPILOGUE_GELU = 32,
    CUBLASLT_EPILOGUE_GELU_AUX = 32 | 128,
    CUBLASLT_EPILOGUE_GELU_BIAS = 32 | 4,
    CUBLASLT_EPILOGUE_GELU_AUX_BIAS = 32 | 128 | 4,
    CUBLASLT_EPILOGUE_DGELU = 64 | 128,
    CUBLASLT_EPILOGUE_DGELU_BGRAD = 64 | 128 | 16,
    CUBLASLT_EPILOGUE_BGRADA = 256,
    CUBLASLT_EPILOGUE_BGRADB = 512,
};

enum cublasLtMatmulDescAttributes_t : int {
    CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
    CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
    CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_TRANSC = 5,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
    CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE = 10,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER = 11,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD = 12,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE = 13,
    CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE = 22,
    CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26,
};

enum cublasLtMatrixLayoutAttribute_t : int {
    CUBLASLT_MATRIX_LAYOUT_TYPE = 0,
    CUBLASLT_MATRIX_LAYOUT_ORDER = 1,
    CUBLASLT_MATRIX_LAYOUT_ROWS = 2,
    CUBLASLT_MATRIX_LAYOUT_COLS = 3,
    CUBLASLT_MATRIX_LAYOUT_LD = 4,
    CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5,
    CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6,
};

enum cublasLtOrder_t : int { CUBLASLT_ORDER_COL = 0, CUBLASLT_ORDER_ROW = 1 };

enum cublasLtMatmulPreferenceAttributes_t : int {
    CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0,
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
};

struct cublasLtContext {
    int alive;
};
using cublasLtHandle_t = cublasLtContext*;

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
};
using cublasHandle_t = cublasContext*;

struct cublasLtMatmulDescOpaque_t {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    std::int32_t pointer_mode;
    std::int32_t transa, transb, transc;
    std::uint32_t epilogue;
    const void* bias;
    std::int64_t bias_batch_stride;
    void* aux;
    std::int64_t aux_ld;
    std::int64_t aux_batch_stride;
    std::int32_t aux_type;
    std::int32_t bias_type;
};
using cublasLtMatmulDesc_t = cublasLtMatmulDescOpaque_t*;

struct cublasLtMatrixLayoutOpaque_t {
    cudaDataType_t type;
    std::int32_t order;
    std::uint64_t rows, cols;
    std::int64_t ld;
    std::int32_t batch;
    std::int64_t stride;
};
using cublasLtMatrixLayout_t = cublasLtMatrixLayoutOpaque_t*;

struct cublasLtMatmulPreferenceOpaque_t {
    std::uint64_t max_workspace;
    std::uint32_t min_alignment[4];  // A, B, C, D (bytes)
};
using cublasLtMatmulPreference_t = cublasLtMatmulPreferenceOpaque_t*;

struct cublasLtMatmulAlgo_t {
    std::uint64_t data[8];
};

struct cublasLtMatmulHeuristicResult_t {
    cublasLtMatmulAlgo_t algo;
    std::size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
};

namespace pickscore::cuda::emu::detail {

inline float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + std::tanh(k * (x + 0.044715f * x * x * x)));
}
inline float gelu_tanh_grad(float x) {
    const float k = 0.7978845608028654f;
    const float t = std::tanh(k * (x + 0.044715f * x * x * x));
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
}

inline float load(const void* p, cudaDataType_t t, std::int64_t i) {
    if (t == CUDA_R_32F) return static_cast<const float*>(p)[i];
    std::uint16_t bits;
    std::memcpy(&bits, static_cast<const std::byte*>(p) + 2 * i, 2);
    return float(::pickscore::bf16::from_bits(bits));
}
inline void store(void* p, cudaDataType_t t, std::int64_t i, float v) {
    if (t == CUDA_R_32F) {
        static_cast<float*>(p)[i] = v;
    } else {
        const std::uint16_t bits = ::pickscore::bf16::from_float(v);
        std::memcpy(static_cast<std::byte*>(p) + 2 * i, &bits, 2);
    }
}

// One column-major GEMM with cuBLASLt's epilogues (see the top of this file).
struct HostGemm {
    bool ta = false, tb = false;
    std::int64_t m = 0, n = 0, k = 0;
    int batch = 1;
    float alpha = 1, beta = 0;
    cudaDataType_t type = CUDA_R_32F;  // A, B, C, D
    const void* A = nullptr;
    std::int64_t lda = 0, sa = 0;
    const void* B = nullptr;
    std::int64_t ldb = 0, sb = 0;
    const void* C = nullptr;
    std::int64_t ldc = 0, sc = 0;
    void* D = nullptr;
    std::int64_t ldd = 0, sd = 0;
    std::uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void* bias = nullptr;  // input (BIAS) or output (the BGRAD epilogues)
    cudaDataType_t bias_type = CUDA_R_32F;
    std::int64_t bias_stride = 0;
    void* aux = nullptr;
    cudaDataType_t aux_type = CUDA_R_32F;
    std::int64_t aux_ld = 0, aux_stride = 0;
};

inline void run_host_gemm(const HostGemm& g) {
    const std::uint32_t ep = g.epilogue;
    const bool has_bias = (ep & 4u) != 0;
    const bool gelu = (ep & 32u) != 0, gelu_aux = gelu && (ep & 128u) != 0;
    const bool dgelu = (ep & 64u) != 0, dgelu_bgrad = dgelu && (ep & 16u) != 0;
    const bool bgrada = ep == CUBLASLT_EPILOGUE_BGRADA, bgradb = ep == CUBLASLT_EPILOGUE_BGRADB;
    for (int b = 0; b < g.batch; ++b) {
        const void* A = static_cast<const std::byte*>(g.A) + std::int64_t(b) * g.sa * (g.type == CUDA_R_32F ? 4 : 2);
        const void* B = static_cast<const std::byte*>(g.B) + std::int64_t(b) * g.sb * (g.type == CUDA_R_32F ? 4 : 2);
        const std::int64_t es = g.type == CUDA_R_32F ? 4 : 2;
        const void* C = g.C ? static_cast<const std::byte*>(g.C) + std::int64_t(b) * g.sc * es : nullptr;
        void* D = static_cast<std::byte*>(g.D) + std::int64_t(b) * g.sd * es;
        const std::int64_t bias_es = g.bias_type == CUDA_R_32F ? 4 : 2, aux_es = g.aux_type == CUDA_R_32F ? 4 : 2;
        const void* bias = g.bias ? static_cast<const std::byte*>(g.bias) + std::int64_t(b) * g.bias_stride * bias_es : nullptr;
        void* aux = g.aux ? static_cast<std::byte*>(g.aux) + std::int64_t(b) * g.aux_stride * aux_es : nullptr;
        // op(A) as rows i (k contiguous), op(B) as columns j (k contiguous).
        std::vector<float> a(std::size_t(g.m * g.k)), bt(std::size_t(g.n * g.k));
        for (std::int64_t i = 0; i < g.m; ++i)
            for (std::int64_t p = 0; p < g.k; ++p)
                a[std::size_t(i * g.k + p)] = load(A, g.type, g.ta ? p + i * g.lda : i + p * g.lda);
        for (std::int64_t j = 0; j < g.n; ++j)
            for (std::int64_t p = 0; p < g.k; ++p)
                bt[std::size_t(j * g.k + p)] = load(B, g.type, g.tb ? j + p * g.ldb : p + j * g.ldb);
        std::vector<float> row_sums(dgelu_bgrad ? std::size_t(g.m) * std::size_t(g.n) : 0);
        parallel_for(g.n, [&](std::int64_t j) {
            for (std::int64_t i = 0; i < g.m; ++i) {
                float acc = 0.0f;
                const float* ai = a.data() + i * g.k;
                const float* bj = bt.data() + j * g.k;
                for (std::int64_t p = 0; p < g.k; ++p) acc += ai[p] * bj[p];
                float t = g.alpha * acc;
                if (g.beta != 0.0f) t += g.beta * load(C, g.type, i + j * g.ldc);
                if (has_bias) t += load(bias, g.bias_type, i);
                float d = t;
                if (gelu) {
                    if (gelu_aux) store(aux, g.aux_type, i + j * g.aux_ld, t);
                    d = gelu_tanh(t);
                } else if (dgelu) {
                    d = t * gelu_tanh_grad(load(aux, g.aux_type, i + j * g.aux_ld));
                }
                store(D, g.type, i + j * g.ldd, d);
                if (dgelu_bgrad) row_sums[std::size_t(i * g.n + j)] = d;
            }
        });
        void* grad = const_cast<void*>(bias);
        if (dgelu_bgrad) {
            for (std::int64_t i = 0; i < g.m; ++i) {
                float s = 0.0f;
                for (std::int64_t j = 0; j < g.n; ++j) s += row_sums[std::size_t(i * g.n + j)];
                store(grad, g.bias_type, i, s);
            }
        } else if (bgrada) {
            for (std::int64_t i = 0; i < g.m; ++i) {
                float s = 0.0f;
                for (std::int64_t p = 0; p < g.k; ++p) s += a[std::size_t(i * g.k + p)];
                store(grad, g.bias_type, i, s);
            }
        } else if (bgradb) {
            for (std::int64_t j = 0; j < g.n; ++j) {
                float s = 0.0f;
                for (std::int64_t p = 0; p < g.k; ++p) s += bt[std::size_t(j * g.k + p)];
                store(grad, g.bias_type, j, s);
            }
        }
    }
}

template <class T>
cublasStatus_t set_attr(T& field, const void* buf, std::size_t size) {
    if (buf == nullptr || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
    std::memcpy(&field, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

inline bool supported_epilogue(std::uint32_t e) {
    switch (e) {
        case CUBLASLT_EPILOGUE_DEFAULT:
        case CUBLASLT_EPILOGUE_BIAS:
        case CUBLASLT_EPILOGUE_GELU:
        case CUBLASLT_EPILOGUE_GELU_AUX:
        case CUBLASLT_EPILOGUE_GELU_BIAS:
        case CUBLASLT_EPILOGUE_GELU_AUX_BIAS:
        case CUBLASLT_EPILOGUE_DGELU:
        case CUBLASLT_EPILOGUE_DGELU_BGRAD:
        case CUBLASLT_EPILOGUE_BGRADA:
        case CUBLASLT_EPILOGUE_BGRADB: return true;
        default: return false;
    }
}

// Checks a cublasLtMatmul problem and fills `g` (without the data pointers and scalars).
inline cublasStatus_t describe(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t Ad, cublasLtMatrixLayout_t Bd,
                               cublasLtMatrixLayout_t Cd, cublasLtMatrixLayout_t Dd, HostGemm& g) {
    if (!desc || !Ad || !Bd || !Cd || !Dd) return CUBLAS_STATUS_INVALID_VALUE;
    for (auto* l : {Ad, Bd, Cd, Dd})
        if (l->order != CUBLASLT_ORDER_COL) return CUBLAS_STATUS_NOT_SUPPORTED;
    const cudaDataType_t t = Dd->type;
    if (Ad->type != t || Bd->type != t || Cd->type != t) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (desc->scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (t == CUDA_R_32F) {
        if (desc->compute != CUBLAS_COMPUTE_32F && desc->compute != CUBLAS_COMPUTE_32F_FAST_TF32)
            return CUBLAS_STATUS_NOT_SUPPORTED;
    } else if (t == CUDA_R_16BF) {
        if (desc->compute != CUBLAS_COMPUTE_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    } else {
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    if (desc->transa > 1 || desc->transb > 1 || desc->transc != CUBLAS_OP_N) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (desc->pointer_mode != 0) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!supported_epilogue(desc->epilogue)) return CUBLAS_STATUS_NOT_SUPPORTED;
    g.ta = desc->transa == CUBLAS_OP_T;
    g.tb = desc->transb == CUBLAS_OP_T;
    g.m = std::int64_t(Dd->rows);
    g.n = std::int64_t(Dd->cols);
    g.k = std::int64_t(g.ta ? Ad->rows : Ad->cols);
    const std::int64_t a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
    const std::int64_t b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
    if (std::int64_t(Ad->rows) != a_rows || std::int64_t(Ad->cols) != a_cols) return CUBLAS_STATUS_INVALID_VALUE;
    if (std::int64_t(Bd->rows) != b_rows || std::int64_t(Bd->cols) != b_cols) return CUBLAS_STATUS_INVALID_VALUE;
    if (Cd->rows != Dd->rows || Cd->cols != Dd->cols) return CUBLAS_STATUS_INVALID_VALUE;
    for (auto* l : {Ad, Bd, Cd, Dd})
        if (l->ld < std::int64_t(l->rows) || l->ld < 1) return CUBLAS_STATUS_INVALID_VALUE;
    const int batch = Dd->batch;
    if (batch < 1 || Ad->batch != batch || Bd->batch != batch || Cd->batch != batch) return CUBLAS_STATUS_INVALID_VALUE;
    g.batch = batch;
    g.type = t;
    g.lda = Ad->ld;
    g.sa = Ad->stride;
    g.ldb = Bd->ld;
    g.sb = Bd->stride;
    g.ldc = Cd->ld;
    g.sc = Cd->stride;
    g.ldd = Dd->ld;
    g.sd = Dd->stride;
    g.epilogue = desc->epilogue;
    g.bias = desc->bias;
    g.bias_type = desc->bias_type < 0 ? t : cudaDataType_t(desc->bias_type);
    g.bias_stride = desc->bias_batch_stride;
    g.aux = desc->aux;
    g.aux_type = desc->aux_type < 0 ? t : cudaDataType_t(desc->aux_type);
    g.aux_ld = desc->aux_ld;
    g.aux_stride = desc->aux_batch_stride;
    if (g.bias_type != t || g.aux_type != t) return CUBLAS_STATUS_NOT_SUPPORTED;
    const std::uint32_t ep = desc->epilogue;
    if (ep != CUBLASLT_EPILOGUE_DEFAULT && ep != CUBLASLT_EPILOGUE_GELU && ep != CUBLASLT_EPILOGUE_GELU_AUX &&
        ep != CUBLASLT_EPILOGUE_DGELU && g.bias == nullptr)
        return CUBLAS_STATUS_INVALID_VALUE;  // bias (or bias gradient) pointer required
    const bool needs_aux = ep == CUBLASLT_EPILOGUE_GELU_AUX || ep == CUBLASLT_EPILOGUE_GELU_AUX_BIAS ||
                           ep == CUBLASLT_EPILOGUE_DGELU || ep == CUBLASLT_EPILOGUE_DGELU_BGRAD;
    if (needs_aux && (g.aux == nullptr || g.aux_ld < g.m || g.aux_ld % 8 != 0 || g.aux_stride % 8 != 0))
        return CUBLAS_STATUS_INVALID_VALUE;  // "must be divisible by 8 and no less than the rows of D"
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace pickscore::cuda::emu::detail

// ---- cuBLASLt -------------------------------------------------------------------------------------------
inline const char* cublasLtGetStatusName(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
        case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
        case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
        case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
inline const char* cublasLtGetStatusString(cublasStatus_t s) {
    switch (s) {
        case CUBLAS_STATUS_SUCCESS: return "success";
        case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
        case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
        case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
        case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
        case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
        case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
        case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
        case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    }
    return "unknown error";
}
inline const char* cublasGetStatusName(cublasStatus_t s) { return cublasLtGetStatusName(s); }
inline const char* cublasGetStatusString(cublasStatus_t s) { return cublasLtGetStatusString(s); }

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
    *handle = new cublasLtContext{1};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                               cudaDataType_t scale) {
    *desc = new cublasLtMatmulDescOpaque_t{compute, scale, 0, CUBLAS_OP_N, CUBLAS_OP_N, CUBLAS_OP_N,
                                           CUBLASLT_EPILOGUE_DEFAULT, nullptr, 0, nullptr, 0, 0, -1, -1};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
    delete desc;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr,
                                                     const void* buf, std::size_t size) {
    using pickscore::cuda::emu::detail::set_attr;
    if (!desc) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
        case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return set_attr(desc->compute, buf, size);
        case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return set_attr(desc->scale, buf, size);
        case CUBLASLT_MATMUL_DESC_POINTER_MODE: return set_attr(desc->pointer_mode, buf, size);
        case CUBLASLT_MATMUL_DESC_TRANSA: return set_attr(desc->transa, buf, size);
        case CUBLASLT_MATMUL_DESC_TRANSB: return set_attr(desc->transb, buf, size);
        case CUBLASLT_MATMUL_DESC_TRANSC: return set_attr(desc->transc, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE: return set_attr(desc->epilogue, buf, size);
        case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set_attr(desc->bias, buf, size);
        case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: return set_attr(desc->bias_batch_stride, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return set_attr(desc->aux, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return set_attr(desc->aux_ld, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE: return set_attr(desc->aux_batch_stride, buf, size);
        case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: return set_attr(desc->aux_type, buf, size);
        case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return set_attr(desc->bias_type, buf, size);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType type, std::uint64_t rows,
                                                 std::uint64_t cols, std::int64_t ld) {
    *layout = new cublasLtMatrixLayoutOpaque_t{type, CUBLASLT_ORDER_COL, rows, cols, ld, 1, 0};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
    delete layout;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout, cublasLtMatrixLayoutAttribute_t attr,
                                                       const void* buf, std::size_t size) {
    using pickscore::cuda::emu::detail::set_attr;
    if (!layout) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
        case CUBLASLT_MATRIX_LAYOUT_TYPE: return set_attr(layout->type, buf, size);
        case CUBLASLT_MATRIX_LAYOUT_ORDER: return set_attr(layout->order, buf, size);
        case CUBLASLT_MATRIX_LAYOUT_ROWS: return set_attr(layout->rows, buf, size);
        case CUBLASLT_MATRIX_LAYOUT_COLS: return set_attr(layout->cols, buf, size);
        case CUBLASLT_MATRIX_LAYOUT_LD: return set_attr(layout->ld, buf, size);
        case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return set_attr(layout->batch, buf, size);
        case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return set_attr(layout->stride, buf, size);
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
    *pref = new cublasLtMatmulPreferenceOpaque_t{0, {256, 256, 256, 256}};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                           cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                           std::size_t size) {
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)
        return pickscore::cuda::emu::detail::set_attr(pref->max_workspace, buf, size);
    if (attr == CUBLASLT_MATMUL_PREF_SEARCH_MODE) return CUBLAS_STATUS_SUCCESS;
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES && attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES)
        return pickscore::cuda::emu::detail::set_attr(pref->min_alignment[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES],
                                                      buf, size);
    return CUBLAS_STATUS_INVALID_VALUE;
}

inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                                     cublasLtMatrixLayout_t Ad, cublasLtMatrixLayout_t Bd,
                                                     cublasLtMatrixLayout_t Cd, cublasLtMatrixLayout_t Dd,
                                                     cublasLtMatmulPreference_t pref, int requested,
                                                     cublasLtMatmulHeuristicResult_t results[], int* returned) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!pref || requested < 1 || !results || !returned) return CUBLAS_STATUS_INVALID_VALUE;
    *returned = 0;
    pickscore::cuda::emu::detail::HostGemm g;
    if (cublasStatus_t s = pickscore::cuda::emu::detail::describe(desc, Ad, Bd, Cd, Dd, g)) return s;
    if (pickscore::cuda::emu::config().blaslt_unsupported_epilogues & desc->epilogue) return CUBLAS_STATUS_NOT_SUPPORTED;
    results[0] = cublasLtMatmulHeuristicResult_t{};
    results[0].algo.data[0] = 0x5eed;
    // The algorithm assumes the alignments the preference promised; cublasLtMatmul checks them.
    for (int i = 0; i < 4; ++i) results[0].algo.data[1 + i] = pref->min_alignment[i];
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                                     cublasLtMatrixLayout_t Ad, const void* B, cublasLtMatrixLayout_t Bd, const void* beta,
                                     const void* C, cublasLtMatrixLayout_t Cd, void* D, cublasLtMatrixLayout_t Dd,
                                     const cublasLtMatmulAlgo_t* algo, void* workspace, std::size_t workspace_bytes,
                                     cudaStream_t stream) {
    (void)workspace;
    (void)workspace_bytes;
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (::pickscore::cuda::emu::detail::check_stream(stream, "cublasLtMatmul") != cudaSuccess)
        return CUBLAS_STATUS_INVALID_VALUE;
    pickscore::cuda::emu::detail::HostGemm g;
    if (cublasStatus_t s = pickscore::cuda::emu::detail::describe(desc, Ad, Bd, Cd, Dd, g)) return s;
    if (!alpha || !beta || !A || !B || !D || (!C && *static_cast<const float*>(beta) != 0.0f))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (algo != nullptr && algo->data[0] == 0x5eed) {
        const void* ptrs[4] = {A, B, C, D};
        for (int i = 0; i < 4; ++i)
            if (ptrs[i] != nullptr && reinterpret_cast<std::uintptr_t>(ptrs[i]) % algo->data[1 + i] != 0)
                return CUBLAS_STATUS_INVALID_VALUE;  // less aligned than the heuristic was told
    }
    g.alpha = *static_cast<const float*>(alpha);
    g.beta = *static_cast<const float*>(beta);
    g.A = A;
    g.B = B;
    g.C = C;
    g.D = D;
    if (g.m == 0 || g.n == 0) return CUBLAS_STATUS_SUCCESS;
    pickscore::cuda::emu::detail::run_host_gemm(g);
    return CUBLAS_STATUS_SUCCESS;
}

// ---- cuBLAS (the handle the Context owns, and the strided-batched GEMM) ----------------------------------
inline cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
    *handle = new cublasContext{nullptr, CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void*, std::size_t) {
    return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}
#define cublasCreate cublasCreate_v2
#define cublasDestroy cublasDestroy_v2
#define cublasSetStream cublasSetStream_v2
#define cublasSetWorkspace cublasSetWorkspace_v2

inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                                 int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                                 int lda, long long strideA, const void* B, cudaDataType Btype, int ldb,
                                                 long long strideB, const void* beta, void* C, cudaDataType Ctype, int ldc,
                                                 long long strideC, int batch, cublasComputeType_t compute,
                                                 cublasGemmAlgo_t algo) {
    (void)algo;
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (Atype != Ctype || Btype != Ctype || (Ctype != CUDA_R_32F && Ctype != CUDA_R_16BF)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (compute != CUBLAS_COMPUTE_32F && !(compute == CUBLAS_COMPUTE_32F_FAST_TF32 && Ctype == CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (transa > CUBLAS_OP_T || transb > CUBLAS_OP_T) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || ldc < std::max(1, m) ||
        lda < std::max(1, transa == CUBLAS_OP_N ? m : k) || ldb < std::max(1, transb == CUBLAS_OP_N ? k : n))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    pickscore::cuda::emu::detail::HostGemm g;
    g.ta = transa == CUBLAS_OP_T;
    g.tb = transb == CUBLAS_OP_T;
    g.m = m;
    g.n = n;
    g.k = k;
    g.batch = batch;
    g.alpha = *static_cast<const float*>(alpha);
    g.beta = *static_cast<const float*>(beta);
    g.type = Ctype;
    g.A = A;
    g.lda = lda;
    g.sa = strideA;
    g.B = B;
    g.ldb = ldb;
    g.sb = strideB;
    g.C = C;
    g.ldc = ldc;
    g.sc = strideC;
    g.D = C;
    g.ldd = ldc;
    g.sd = strideC;
    pickscore::cuda::emu::detail::run_host_gemm(g);
    return CUBLAS_STATUS_SUCCESS;
}
