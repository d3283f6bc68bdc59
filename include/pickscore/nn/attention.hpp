// pickscore/nn/attention.hpp — multi-head self-attention with its four projections (CLIP's
// CLIPAttention / open_clip's nn.MultiheadAttention).
//
//     q = x Wqᵀ + bq,  k = x Wkᵀ + bk,  v = x Wvᵀ + bv            each [B, T, C] = [B, T, H, Dh]
//     a = softmax(q kᵀ / √Dh, causal mask for the text tower) v   per head (ops::attention_*)
//     out = a Woᵀ + bo
// Saved: q, k, v, a and the log-sum-exp of every query row (the input x is the caller's).
// Backward: dout → da (out projection) → dq, dk, dv (attention, recomputing P from the lse) →
// dx = dq Wq + dk Wk + dv Wv.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/tensor.hpp"
#include "../ops/attention.hpp"
#include "../ops/common.hpp"
#include "linear.hpp"
#include "workspace.hpp"

namespace pickscore::nn {

template <class T, class D = Cpu>
struct SelfAttention {
    using Lin = Linear<T, D>;
    struct Params {
        typename Lin::Params q, k, v, out;
    };
    using Grads = Params;
    struct Dims {
        std::int64_t batch, tokens, width, heads;
        bool causal;
        std::int64_t head_dim() const { return width / heads; }
        double scale() const { return 1.0 / std::sqrt(double(head_dim())); }
        Shape rows() const { return Shape{batch, tokens, width}; }
        Shape split() const { return Shape{batch, tokens, heads, head_dim()}; }
    };
    struct Saved {
        TensorView<T, D> q, k, v, a;     // [B, T, C] each
        TensorView<acc_t<T>, D> lse;     // [B, H, T]; empty in inference
    };

    // All of Saved; lse only when `with_lse` (training).
    static Saved alloc_saved(Workspace<D>& ws, const Dims& d, bool with_lse = true) {
        Saved s;
        s.q = ws.template alloc<T>(d.rows());
        s.k = ws.template alloc<T>(d.rows());
        s.v = ws.template alloc<T>(d.rows());
        s.a = ws.template alloc<T>(d.rows());
        if (with_lse) s.lse = ws.template alloc<acc_t<T>>(Shape{d.batch, d.heads, d.tokens});
        return s;
    }

    // out = out_proj(attention(q, k, v)). out may be the same memory as x (x is read only by the
    // q, k, v projections, before out is written).
    static void forward(TensorView<T, D> out /*B,T,C*/, const Saved& s, In<T, D> x /*B,T,C*/, const Params& p,
                        const Dims& d) {
        Lin::forward(s.q, x, p.q);
        Lin::forward(s.k, x, p.k);
        Lin::forward(s.v, x, p.v);
        ops::attention_forward(s.a.reshape(d.split()), s.lse, s.q.reshape(d.split()).cview(),
                               s.k.reshape(d.split()).cview(), s.v.reshape(d.split()).cview(), d.causal, d.scale());
        Lin::forward(out, s.a, p.out);
    }

    // dx written or added (dx_mode); every parameter gradient accumulated. Scratch: da, dq, dk, dv.
    static void backward(TensorView<T, D> dx /*B,T,C*/, const Grads& g, In<T, D> dout /*B,T,C*/,
                         In<T, D> x /*B,T,C*/, const Params& p, const Saved& s, const Dims& d,
                         Workspace<D>& scratch, Accumulate dx_mode) {
        Scope<D> scope(scratch);
        const Temps t = alloc_backward(scratch, d);
        Lin::backward(t.da, g.out, dout, s.a, p.out);
        ops::attention_backward(t.dq.reshape(d.split()), t.dk.reshape(d.split()), t.dv.reshape(d.split()),
                                t.da.reshape(d.split()).cview(), s.q.reshape(d.split()).cview(),
                                s.k.reshape(d.split()).cview(), s.v.reshape(d.split()).cview(),
                                s.a.reshape(d.split()).cview(), s.lse, d.causal, d.scale());
        Lin::backward(dx, g.q, t.dq, x, p.q, dx_mode);
        Lin::backward(dx, g.k, t.dk, x, p.k, Accumulate::yes);
        Lin::backward(dx, g.v, t.dv, x, p.v, Accumulate::yes);
    }
    static void plan_backward(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        alloc_backward(scratch, d);
    }

private:
    struct Temps {
        TensorView<T, D> da, dq, dk, dv;
    };
    static Temps alloc_backward(Workspace<D>& ws, const Dims& d) {
        Temps t;
        t.da = ws.template alloc<T>(d.rows());
        t.dq = ws.template alloc<T>(d.rows());
        t.dk = ws.template alloc<T>(d.rows());
        t.dv = ws.template alloc<T>(d.rows());
        return t;
    }
};

}  // namespace pickscore::nn
