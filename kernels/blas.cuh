// kernels/blas.cuh — blas::matmul (pickscore/cuda/blas.hpp): pickscore's row-major GEMM with
// epilogues mapped onto cuBLASLt's column-major matmul, with fallbacks. Compiled once, in the
// pickscore::cuda translation unit.
//
// Order of attempts for one call:
//   1. cuBLASLt with the fused epilogue, if its heuristic offers an algorithm for this problem
//      (the answer, or the lack of one, is cached per context and problem, pointer alignments
//      included);
//   2. otherwise the plain GEMM (cuBLASLt, or cublasGemmStridedBatchedEx if cuBLASLt has nothing
//      either, e.g. K == 0) followed by the epilogue kernels of kernels/gemm_epilogue.cuh.
#pragma once

#if !defined(PICKSCORE_CUDA_IMPLEMENTATION)
#error "this file holds out-of-line definitions: include kernels/implementation.cuh, in one translation unit"
#endif

#include <algorithm>
#include <cstdint>
#include <mutex>

#include <pickscore/core/error.hpp>
#include <pickscore/cuda/blas.hpp>
#include <pickscore/cuda/context.hpp>
#include <pickscore/cuda/libraries.hpp>

#include "common.cuh"
#include "gemm_epilogue.cuh"
#include "runtime.cuh"

namespace pickscore::cuda::blas {

namespace detail {

inline Path& last_path_slot() {
    thread_local Path p = Path::plain;
    return p;
}

inline std::uint32_t alignment_of(const void* p) {
    if (p == nullptr) return 256;
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    std::uint32_t al = 1;
    while (al < 256 && (a % (2 * al)) == 0) al *= 2;
    return al;
}

// cuBLASLt descriptor objects, destroyed on scope exit.
struct LtDescriptors {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    LtDescriptors() = default;
    LtDescriptors(const LtDescriptors&) = delete;
    LtDescriptors& operator=(const LtDescriptors&) = delete;
    ~LtDescriptors() {
        if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
        if (c) (void)cublasLtMatrixLayoutDestroy(c);
        if (b) (void)cublasLtMatrixLayoutDestroy(b);
        if (a) (void)cublasLtMatrixLayoutDestroy(a);
        if (op) (void)cublasLtMatmulDescDestroy(op);
    }
};

// The problem in cuBLAS's column-major terms (see blas.hpp for the mapping).
struct ColumnMajor {
    cudaDataType_t type;
    cublasComputeType_t compute;
    cublasOperation_t opa, opb;
    std::int64_t m, n, k, batch;
    const void* A;
    std::int64_t lda, sa;
    const void* B;
    std::int64_t ldb, sb;
    void* C;
    std::int64_t ldc, sc;
    float alpha, beta;
    std::uint32_t epilogue;
    const void* bias;  // input bias or output bias gradient
    void* aux;
    std::int64_t ldaux;
};

template <class V>
void set(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const V& v, const char* what) {
    check(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)), what);
}
template <class V>
void set(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr, const V& v, const char* what) {
    check(cublasLtMatrixLayoutSetAttribute(l, attr, &v, sizeof(v)), what);
}

