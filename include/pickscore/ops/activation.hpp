// pickscore/ops/activation.hpp — the MLP nonlinearity, element by element, forward and backward.
//
//   gelu_erf:   f(x) = x·Φ(x) = x·(1 + erf(x/√2))/2                 (CLIP, LAION/open_clip)
//   gelu_tanh:  f(x) = x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2     (cuBLASLt's GELU epilogue)
//   quick_gelu: f(x) = x·σ(1.702·x)                                  (OpenAI's CLIP checkpoints)
// The enum Activation is declared in ops/common.hpp so the backends can name it.
// Backward: din = dout · f'(in), in being the saved pre-activation (written).
#pragma once

#include "../core/tensor.hpp"
#include "../cpu/activation.hpp"
#include "common.hpp"

namespace pickscore::ops {

// out = f(in). out may be the same memory as in.
template <class T, class D>
void activation_forward(TensorView<T, D> out /*...*/, In<T, D> in /*...*/, Activation a) {
    check_shape("activation_forward", "in", in.shape(), out.shape());
    if constexpr (is_cpu<D>) {
        cpu::activation_forward<T>(out.data(), in.data(), out.numel(), a);
    } else {
        static_assert(dependent_false<D>, "activation_forward: no backend for this device in this build");
    }
}

// din = dout · f'(in) (written). din may be the same memory as dout.
template <class T, class D>
void activation_backward(TensorView<T, D> din /*...*/, In<T, D> dout /*...*/, In<T, D> in /*...*/, Activation a) {
    check_shape("activation_backward", "dout", dout.shape(), din.shape());
    check_shape("activation_backward", "in", in.shape(), din.shape());
    if constexpr (is_cpu<D>) {
        cpu::activation_backward<T>(din.data(), dout.data(), in.data(), din.numel(), a);
    } else {
        static_assert(dependent_false<D>, "activation_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
