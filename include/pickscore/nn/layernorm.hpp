// pickscore/nn/layernorm.hpp — the LayerNorm layer (PyTorch's nn.LayerNorm over the last dimension).
//
// Saved: the mean and the reciprocal standard deviation of every row, in acc_t<T> (f32 for bf16
// models); the input itself is another layer's output, which the caller keeps and passes back.
// An empty Saved (inference) computes the same output and stores nothing.
#pragma once

#include <cstdint>

#include "../core/tensor.hpp"
#include "../ops/common.hpp"
#include "../ops/layernorm.hpp"
#include "workspace.hpp"

namespace pickscore::nn {

using ops::Accumulate;

template <class T, class D = Cpu>
struct LayerNorm {
    struct Params {
        TensorView<T, D> weight;  // [C]
        TensorView<T, D> bias;    // [C]
    };
    using Grads = Params;
    struct Saved {
        TensorView<acc_t<T>, D> mean;  // [rows]
        TensorView<acc_t<T>, D> rstd;  // [rows]
    };

    static Saved alloc_saved(Workspace<D>& ws, std::int64_t rows) {
        Saved s;
        s.mean = ws.template alloc<acc_t<T>>(Shape{rows});
        s.rstd = ws.template alloc<acc_t<T>>(Shape{rows});
        return s;
    }

    // out may be the same memory as x.
    static void forward(TensorView<T, D> out /*...,C*/, const Saved& s, In<T, D> x /*...,C*/, const Params& p,
                        double eps) {
        ops::layernorm_forward(out, s.mean, s.rstd, x, p.weight, p.bias, eps);
    }

    // dx written, or added to what it holds (Accumulate::yes: the residual stream's gradient).
    static void backward(TensorView<T, D> dx /*...,C*/, const Grads& g, In<T, D> dout /*...,C*/,
                         In<T, D> x /*...,C*/, const Params& p, const Saved& s, Accumulate dx_mode) {
        ops::layernorm_backward(dx, g.weight, g.bias, dout, x, p.weight, s.mean, s.rstd, dx_mode);
    }
};

}  // namespace pickscore::nn