// Runs the problem through cuBLASLt with its epilogue; false if cuBLASLt offers no algorithm.
inline bool run_lt(Context& ctx, const ColumnMajor& p) {
    cuda::detail::BlasKey key;
    key.type = int(p.type);
    key.compute = int(p.compute);
    key.transa = int(p.opa);
    key.transb = int(p.opb);
    key.m = p.m;
    key.n = p.n;
    key.k = p.k;
    key.lda = p.lda;
    key.ldb = p.ldb;
    key.ldc = p.ldc;
    key.batch = p.batch;
    key.sa = p.sa;
    key.sb = p.sb;
    key.sc = p.sc;
    key.epilogue = p.epilogue;
    key.ldaux = p.ldaux;
    const std::uint32_t align[5] = {alignment_of(p.A), alignment_of(p.B), alignment_of(p.C), alignment_of(p.bias),
                                    alignment_of(p.aux)};
    std::copy(align, align + 5, key.align);

    LtDescriptors d;
    check(cublasLtMatmulDescCreate(&d.op, p.compute, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const std::int32_t ta = p.opa, tb = p.opb;
    set(d.op, CUBLASLT_MATMUL_DESC_TRANSA, ta, "cublasLtMatmulDescSetAttribute(TRANSA)");
    set(d.op, CUBLASLT_MATMUL_DESC_TRANSB, tb, "cublasLtMatmulDescSetAttribute(TRANSB)");
    set(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, p.epilogue, "cublasLtMatmulDescSetAttribute(EPILOGUE)");
    if (p.bias != nullptr) set(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, p.bias, "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
    if (p.aux != nullptr) {
        set(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, p.aux, "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_POINTER)");
        set(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, p.ldaux, "cublasLtMatmulDescSetAttribute(EPILOGUE_AUX_LD)");
    }
    const bool a_n = p.opa == CUBLAS_OP_N, b_n = p.opb == CUBLAS_OP_N;
    check(cublasLtMatrixLayoutCreate(&d.a, p.type, std::uint64_t(a_n ? p.m : p.k), std::uint64_t(a_n ? p.k : p.m), p.lda),
          "cublasLtMatrixLayoutCreate(A)");
    check(cublasLtMatrixLayoutCreate(&d.b, p.type, std::uint64_t(b_n ? p.k : p.n), std::uint64_t(b_n ? p.n : p.k), p.ldb),
          "cublasLtMatrixLayoutCreate(B)");
    check(cublasLtMatrixLayoutCreate(&d.c, p.type, std::uint64_t(p.m), std::uint64_t(p.n), p.ldc),
          "cublasLtMatrixLayoutCreate(C)");
    if (p.batch > 1) {
        const std::int32_t batch = std::int32_t(p.batch);
        const std::int64_t strides[3] = {p.sa, p.sb, p.sc};
        cublasLtMatrixLayout_t layouts[3] = {d.a, d.b, d.c};
        for (int i = 0; i < 3; ++i) {
            set(layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, batch, "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
            set(layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, strides[i],
                "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
        }
    }

    cuda::detail::BlasChoice choice;
    bool known = false;
    {
        std::lock_guard<std::mutex> lk(ctx.blas_cache().m);
        auto it = ctx.blas_cache().choices.find(key);
        if (it != ctx.blas_cache().choices.end()) {
            choice = it->second;
            known = true;
        }
    }
    if (!known) {
        check(cublasLtMatmulPreferenceCreate(&d.pref), "cublasLtMatmulPreferenceCreate");
        const std::uint64_t ws = ctx.blas_workspace_bytes();
        check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
              "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
        // Tell the heuristic how aligned the operands really are (it assumes 256 bytes otherwise).
        const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
        const std::uint32_t align_val[4] = {align[0], align[1], align[2], align[2]};
        for (int i = 0; i < 4; ++i)
            check(cublasLtMatmulPreferenceSetAttribute(d.pref, align_attr[i], &align_val[i], sizeof(std::uint32_t)),
                  "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT)");
        cublasLtMatmulHeuristicResult_t result{};
        int returned = 0;
        const cublasStatus_t s =
            cublasLtMatmulAlgoGetHeuristic(ctx.blaslt(), d.op, d.a, d.b, d.c, d.c, d.pref, 1, &result, &returned);
        choice.supported = s == CUBLAS_STATUS_SUCCESS && returned > 0 && result.state == CUBLAS_STATUS_SUCCESS;
        if (choice.supported) choice.algo = result.algo;
        std::lock_guard<std::mutex> lk(ctx.blas_cache().m);
        ctx.blas_cache().choices[key] = choice;
    }
    if (!choice.supported) return false;
    void* workspace = ctx.blas_workspace();
    check(cublasLtMatmul(ctx.blaslt(), d.op, &p.alpha, p.A, d.a, p.B, d.b, &p.beta, p.C, d.c, p.C, d.c, &choice.algo,
                         workspace, ctx.blas_workspace_bytes(), ctx.stream()),
          "cublasLtMatmul");
    return true;
}

// The plain product through cuBLAS (for what cuBLASLt does not take, such as K == 0).
inline void run_cublas(Context& ctx, const ColumnMajor& p) {
    auto clamp_int = [](std::int64_t v, const char* what) {
        require(v <= 2147483647, "blas::matmul: ", what, " = ", v, " exceeds cuBLAS's 32-bit limit");
        return int(v);
    };
    const bool a_n = p.opa == CUBLAS_OP_N, b_n = p.opb == CUBLAS_OP_N;
    const std::int64_t lda = std::max<std::int64_t>({p.lda, 1, a_n ? p.m : p.k});
    const std::int64_t ldb = std::max<std::int64_t>({p.ldb, 1, b_n ? p.k : p.n});
    const std::int64_t ldc = std::max<std::int64_t>({p.ldc, 1, p.m});
    check(cublasGemmStridedBatchedEx(ctx.blas(), p.opa, p.opb, clamp_int(p.m, "N"), clamp_int(p.n, "M"),
                                     clamp_int(p.k, "K"), &p.alpha, p.A, p.type, clamp_int(lda, "ldb"), p.sa, p.B,
                                     p.type, clamp_int(ldb, "lda"), p.sb, &p.beta, p.C, p.type, clamp_int(ldc, "ldc"),
                                     p.sc, clamp_int(p.batch, "batch"), p.compute, CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx");
}

template <class T>
void fallback_epilogue(const Gemm& g) {
    using kernels::elementwise_blocks;
    T* C = static_cast<T*>(g.C);
    T* aux = static_cast<T*>(g.aux);
    const T* bias = static_cast<const T*>(g.bias);
    T* grad = static_cast<T*>(g.bias_grad);
    const std::int64_t MN = g.M * g.N;
    auto column_sums = [&](T* out, const T* X, std::int64_t n_out, std::int64_t n_reduce, std::int64_t so, std::int64_t sr) {
        if (n_out == 0) return;
        launch(kernels::strided_sum_kernel<T>, dim3(blocks_for(n_out, 32)), dim3(32, 8), 0, out, X, n_out, n_reduce, so,
               sr, false);
    };
    switch (g.epilogue) {
        case Epilogue::none: break;
        case Epilogue::bias:
        case Epilogue::gelu_tanh:
        case Epilogue::bias_gelu_tanh:
            launch(kernels::bias_act_kernel<T>, dim3(elementwise_blocks(MN)), dim3(256), 0, C, g.ldc, aux, g.ldaux,
                   g.epilogue == Epilogue::gelu_tanh ? nullptr : bias, g.M, g.N, g.epilogue != Epilogue::bias);
            break;
        case Epilogue::dgelu_tanh:
        case Epilogue::dgelu_tanh_bgrad:
            if (MN > 0)
                launch(kernels::dgelu_kernel<T>, dim3(elementwise_blocks(MN)), dim3(256), 0, C, g.ldc,
                       static_cast<const T*>(aux), g.ldaux, g.M, g.N);
            if (g.epilogue == Epilogue::dgelu_tanh_bgrad) column_sums(grad, C, g.N, g.M, 1, g.ldc);
            break;
        case Epilogue::bgrad_a: {  // Σ_k op(A)[i,k]
            const T* A = static_cast<const T*>(g.A);
            if (g.ta == ops::Trans::N) column_sums(grad, A, g.M, g.K, g.lda, 1);
            else column_sums(grad, A, g.M, g.K, 1, g.lda);
            break;
        }
        case Epilogue::bgrad_b: {  // Σ_k op(B)[k,j]
            const T* B = static_cast<const T*>(g.B);
            if (g.tb == ops::Trans::N) column_sums(grad, B, g.N, g.K, 1, g.ldb);
            else column_sums(grad, B, g.N, g.K, g.ldb, 1);
            break;
        }
    }
}

inline std::uint32_t lt_epilogue(Epilogue e, bool aux) {
    switch (e) {
        case Epilogue::none: return CUBLASLT_EPILOGUE_DEFAULT;
        case Epilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
        case Epilogue::gelu_tanh: return aux ? CUBLASLT_EPILOGUE_GELU_AUX : CUBLASLT_EPILOGUE_GELU;
        case Epilogue::bias_gelu_tanh: return aux ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
        case Epilogue::dgelu_tanh: return CUBLASLT_EPILOGUE_DGELU;
        case Epilogue::dgelu_tanh_bgrad: return CUBLASLT_EPILOGUE_DGELU_BGRAD;
        case Epilogue::bgrad_a: return CUBLASLT_EPILOGUE_BGRADB;  // our A is cuBLAS's B
        case Epilogue::bgrad_b: return CUBLASLT_EPILOGUE_BGRADA;
    }
    return CUBLASLT_EPILOGUE_DEFAULT;
}

inline const char* epilogue_name(Epilogue e) {
    switch (e) {
        case Epilogue::none: return "none";
        case Epilogue::bias: return "bias";
        case Epilogue::gelu_tanh: return "gelu_tanh";
        case Epilogue::bias_gelu_tanh: return "bias_gelu_tanh";
        case Epilogue::dgelu_tanh: return "dgelu_tanh";
        case Epilogue::dgelu_tanh_bgrad: return "dgelu_tanh_bgrad";
        case Epilogue::bgrad_a: return "bgrad_a";
        case Epilogue::bgrad_b: return "bgrad_b";
    }
    return "?";
}

inline void validate(const Gemm& g) {
    const char* ep = epilogue_name(g.epilogue);
    require(g.dtype == DType::f32 || g.dtype == DType::bf16, "blas::matmul: element type ", dtype_name(g.dtype),
            " is not supported (f32 or bf16)");
    require(g.M >= 0 && g.N >= 0 && g.K >= 0 && g.batch >= 0, "blas::matmul: negative size M=", g.M, " N=", g.N,
            " K=", g.K, " batch=", g.batch);
    const std::int64_t a_cols = g.ta == ops::Trans::N ? g.K : g.M, a_rows = g.ta == ops::Trans::N ? g.M : g.K;
    const std::int64_t b_cols = g.tb == ops::Trans::N ? g.N : g.K, b_rows = g.tb == ops::Trans::N ? g.K : g.N;
    require(g.lda >= a_cols, "blas::matmul: lda = ", g.lda, " is less than the ", a_cols, " columns of A");
    require(g.ldb >= b_cols, "blas::matmul: ldb = ", g.ldb, " is less than the ", b_cols, " columns of B");
    require(g.ldc >= g.N, "blas::matmul: ldc = ", g.ldc, " is less than the ", g.N, " columns of C");
    require(a_rows * a_cols == 0 || g.A != nullptr, "blas::matmul: A is null");
    require(b_rows * b_cols == 0 || g.B != nullptr, "blas::matmul: B is null");
    require(g.M * g.N == 0 || g.C != nullptr, "blas::matmul: C is null");
    require(g.epilogue == Epilogue::none || g.batch == 1, "blas::matmul: epilogue ", ep, " needs batch 1, not ", g.batch);
    const bool needs_bias = g.epilogue == Epilogue::bias || g.epilogue == Epilogue::bias_gelu_tanh;
    const bool needs_grad = g.epilogue == Epilogue::dgelu_tanh_bgrad || g.epilogue == Epilogue::bgrad_a ||
                            g.epilogue == Epilogue::bgrad_b;
    const bool needs_aux = g.epilogue == Epilogue::dgelu_tanh || g.epilogue == Epilogue::dgelu_tanh_bgrad;
    require(!needs_bias || g.bias != nullptr, "blas::matmul: epilogue ", ep, " needs a bias");
    require(!needs_grad || g.bias_grad != nullptr, "blas::matmul: epilogue ", ep, " needs a bias_grad output");
    require(!needs_aux || g.aux != nullptr, "blas::matmul: epilogue ", ep, " needs aux (the saved GELU argument)");
    require(g.aux == nullptr || g.ldaux >= g.N, "blas::matmul: ldaux = ", g.ldaux, " is less than the ", g.N,
            " columns of aux");
    require(g.epilogue != Epilogue::none || (g.bias == nullptr && g.bias_grad == nullptr && g.aux == nullptr),
            "blas::matmul: bias, bias_grad or aux given without an epilogue that uses them");
}

}  // namespace detail

Path last_path() { return detail::last_path_slot(); }

void matmul(const Gemm& g) {
    detail::validate(g);
    if (g.M == 0 || g.N == 0 || g.batch == 0) {
        // No product to compute; a bias gradient may still be due (sums over an empty side are 0).
        const bool grad = g.epilogue == Epilogue::bgrad_a || g.epilogue == Epilogue::bgrad_b ||
                          g.epilogue == Epilogue::dgelu_tanh_bgrad;
        if (grad && g.batch > 0) {
            if (g.dtype == DType::f32) detail::fallback_epilogue<float>(g);
            else detail::fallback_epilogue<__nv_bfloat16>(g);
        }
        detail::last_path_slot() = Path::plain;
        return;
    }
    Context& ctx = current();
    detail::ColumnMajor p;
    p.type = g.dtype == DType::f32 ? CUDA_R_32F : CUDA_R_16BF;
    p.compute = (g.dtype == DType::f32 && (g.allow_tf32 || ctx.options().allow_tf32)) ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                                      : CUBLAS_COMPUTE_32F;
    p.opa = g.tb == ops::Trans::T ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's A is our B
    p.opb = g.ta == ops::Trans::T ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLAS's B is our A
    p.m = g.N;
    p.n = g.M;
    p.k = g.K;
    p.batch = g.batch;
    p.A = g.B;
    p.lda = g.ldb;
    p.sa = g.stride_b;
    p.B = g.A;
    p.ldb = g.lda;
    p.sb = g.stride_a;
    p.C = g.C;
    p.ldc = g.ldc;
    p.sc = g.stride_c;
    p.alpha = g.alpha;
    p.beta = g.beta;
    p.epilogue = detail::lt_epilogue(g.epilogue, g.aux != nullptr);
    p.bias = g.bias != nullptr ? g.bias : g.bias_grad;
    p.aux = g.aux;
    p.ldaux = g.ldaux;

    if (g.K > 0 && detail::run_lt(ctx, p)) {
        detail::last_path_slot() = g.epilogue == Epilogue::none ? Path::plain : Path::lt_epilogue;
        return;
    }
    require(g.K > 0 || g.epilogue == Epilogue::none, "blas::matmul: epilogue ", detail::epilogue_name(g.epilogue),
            " with K == 0 is not supported");
    detail::ColumnMajor plain = p;
    plain.epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    plain.bias = nullptr;
    plain.aux = nullptr;
    plain.ldaux = 0;
    if (g.K == 0 || !detail::run_lt(ctx, plain)) detail::run_cublas(ctx, plain);
    if (g.epilogue == Epilogue::none) {
        detail::last_path_slot() = Path::plain;
        return;
    }
    if (g.dtype == DType::f32) detail::fallback_epilogue<float>(g);
    else detail::fallback_epilogue<__nv_bfloat16>(g);
    detail::last_path_slot() = Path::fallback_epilogue;
}

void accumulate(DType dtype, void* dst, const void* src, std::int64_t n) {
    require(dtype == DType::f32 || dtype == DType::bf16, "blas::accumulate: element type ", dtype_name(dtype),
            " is not supported (f32 or bf16)");
    if (n <= 0) return;
    const dim3 grid(kernels::elementwise_blocks(n)), block(256);
    if (dtype == DType::f32)
        launch(kernels::accumulate_kernel<float>, grid, block, 0, static_cast<float*>(dst), static_cast<const float*>(src), n);
    else
        launch(kernels::accumulate_kernel<__nv_bfloat16>, grid, block, 0, static_cast<__nv_bfloat16*>(dst),
               static_cast<const __nv_bfloat16*>(src), n);
}

}  // namespace pickscore::cuda::blas
