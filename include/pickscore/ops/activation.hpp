// pickscore/ops/activation.hpp — the MLP nonlinearity, element by element, forward and backward.
//
//   gelu_erf:   f(x) = x·Φ(x) = x·(1 + erf(x/√2))/2                 (CLIP, LAION/open_clip)
//   gelu_tanh:  f(x) = x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2     (cuBLASLt's GELU epilogue)
//   quick_gelu: f(x) = x·σ(1.702·x)                                  (OpenAI's CLIP checkpoints)
// The enum Activation is declared in ops/common.hpp so the backends can name it.
// Backward: din = dout · f'(in), in being the saved pre-activation (written).
// CPU: f32 runs cpu/vector_math.hpp (polynomials eight lanes at a time where the CPU has AVX2, a
// portable path as accurate elsewhere); the loops of cpu/activation.hpp are the reference and
// serve the other types.
// CUDA: f32 and bf16, the same promises (in place allowed).
#pragma once

#include <type_traits>

#include "../core/tensor.hpp"
#include "../cpu/activation.hpp"
#include "../cpu/vector_math.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/activation.hpp"
#include "../cuda/elementwise.hpp"
#endif

namespace pickscore::ops {

// out = f(in). out may be the same memory as in.
template <class T, class D>
void activation_forward(TensorView<T, D> out /*...*/, In<T, D> in /*...*/, Activation a) {
    check_shape("activation_forward", "in", in.shape(), out.shape());
    if constexpr (is_cpu<D> && std::is_same_v<T, float>) {  // f32: eight lanes at a time where possible
        cpu::activation_forward_vectorized(out.data(), in.data(), out.numel(), a);
    } else if constexpr (is_cpu<D>) {
        cpu::activation_forward<T>(out.data(), in.data(), out.numel(), a);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "activation_forward: the CUDA backend supports f32 and bf16");
        cuda::activation_forward<T>(out.data(), in.data(), out.numel(), a);
#endif
    } else {
        static_assert(dependent_false<D>, "activation_forward: no backend for this device in this build");
    }
}

// din = dout · f'(in) (written). din may be the same memory as dout.
template <class T, class D>
void activation_backward(TensorView<T, D> din /*...*/, In<T, D> dout /*...*/, In<T, D> in /*...*/, Activation a) {
    check_shape("activation_backward", "dout", dout.shape(), din.shape());
    check_shape("activation_backward", "in", in.shape(), din.shape());
    if constexpr (is_cpu<D> && std::is_same_v<T, float>) {  // f32: eight lanes at a time where possible
        cpu::activation_backward_vectorized(din.data(), dout.data(), in.data(), din.numel(), a);
    } else if constexpr (is_cpu<D>) {
        cpu::activation_backward<T>(din.data(), dout.data(), in.data(), din.numel(), a);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "activation_backward: the CUDA backend supports f32 and bf16");
        cuda::activation_backward<T>(din.data(), dout.data(), in.data(), din.numel(), a);
#endif
    } else {
        static_assert(dependent_false<D>, "activation_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
