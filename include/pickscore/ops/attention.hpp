// pickscore/ops/attention.hpp — scaled dot-product attention, multi-head, forward and backward.
//
// Heads are interleaved in the channel dimension as they come out of a Linear: q [B, Tq, H, Dh] is
// a [B, Tq, H·Dh] projection viewed with reshape, and out [B, Tq, H, Dh] is read back the same way.
// Per batch b and head h, with q_i, k_j, v_j the rows of that head:
//   s_ij = scale · q_i · k_j,   masked (s_ij = −∞) for j > i when causal
//   lse_i = log Σ_j exp(s_ij),   P_ij = exp(s_ij − lse_i),   out_i = Σ_j P_ij v_j
// Forward saves out and lse [B, H, Tq] (accumulator type); lse may be empty for inference.
// Backward recomputes P from q, k and lse (flash-style), with D_i = dout_i · out_i:
//   dP_ij = dout_i · v_j,  dS_ij = P_ij (dP_ij − D_i),
//   dq_i = scale Σ_j dS_ij k_j,  dk_j = scale Σ_i dS_ij q_i,  dv_j = Σ_i P_ij dout_i   (all written)
// causal requires Tq == Tk (query i sees keys 0..i); otherwise Tq and Tk may differ (cross-attention).
// CPU: f32 runs as blocks of sgemm products (cpu/attention_blocked.hpp); the loops of
// cpu/attention.hpp are the reference and serve the other types.
// CUDA (pickscore/cuda/attention.hpp): f32 and bf16; dq of the bf16 tensor-core backward is summed
// with f32 atomics, so its last bits may differ from run to run; cuda::AttentionBackend::cudnn (or
// PICKSCORE_ATTENTION=cudnn) runs bf16 on cuDNN's fused attention instead (not under emulation).
#pragma once

#include <type_traits>

#include "../core/tensor.hpp"
#include "../cpu/attention.hpp"
#include "../cpu/attention_blocked.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/attention.hpp"
#endif

namespace pickscore::ops {

namespace detail {
// Checks q [B,Tq,H,Dh], k and v [B,Tk,H,Dh], causal ⇒ Tq == Tk, at least one key.
inline void check_attention_inputs(const char* op, const Shape& q, const Shape& k, const Shape& v, bool causal) {
    check_rank(op, "q", q, 4);
    check_rank(op, "k", k, 4);
    check_shape(op, "v", v, k);
    check_dim(op, "q", q, 0, "k", k, 0);
    check_dim(op, "q", q, 2, "k", k, 2);
    check_dim(op, "q", q, 3, "k", k, 3);
    require<ShapeError>(k[1] >= 1, op, ": k has shape ", k, " (at least one key is needed)");
    require<ShapeError>(!causal || q[1] == k[1], op, ": causal attention needs as many queries as keys; q has shape ",
                        q, " and k has shape ", k);
}
}  // namespace detail

// out = softmax(scale · q kᵀ, masked) v per (batch, head); lse [B,H,Tq] saved unless empty.
template <class T, class D>
void attention_forward(TensorView<T, D> out /*B,Tq,H,Dh*/, TensorView<acc_t<T>, D> lse /*B,H,Tq*/,
                       In<T, D> q /*B,Tq,H,Dh*/, In<T, D> k /*B,Tk,H,Dh*/, In<T, D> v /*B,Tk,H,Dh*/, bool causal,
                       double scale) {
    const char* op = "attention_forward";
    detail::check_attention_inputs(op, q.shape(), k.shape(), v.shape(), causal);
    check_shape(op, "out", out.shape(), q.shape());
    const std::int64_t B = q.size(0), Tq = q.size(1), Tk = k.size(1), H = q.size(2), Dh = q.size(3);
    if (!lse.empty()) check_shape(op, "lse", lse.shape(), Shape{B, H, Tq});
    if constexpr (is_cpu<D> && std::is_same_v<T, float>) {  // f32: the blocked sgemm path
        cpu::attention_forward_blocked(out.data(), lse.data(), q.data(), k.data(), v.data(), B, Tq, Tk, H, Dh,
                                       causal, scale);
    } else if constexpr (is_cpu<D>) {
        cpu::attention_forward<T>(out.data(), lse.data(), q.data(), k.data(), v.data(), B, Tq, Tk, H, Dh, causal,
                                  scale);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "attention_forward on CUDA: f32 or bf16");
        cuda::attention_forward<T>(out.data(), lse.data(), q.data(), k.data(), v.data(), B, Tq, Tk, H, Dh, causal,
                                   scale);
#endif
    } else {
        static_assert(dependent_false<D>, "attention_forward: no backend for this device in this build");
    }
}

// dq, dk, dv written, from dout and what forward saw and saved (q, k, v, out, lse).
template <class T, class D>
void attention_backward(TensorView<T, D> dq /*B,Tq,H,Dh*/, TensorView<T, D> dk /*B,Tk,H,Dh*/,
                        TensorView<T, D> dv /*B,Tk,H,Dh*/, In<T, D> dout /*B,Tq,H,Dh*/, In<T, D> q /*B,Tq,H,Dh*/,
                        In<T, D> k /*B,Tk,H,Dh*/, In<T, D> v /*B,Tk,H,Dh*/, In<T, D> out /*B,Tq,H,Dh*/,
                        In<acc_t<T>, D> lse /*B,H,Tq*/, bool causal, double scale) {
    const char* op = "attention_backward";
    detail::check_attention_inputs(op, q.shape(), k.shape(), v.shape(), causal);
    check_shape(op, "dq", dq.shape(), q.shape());
    check_shape(op, "dk", dk.shape(), k.shape());
    check_shape(op, "dv", dv.shape(), v.shape());
    check_shape(op, "dout", dout.shape(), q.shape());
    check_shape(op, "out", out.shape(), q.shape());
    const std::int64_t B = q.size(0), Tq = q.size(1), Tk = k.size(1), H = q.size(2), Dh = q.size(3);
    check_present(op, "lse", lse);
    check_shape(op, "lse", lse.shape(), Shape{B, H, Tq});
    if constexpr (is_cpu<D> && std::is_same_v<T, float>) {  // f32: the blocked sgemm path
        cpu::attention_backward_blocked(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(),
                                        out.data(), lse.data(), B, Tq, Tk, H, Dh, causal, scale);
    } else if constexpr (is_cpu<D>) {
        cpu::attention_backward<T>(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(),
                                   out.data(), lse.data(), B, Tq, Tk, H, Dh, causal, scale);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "attention_backward on CUDA: f32 or bf16");
        cuda::attention_backward<T>(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(),
                                    out.data(), lse.data(), B, Tq, Tk, H, Dh, causal, scale);
#endif
    } else {
        static_assert(dependent_false<D>, "attention_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
