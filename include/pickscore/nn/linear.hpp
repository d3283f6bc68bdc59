// pickscore/nn/linear.hpp — the Linear layer (PyTorch's nn.Linear) with forward and backward.
//
//     y[..., out] = x[..., in] · weightᵀ + bias          weight [out, in], bias [out] or empty
// Saved: the input x. It is usually another layer's output, which the caller keeps anyway, so
// Linear holds no buffer of its own: the caller passes x to backward.
// Backward: dx = dy · weight (written, or added with Accumulate::yes; dx may be empty),
//           dweight += dyᵀ · x,  dbias += Σ_rows dy.
#pragma once

#include "../core/tensor.hpp"
#include "../ops/common.hpp"
#include "../ops/gemm.hpp"

namespace pickscore::nn {

using ops::Accumulate;

template <class T, class D = Cpu>
struct Linear {
    struct Params {
        TensorView<T, D> weight;  // [out, in]
        TensorView<T, D> bias;    // [out], or empty for a Linear without bias
    };
    using Grads = Params;

    static void forward(TensorView<T, D> y /*...,out*/, In<T, D> x /*...,in*/, const Params& p) {
        ops::linear_forward(y, x, p.weight, p.bias);
    }

    static void backward(TensorView<T, D> dx /*...,in*/, const Grads& g, In<T, D> dy /*...,out*/,
                         In<T, D> x /*...,in*/, const Params& p, Accumulate dx_mode = Accumulate::no) {
        if (dx_mode == Accumulate::yes && !dx.empty()) {
            ops::check_shape("Linear::backward", "dx", dx.shape(), x.shape());
            // dx += dy · W: a GEMM with beta = 1; then the parameter gradients alone.
            ops::gemm(dx.as_matrix(), dy.as_matrix(), p.weight, ops::Trans::N, ops::Trans::N, 1.0, 1.0);
            ops::linear_backward(TensorView<T, D>(), g.weight, g.bias, dy, x, p.weight);
        } else {
            ops::linear_backward(dx, g.weight, g.bias, dy, x, p.weight);
        }
    }
};

}  // namespace pickscore::nn
