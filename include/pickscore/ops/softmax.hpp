// pickscore/ops/softmax.hpp — softmax over the last dimension, forward and backward.
//
//   out[..., j] = exp(in[..., j] − m) / Σ_k exp(in[..., k] − m),  m = max_k in[..., k]
// Backward (from the saved output):
//   din[..., j] = out[..., j] · (dout[..., j] − Σ_k dout[..., k] · out[..., k])   (written)
// −∞ entries (a mask) get probability 0; a row that is −∞ throughout has no softmax and gives
// NaN, as in PyTorch. CUDA: f32 and bf16, the same promises.
#pragma once

#include "../core/tensor.hpp"
#include "../cpu/softmax.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/elementwise.hpp"
#include "../cuda/softmax.hpp"
#endif

namespace pickscore::ops {

// out = softmax(in) along the last dimension. out may be the same memory as in.
template <class T, class D>
void softmax_forward(TensorView<T, D> out /*...,N*/, In<T, D> in /*...,N*/) {
    check_shape("softmax_forward", "in", in.shape(), out.shape());
    require<ShapeError>(out.rank() >= 1, "softmax_forward: out has shape ", out.shape(), ", expected rank >= 1");
    if constexpr (is_cpu<D>) {
        cpu::softmax_forward<T>(out.data(), in.data(), out.shape().rows(), out.shape().last());
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "softmax_forward: the CUDA backend supports f32 and bf16");
        cuda::softmax_forward<T>(out.data(), in.data(), out.shape().rows(), out.shape().last());
#endif
    } else {
        static_assert(dependent_false<D>, "softmax_forward: no backend for this device in this build");
    }
}

// din = out ∘ (dout − rowsum(dout ∘ out)) (written).
template <class T, class D>
void softmax_backward(TensorView<T, D> din /*...,N*/, In<T, D> dout /*...,N*/, In<T, D> out /*...,N*/) {
    check_shape("softmax_backward", "dout", dout.shape(), din.shape());
    check_shape("softmax_backward", "out", out.shape(), din.shape());
    require<ShapeError>(din.rank() >= 1, "softmax_backward: din has shape ", din.shape(), ", expected rank >= 1");
    if constexpr (is_cpu<D>) {
        cpu::softmax_backward<T>(din.data(), dout.data(), out.data(), din.shape().rows(), din.shape().last());
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "softmax_backward: the CUDA backend supports f32 and bf16");
        cuda::softmax_backward<T>(din.data(), dout.data(), out.data(), din.shape().rows(), din.shape().last());
#endif
    } else {
        static_assert(dependent_false<D>, "softmax_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
