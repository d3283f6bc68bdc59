// pickscore/nn/cross_attention.hpp — multi-head cross-attention: queries from one sequence, keys
// and values from another (BLIP's BertSelfAttention with encoder_hidden_states: the text attends to
// the image tokens).
//
//     q = x Wqᵀ + bq            [B, Tq, C]     x: the text states   [B, Tq, C]
//     k = e Wkᵀ + bk            [B, Tk, C]     e: the encoder states [B, Tk, Ce] (Ce may differ from C)
//     v = e Wvᵀ + bv            [B, Tk, C]
//     a = softmax(q kᵀ / √Dh) v per head, no mask (ops::attention_*, Tq != Tk)
//     out = a Woᵀ + bo          [B, Tq, C]
// Saved: q, k, v, a and the log-sum-exp of every query row (x and e are the caller's).
// Backward: dout → da → dq, dk, dv → dx = dq Wq (written or added), de += dk Wk + dv Wv (always
// added: the same encoder states feed every layer, so their gradient is a sum over layers).
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
struct CrossAttention {
    using Lin = Linear<T, D>;
    struct Params {
        typename Lin::Params q, k, v, out;  // q, out: [C, C]; k, v: [C, Ce]
    };
    using Grads = Params;
    struct Dims {
        std::int64_t batch, tokens, kv_tokens, width, kv_width, heads;
        std::int64_t head_dim() const { return width / heads; }
        double scale() const { return 1.0 / std::sqrt(double(head_dim())); }
        Shape rows() const { return Shape{batch, tokens, width}; }
        Shape kv_rows() const { return Shape{batch, kv_tokens, width}; }
        Shape encoder() const { return Shape{batch, kv_tokens, kv_width}; }
        Shape split() const { return Shape{batch, tokens, heads, head_dim()}; }
        Shape kv_split() const { return Shape{batch, kv_tokens, heads, head_dim()}; }
    };
    struct Saved {
        TensorView<T, D> q, a;         // [B, Tq, C]
        TensorView<T, D> k, v;         // [B, Tk, C]
        TensorView<acc_t<T>, D> lse;   // [B, H, Tq]; empty in inference
    };

    static Saved alloc_saved(Workspace<D>& ws, const Dims& d, bool with_lse = true) {
        Saved s;
        s.q = ws.template alloc<T>(d.rows());
        s.k = ws.template alloc<T>(d.kv_rows());
        s.v = ws.template alloc<T>(d.kv_rows());
        s.a = ws.template alloc<T>(d.rows());
        if (with_lse) s.lse = ws.template alloc<acc_t<T>>(Shape{d.batch, d.heads, d.tokens});
        return s;
    }

    // out = out_proj(attention(q(x), k(e), v(e))). out may be the same memory as x.
    static void forward(TensorView<T, D> out /*B,Tq,C*/, const Saved& s, In<T, D> x /*B,Tq,C*/,
                        In<T, D> e /*B,Tk,Ce*/, const Params& p, const Dims& d) {
        check(d, x.shape(), e.shape());
        Lin::forward(s.q, x, p.q);
        Lin::forward(s.k, e, p.k);
        Lin::forward(s.v, e, p.v);
        ops::attention_forward(s.a.reshape(d.split()), s.lse, s.q.reshape(d.split()).cview(),
                               s.k.reshape(d.kv_split()).cview(), s.v.reshape(d.kv_split()).cview(),
                               /*causal=*/false, d.scale());
        Lin::forward(out, s.a, p.out);
    }

    // dx written or added (dx_mode); de added to; every parameter gradient accumulated.
    // Scratch: da, dq [B,Tq,C], dk, dv [B,Tk,C].
    static void backward(TensorView<T, D> dx /*B,Tq,C*/, TensorView<T, D> de /*B,Tk,Ce +=*/, const Grads& g,
                         In<T, D> dout /*B,Tq,C*/, In<T, D> x /*B,Tq,C*/, In<T, D> e /*B,Tk,Ce*/, const Params& p,
                         const Saved& s, const Dims& d, Workspace<D>& scratch, Accumulate dx_mode) {
        check(d, x.shape(), e.shape());
        Scope<D> scope(scratch);
        const Temps t = alloc_backward(scratch, d);
        Lin::backward(t.da, g.out, dout, s.a, p.out);
        ops::attention_backward(t.dq.reshape(d.split()), t.dk.reshape(d.kv_split()), t.dv.reshape(d.kv_split()),
                                t.da.reshape(d.split()).cview(), s.q.reshape(d.split()).cview(),
                                s.k.reshape(d.kv_split()).cview(), s.v.reshape(d.kv_split()).cview(),
                                s.a.reshape(d.split()).cview(), s.lse, /*causal=*/false, d.scale());
        Lin::backward(dx, g.q, t.dq, x, p.q, dx_mode);
        Lin::backward(de, g.k, t.dk, e, p.k, Accumulate::yes);
        Lin::backward(de, g.v, t.dv, e, p.v, Accumulate::yes);
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
        t.dk = ws.template alloc<T>(d.kv_rows());
        t.dv = ws.template alloc<T>(d.kv_rows());
        return t;
    }
    static void check(const Dims& d, const Shape& x, const Shape& e) {
        ops::check_shape("CrossAttention", "x", x, d.rows());
        ops::check_shape("CrossAttention", "e (the encoder states)", e, d.encoder());
        require<ShapeError>(d.heads >= 1 && d.width % d.heads == 0, "CrossAttention: width ", d.width,
                            " is not a multiple of heads ", d.heads);
    }
};

}  // namespace pickscore::nn
