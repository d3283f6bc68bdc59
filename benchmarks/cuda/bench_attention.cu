// Attention on the GPU: pickscore's flash-style kernels (bf16, tensor cores) against two baselines in
// the same run — cuDNN's fused flash attention (graph API) and the unfused path that materialises
// the scores: cuBLAS batched GEMMs (bf16 in, f32 accumulation, bf16 scores) + pickscore's softmax
// kernel (cuda::softmax_forward/backward), with a masked_fill-style pass for the causal mask.
// Shapes (issue 3): batch 256 x 16 heads, T = 257, D = 80 (ViT-H/14) and T = 77, D = 64 causal
// (the text tower); q, k, v [B,T,H,D] as a Linear writes them.
//
//   BM_attention_fwd/<shape>/{cudnn, cublas_softmax, flash}      forward (out and lse)
//   BM_attention_fwd_bwd/<shape>/{cudnn, cublas_softmax, flash}  forward, then backward (dq, dk, dv)
// The flash rows carry the label "vs <the cuDNN row>" (issue 3's goal: at least cuDNN's throughput
// for forward+backward at T = 257, D = 80); compare with the cuBLAS row through the "flops" counters.
// "flops" counts the usual work: 4·D per visible (query, key) pair forward (Q·Kᵀ and P·V) and 10·D
// backward (Q·Kᵀ again, dV, dP, dQ, dK); causal: the Tq(Tq+1)/2 visible pairs. Every implementation
// is credited with the same count, so the rates compare times.
//
//   bench_attention [google benchmark flags]        (exit 77 without a CUDA device)
// Timing, rotation and reporting: cuda_bench.cuh. A set of inputs is 160 MB (T = 77) to 680 MB
// (T = 257), more than 3x the L2, so no rotation is needed; rotation_sets() decides anyway.
#include <cublas_v2.h>

#include <cstdint>
#include <string>
#include <vector>

#include <pickscore/cuda/attention.hpp>
#include <pickscore/cuda/softmax.hpp>

#include "cuda_bench.cuh"

