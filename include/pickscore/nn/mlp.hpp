// pickscore/nn/mlp.hpp — the transformer MLP: fc1, the nonlinearity, fc2.
//
//     f = x W1ᵀ + b1        [..., M]   (the pre-activation: saved)
//     g = act(f)            [..., M]   (not saved: backward recomputes it from f, one cheap pass)
//     out = g W2ᵀ + b2      [..., C]
#pragma once

#include <cstdint>

#include "../core/tensor.hpp"
#include "../ops/activation.hpp"
#include "../ops/common.hpp"
#include "linear.hpp"
#include "workspace.hpp"

namespace pickscore::nn {

template <class T, class D = Cpu>
struct Mlp {
    using Lin = Linear<T, D>;
    struct Params {
        typename Lin::Params fc1, fc2;
    };
    using Grads = Params;
    struct Dims {
        std::int64_t batch, tokens, width, hidden;
        ops::Activation activation;
        Shape hidden_rows() const { return Shape{batch, tokens, hidden}; }
    };
    struct Saved {
        TensorView<T, D> f;  // [B, T, M] pre-activation
    };

    static Saved alloc_saved(Workspace<D>& ws, const Dims& d) { return {ws.template alloc<T>(d.hidden_rows())}; }

    // f = fc1(x) into s.f; then, unless out is empty, out = fc2(act(f)) with act(f) in scratch.
    // (An empty out is what recomputation asks for: backward needs f, not the output.)
    static void forward(TensorView<T, D> out /*B,T,C or empty*/, const Saved& s, In<T, D> x /*B,T,C*/,
                        const Params& p, const Dims& d, Workspace<D>& scratch) {
        Lin::forward(s.f, x, p.fc1);
        if (out.empty()) return;
        Scope<D> scope(scratch);
        const auto g = scratch.template alloc<T>(d.hidden_rows());
        ops::activation_forward(g, s.f, d.activation);
        Lin::forward(out, g, p.fc2);
    }
    static void plan_forward(Workspace<D>& scratch, const Dims& d, bool with_output) {
        if (!with_output) return;
        Scope<D> scope(scratch);
        scratch.template alloc<T>(d.hidden_rows());
    }

    // Inference: nothing saved, the activation applied in place. out may be the same memory as x.
    static void infer(TensorView<T, D> out /*B,T,C*/, In<T, D> x /*B,T,C*/, const Params& p, const Dims& d,
                      Workspace<D>& scratch) {
        Scope<D> scope(scratch);
        const auto f = scratch.template alloc<T>(d.hidden_rows());
        Lin::forward(f, x, p.fc1);
        ops::activation_forward(f, f, d.activation);
        Lin::forward(out, f, p.fc2);
    }
    static void plan_infer(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        scratch.template alloc<T>(d.hidden_rows());
    }

    // dx written or added (dx_mode); parameter gradients accumulated. Scratch: g and dg [B,T,M].
    static void backward(TensorView<T, D> dx /*B,T,C*/, const Grads& gr, In<T, D> dout /*B,T,C*/,
                         In<T, D> x /*B,T,C*/, const Params& p, const Saved& s, const Dims& d,
                         Workspace<D>& scratch, Accumulate dx_mode) {
        Scope<D> scope(scratch);
        const auto g = scratch.template alloc<T>(d.hidden_rows());
        const auto dg = scratch.template alloc<T>(d.hidden_rows());
        ops::activation_forward(g, s.f, d.activation);  // recomputed: the same values forward had
        Lin::backward(dg, gr.fc2, dout, g, p.fc2);
        ops::activation_backward(dg, dg, s.f, d.activation);  // df, in place
        Lin::backward(dx, gr.fc1, dg, x, p.fc1, dx_mode);
    }
    static void plan_backward(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        scratch.template alloc<T>(d.hidden_rows());
        scratch.template alloc<T>(d.hidden_rows());
    }
};

}  // namespace pickscore::nn
