// pickscore/nn/linear_stack.hpp — Linear layers one after the other with no nonlinearity between
// them: the reward heads of ImageReward and the LAION aesthetic predictor (768 → 1024 → 128 → 64 →
// 16 → 1; their ReLUs are commented out in the references, and dropout is the identity at
// inference). The composition is itself affine, but the layers are kept as the checkpoints hold
// them, so that the rounding and the gradients are those of the reference.
//
//     h0 = x,  h_{i+1} = h_i W_iᵀ + b_i,  out = h_n
// Saved: the inputs h_1 .. h_{n-1} of the inner layers (x is the caller's).
// Backward: dh_n = dout, dh_i = dh_{i+1} W_i (written), dW_i += dh_{i+1}ᵀ h_i, db_i += Σ dh_{i+1}.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "linear.hpp"
#include "workspace.hpp"

namespace pickscore::nn {

template <class T, class D = Cpu>
struct LinearStack {
    using Lin = Linear<T, D>;
    struct Params {
        std::vector<typename Lin::Params> layers;  // layer i: weight [w_{i+1}, w_i], bias [w_{i+1}]
    };
    using Grads = Params;
    struct Dims {
        std::int64_t rows;                 // rows of x (every leading dimension folded together)
        std::vector<std::int64_t> widths;  // w_0 (the input) .. w_n (the output)
        std::size_t layers() const { return widths.size() - 1; }
        Shape at(std::size_t i) const { return Shape{rows, widths[i]}; }
    };
    struct Saved {
        std::vector<TensorView<T, D>> h;  // h_1 .. h_{n-1}, [rows, w_i]
    };

    static Saved alloc_saved(Workspace<D>& ws, const Dims& d) {
        check(d);
        Saved s;
        for (std::size_t i = 1; i < d.layers(); ++i) s.h.push_back(ws.template alloc<T>(d.at(i)));
        return s;
    }

    // out [rows, w_n] = the stack applied to x [rows, w_0], saving the inner inputs in s.
    static void forward(TensorView<T, D> out /*R,wn*/, const Saved& s, In<T, D> x /*R,w0*/, const Params& p,
                        const Dims& d) {
        check(d, p);
        ops::check_shape("LinearStack", "x", x.shape(), d.at(0));
        ops::check_shape("LinearStack", "out", out.shape(), d.at(d.layers()));
        TensorView<const T, D> in = x;
        for (std::size_t i = 0; i < d.layers(); ++i) {
            const TensorView<T, D> y = i + 1 < d.layers() ? s.h[i] : out;
            Lin::forward(y, in, p.layers[i]);
            in = y;
        }
    }
    // Inference: the same products with the inner results in scratch.
    static void infer(TensorView<T, D> out /*R,wn*/, In<T, D> x /*R,w0*/, const Params& p, const Dims& d,
                      Workspace<D>& scratch) {
        Scope<D> scope(scratch);
        forward(out, alloc_saved(scratch, d), x, p, d);
    }
    static void plan_infer(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        alloc_saved(scratch, d);
    }

    // dx written (may be empty: no input gradient); every parameter gradient accumulated.
    static void backward(TensorView<T, D> dx /*R,w0*/, const Grads& g, In<T, D> dout /*R,wn*/, In<T, D> x /*R,w0*/,
                         const Params& p, const Saved& s, const Dims& d, Workspace<D>& scratch) {
        check(d, p);
        Scope<D> scope(scratch);
        TensorView<const T, D> dy = dout;
        for (std::size_t i = d.layers(); i-- > 0;) {
            const TensorView<const T, D> in = i == 0 ? x : s.h[i - 1].cview();
            TensorView<T, D> din;
            if (i > 0) din = scratch.template alloc<T>(d.at(i));
            else din = dx;
            Lin::backward(din, g.layers[i], dy, in, p.layers[i]);
            dy = din;
        }
    }
    static void plan_backward(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        for (std::size_t i = 1; i < d.layers(); ++i) scratch.template alloc<T>(d.at(i));
    }

private:
    static void check(const Dims& d) {
        require<ShapeError>(d.widths.size() >= 2, "LinearStack: at least one layer (two widths) is needed, got ",
                            d.widths.size(), " widths");
    }
    static void check(const Dims& d, const Params& p) {
        check(d);
        require<ShapeError>(p.layers.size() == d.layers(), "LinearStack: ", p.layers.size(), " layers of parameters for ",
                            d.layers(), " layers");
        for (std::size_t i = 0; i < d.layers(); ++i)
            ops::check_shape("LinearStack", "a layer's weight", p.layers[i].weight.shape(),
                             Shape{d.widths[i + 1], d.widths[i]});
    }
};

}  // namespace pickscore::nn