namespace {

using namespace pickscore;
using namespace pickscore::bench;

struct AttnShape {
    const char* name;
    std::int64_t B, H, T, D;
    bool causal;
    double scale() const { return 1.0 / std::sqrt(double(D)); }
    double pairs() const { return double(B * H) * (causal ? double(T) * double(T + 1) / 2 : double(T) * double(T)); }
    double forward_flops() const { return 4.0 * double(D) * pairs(); }
    double backward_flops() const { return 10.0 * double(D) * pairs(); }
    Shape x() const { return Shape{B, T, H, D}; }
    Shape lse() const { return Shape{B, H, T}; }
    double io_bytes() const { return 8.0 * double(x().numel()) * sizeof(bf16); }  // q,k,v,out,dout,dq,dk,dv
};

enum class Impl { flash, cudnn, cublas_softmax };

// The tensors of one call.
struct Set {
    Tensor<bf16, Cuda> q, k, v, out, dout, dq, dk, dv;
    Tensor<float, Cuda> lse;
    Tensor<bf16, Cuda> scores, probs, dscores;  // cuBLAS path only: [B·H·T, T]
    Tensor<void*, Cuda> pointers;               // cuBLAS path: batched-GEMM pointer arrays
};

// ---- the cuBLAS + softmax path ---------------------------------------------------------------------

inline void check_cublas(cublasStatus_t s, const char* call) { check_blas(s, call); }

// Pointer arrays for cublasGemmBatchedEx, one entry per (b, h) in each, laid out as
// [q, k, v, out, dout, dq, dk, dv, scores, probs, dscores] x B·H.
enum Slot { kQ, kK, kV, kO, kdO, kdQ, kdK, kdV, kS, kP, kdS, kSlots };

std::vector<void*> pointer_table(Set& s, const AttnShape& a) {
    const std::int64_t BH = a.B * a.H;
    std::vector<void*> table(std::size_t(kSlots * BH));
    for (std::int64_t b = 0; b < a.B; ++b)
        for (std::int64_t h = 0; h < a.H; ++h) {
            const std::int64_t i = b * a.H + h;
            const std::int64_t x_off = (b * a.T * a.H + h) * a.D;  // row 0 of head h in [B,T,H,D]
            const std::int64_t s_off = i * a.T * a.T;
            bf16* xs[] = {s.q.data(), s.k.data(), s.v.data(), s.out.data(), s.dout.data(),
                          s.dq.data(), s.dk.data(), s.dv.data()};
            for (int slot = 0; slot < kS; ++slot) table[std::size_t(slot * BH + i)] = xs[slot] + x_off;
            table[std::size_t(kS * BH + i)] = s.scores.data() + s_off;
            table[std::size_t(kP * BH + i)] = s.probs.data() + s_off;
            table[std::size_t(kdS * BH + i)] = s.dscores.data() + s_off;
        }
    return table;
}

__global__ void causal_fill_kernel(__nv_bfloat16* s, std::int64_t rows, std::int64_t T) {
    const std::int64_t n = rows * T;
    for (std::int64_t e = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
         e += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t j = e % T, i = (e / T) % T;
        if (j > i) s[e] = __float2bfloat16(-INFINITY);
    }
}

// One batched GEMM in cuBLAS's column-major terms, bf16 in and out, f32 accumulation.
void gemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
          void* const* A, int lda, void* const* B, int ldb, void* const* C, int ldc, int batch) {
    const float beta = 0.0f;
    check_cublas(cublasGemmBatchedEx(handle, ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb,
                                     &beta, C, CUDA_R_16BF, ldc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmBatchedEx");
}

// Row-major per head: S = scale·Q Kᵀ [T,T]; P = softmax(S); O = P V. In column-major terms the
// head's X [T,D] with row stride H·D is the D x T matrix X' (ld H·D), and S is the T x T matrix S'
// = Sᵀ (ld T): S' = K'ᵀ Q', O' = V' P'.
void cublas_forward(Set& s, const AttnShape& a) {
    cublasHandle_t h = cu::current().blas();
    const int T = int(a.T), D = int(a.D), ld = int(a.H * a.D), BH = int(a.B * a.H);
    void* const* p = s.pointers.data();
    auto arr = [&](Slot slot) { return p + std::int64_t(slot) * BH; };
    gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, float(a.scale()), arr(kK), ld, arr(kQ), ld, arr(kS), T, BH);
    const std::int64_t rows = a.B * a.H * a.T;
    if (a.causal) {
        causal_fill_kernel<<<unsigned(std::min<std::int64_t>((rows * a.T + 255) / 256, 132 * 16)), 256, 0,
                             cu::current().stream()>>>(reinterpret_cast<__nv_bfloat16*>(s.scores.data()), rows, a.T);
        cu::check(cudaGetLastError(), "causal_fill_kernel launch");
    }
    cu::softmax_forward<bf16>(s.probs.data(), s.scores.data(), rows, a.T);
    gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, D, T, T, 1.0f, arr(kV), ld, arr(kP), T, arr(kO), ld, BH);
}

// dV' = dO' P'ᵀ, dP' = V'ᵀ dO', dS = softmax_backward(dP, P), dQ' = scale·K' dS', dK' = scale·Q' dS'ᵀ.
void cublas_backward(Set& s, const AttnShape& a) {
    cublasHandle_t h = cu::current().blas();
    const int T = int(a.T), D = int(a.D), ld = int(a.H * a.D), BH = int(a.B * a.H);
    void* const* p = s.pointers.data();
    auto arr = [&](Slot slot) { return p + std::int64_t(slot) * BH; };
    gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, D, T, T, 1.0f, arr(kdO), ld, arr(kP), T, arr(kdV), ld, BH);
    gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, T, T, D, 1.0f, arr(kV), ld, arr(kdO), ld, arr(kS), T, BH);  // dP into S
    cu::softmax_backward<bf16>(s.dscores.data(), s.scores.data(), s.probs.data(), a.B * a.H * a.T, a.T);
    const float sc = float(a.scale());
    gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, D, T, T, sc, arr(kK), ld, arr(kdS), T, arr(kdQ), ld, BH);
    gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, D, T, T, sc, arr(kQ), ld, arr(kdS), T, arr(kdK), ld, BH);
}

// ---- the benchmarks ------------------------------------------------------------------------------

std::vector<Set> make_sets(const AttnShape& a, Impl impl) {
    const bool unfused = impl == Impl::cublas_softmax;
    const double score_bytes = unfused ? 3.0 * double(a.B * a.H * a.T * a.T) * sizeof(bf16) : 0.0;
    const int sets = rotation_sets(a.io_bytes() + score_bytes);
    std::vector<Set> v(static_cast<std::size_t>(sets));
    std::uint64_t seed = 100;
    for (Set& s : v) {
        for (Tensor<bf16, Cuda>* t : {&s.q, &s.k, &s.v, &s.out, &s.dout, &s.dq, &s.dk, &s.dv}) {
            *t = Tensor<bf16, Cuda>(a.x());
            fill_uniform<bf16>(*t, -1.0f, 1.0f, seed++);
        }
        s.lse = Tensor<float, Cuda>(a.lse());
        fill_uniform<float>(s.lse, 0.0f, 1.0f, seed++);
        if (unfused) {
            const Shape sc{a.B * a.H * a.T, a.T};
            for (Tensor<bf16, Cuda>* t : {&s.scores, &s.probs, &s.dscores}) {
                *t = Tensor<bf16, Cuda>(sc);
                fill_uniform<bf16>(*t, -1.0f, 1.0f, seed++);
            }
            const std::vector<void*> table = pointer_table(s, a);
            s.pointers = Tensor<void*, Cuda>(Shape{std::int64_t(table.size())});
            cu::check(cudaMemcpyAsync(s.pointers.data(), table.data(), table.size() * sizeof(void*),
                                      cudaMemcpyHostToDevice, cu::current().stream()),
                      "cudaMemcpyAsync (pointer arrays)");
            cu::synchronize();  // `table` goes out of scope
        }
    }
    return v;
}

void forward(Set& s, const AttnShape& a, Impl impl) {
    switch (impl) {
        case Impl::flash:
            cu::flash_attention_forward(s.out.data(), s.lse.data(), s.q.data(), s.k.data(), s.v.data(), a.B, a.T, a.T,
                                        a.H, a.D, a.causal, a.scale());
            break;
        case Impl::cudnn:
            cu::cudnn_attention_forward(s.out.data(), s.lse.data(), s.q.data(), s.k.data(), s.v.data(), a.B, a.T, a.T,
                                        a.H, a.D, a.causal, a.scale());
            break;
        case Impl::cublas_softmax: cublas_forward(s, a); break;
    }
}

void backward(Set& s, const AttnShape& a, Impl impl) {
    switch (impl) {
        case Impl::flash:
            cu::flash_attention_backward(s.dq.data(), s.dk.data(), s.dv.data(), s.dout.data(), s.q.data(), s.k.data(),
                                         s.v.data(), s.out.data(), s.lse.data(), a.B, a.T, a.T, a.H, a.D, a.causal,
                                         a.scale());
            break;
        case Impl::cudnn:
            cu::cudnn_attention_backward(s.dq.data(), s.dk.data(), s.dv.data(), s.dout.data(), s.q.data(), s.k.data(),
                                         s.v.data(), s.out.data(), s.lse.data(), a.B, a.T, a.T, a.H, a.D, a.causal,
                                         a.scale());
            break;
        case Impl::cublas_softmax: cublas_backward(s, a); break;
    }
}

const char* impl_name(Impl impl) {
    switch (impl) {
        case Impl::flash: return "flash";
        case Impl::cudnn: return "cudnn";
        case Impl::cublas_softmax: return "cublas_softmax";
    }
    return "?";
}

void bm_attention(benchmark::State& state, AttnShape a, Impl impl, bool with_backward, std::string baseline) {
    guarded(state, [&] {
        std::vector<Set> sets = make_sets(a, impl);
        const Work work{a.forward_flops() + (with_backward ? a.backward_flops() : 0.0), 0};
        run_timed(state, work, baseline, [&](std::int64_t i) {
            Set& s = sets[std::size_t(i % std::int64_t(sets.size()))];
            forward(s, a, impl);
            if (with_backward) backward(s, a, impl);
        });
    });
}

void register_attention() {
    const AttnShape shapes[] = {{"T257_D80", 256, 16, 257, 80, false}, {"T77_D64_causal", 256, 16, 77, 64, true}};
    for (const AttnShape& a : shapes)
        for (bool bwd : {false, true}) {
            const std::string prefix = std::string(bwd ? "BM_attention_fwd_bwd/" : "BM_attention_fwd/") + a.name +
                                       "/B:" + std::to_string(a.B) + "/H:" + std::to_string(a.H) + "/";
            for (Impl impl : {Impl::cudnn, Impl::cublas_softmax, Impl::flash}) {
                const std::string baseline = impl == Impl::flash ? prefix + impl_name(Impl::cudnn) : "";
                add(prefix + impl_name(impl), bm_attention, a, impl, bwd, baseline);
            }
        }
}

}  // namespace

int main(int argc, char** argv) {
    return pickscore::bench::main_with(argc, argv, [] {
        pickscore::bench::register_ceilings();
        register_attention();
    });
}
