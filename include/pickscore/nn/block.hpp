// pickscore/nn/block.hpp — the pre-LN transformer block of both CLIP towers.
//
//     h1 = ln1(x);   x1 = x + out_proj(attention(h1))
//     h2 = ln2(x1);  out = x1 + fc2(act(fc1(h2)))
//
// Saved (training): the input x, h1 and ln1's statistics, the attention's q, k, v, a and lse, x1,
// h2 and ln2's statistics, and the MLP's pre-activation. With recomputation only x is kept; the
// backward then rebuilds the rest in scratch memory by running the forward again (up to fc1: the
// block's output is not needed) from the same input with the same ops, so the values, and hence
// the gradients, are bit for bit those of a run that kept everything.
//
// Inference (`infer`) keeps nothing and can run in place (out == x).
//
// Backward: dx holds dL/d(out) on entry and dL/d(x) on exit — the residual stream's gradient is
// one buffer, updated in place, into which each branch's LayerNorm backward adds its share.
#pragma once

#include <cstdint>

#include "../core/tensor.hpp"
#include "../ops/common.hpp"
#include "../ops/elementwise.hpp"
#include "attention.hpp"
#include "layernorm.hpp"
#include "mlp.hpp"
#include "workspace.hpp"

namespace pickscore::nn {

template <class T, class D = Cpu>
struct Block {
    using LN = LayerNorm<T, D>;
    using Attn = SelfAttention<T, D>;
    using MLP = Mlp<T, D>;

    struct Params {
        typename LN::Params ln1;
        typename Attn::Params attn;
        typename LN::Params ln2;
        typename MLP::Params mlp;
    };
    using Grads = Params;

    struct Dims {
        std::int64_t batch, tokens, width, heads, hidden;
        bool causal;
        ops::Activation activation;
        double eps;
        Shape rows() const { return Shape{batch, tokens, width}; }
        std::int64_t row_count() const { return batch * tokens; }
        typename Attn::Dims attn() const { return {batch, tokens, width, heads, causal}; }
        typename MLP::Dims mlp() const { return {batch, tokens, width, hidden, activation}; }
    };

    // What a block keeps for its backward: everything, or only its input (recomputation).
    enum class Keep { all, input };

    struct Saved {
        TensorView<T, D> x;  // [B, T, C] the block's input
        typename LN::Saved ln1;
        TensorView<T, D> h1;  // ln1(x)
        typename Attn::Saved attn;
        TensorView<T, D> x1;  // x + attention branch
        typename LN::Saved ln2;
        TensorView<T, D> h2;  // ln2(x1)
        typename MLP::Saved mlp;
        bool complete() const { return !h1.empty(); }
    };

    // The input buffer, and with Keep::all everything else.
    static Saved alloc_saved(Workspace<D>& ws, const Dims& d, Keep keep) {
        Saved s;
        s.x = ws.template alloc<T>(d.rows());
        if (keep == Keep::all) alloc_internals(ws, d, s);
        return s;
    }

    // Training forward: fills s (all but s.x, the input) and writes out = block(s.x); with out
    // empty it stops after fc1 (what recomputation needs). out must not overlap s.
    static void forward(TensorView<T, D> out /*B,T,C or empty*/, const Saved& s, const Params& p, const Dims& d,
                        Workspace<D>& scratch) {
        LN::forward(s.h1, s.ln1, s.x, p.ln1, d.eps);
        Attn::forward(s.x1, s.attn, s.h1, p.attn, d.attn());
        ops::add_inplace(s.x1, s.x);
        LN::forward(s.h2, s.ln2, s.x1, p.ln2, d.eps);
        MLP::forward(out, s.mlp, s.h2, p.mlp, d.mlp(), scratch);
        if (!out.empty()) ops::add_inplace(out, s.x1);
    }
    static void plan_forward(Workspace<D>& scratch, const Dims& d, bool with_output) {
        MLP::plan_forward(scratch, d.mlp(), with_output);
    }

    // Inference: out = block(x), nothing saved; out may be the same memory as x. The sums are the
    // same as forward's (x + branch), so both paths give the same values.
    static void infer(TensorView<T, D> out /*B,T,C*/, In<T, D> x /*B,T,C*/, const Params& p, const Dims& d,
                      Workspace<D>& scratch) {
        Scope<D> scope(scratch);
        const auto h = scratch.template alloc<T>(d.rows());
        const auto attn = Attn::alloc_saved(scratch, d.attn(), /*with_lse=*/false);
        LN::forward(h, {}, x, p.ln1, d.eps);
        Attn::forward(h, attn, h, p.attn, d.attn());  // h = attention branch
        ops::add(out, x, h.cview());                   // out = x1
        LN::forward(h, {}, out, p.ln2, d.eps);
        MLP::infer(h, h, p.mlp, d.mlp(), scratch);  // h = MLP branch
        ops::add_inplace(out, h);
    }
    static void plan_infer(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        scratch.template alloc<T>(d.rows());
        Attn::alloc_saved(scratch, d.attn(), false);
        MLP::plan_infer(scratch, d.mlp());
    }

    // dx: dL/d(out) on entry, dL/d(s.x) on exit. Parameter gradients accumulate into g.
    static void backward(TensorView<T, D> dx /*B,T,C*/, const Grads& g, const Saved& s, const Params& p,
                         const Dims& d, Workspace<D>& scratch) {
        Scope<D> scope(scratch);
        Saved full = s;
        if (!s.complete()) {  // recomputation: rebuild what forward would have kept
            alloc_internals(scratch, d, full);
            forward(TensorView<T, D>(), full, p, d, scratch);
        }
        const auto dh = scratch.template alloc<T>(d.rows());
        MLP::backward(dh, g.mlp, dx, full.h2, p.mlp, full.mlp, d.mlp(), scratch, Accumulate::no);
        LN::backward(dx, g.ln2, dh, full.x1, p.ln2, full.ln2, Accumulate::yes);  // dx = dL/dx1
        Attn::backward(dh, g.attn, dx, full.h1, p.attn, full.attn, d.attn(), scratch, Accumulate::no);
        LN::backward(dx, g.ln1, dh, full.x, p.ln1, full.ln1, Accumulate::yes);  // dx = dL/dx
    }
    static void plan_backward(Workspace<D>& scratch, const Dims& d, Keep keep) {
        Scope<D> scope(scratch);
        if (keep == Keep::input) {
            Saved full;
            alloc_internals(scratch, d, full);
            plan_forward(scratch, d, false);
        }
        scratch.template alloc<T>(d.rows());
        MLP::plan_backward(scratch, d.mlp());
        Attn::plan_backward(scratch, d.attn());
    }

private:
    static void alloc_internals(Workspace<D>& ws, const Dims& d, Saved& s) {
        s.ln1 = LN::alloc_saved(ws, d.row_count());
        s.h1 = ws.template alloc<T>(d.rows());
        s.attn = Attn::alloc_saved(ws, d.attn(), true);
        s.x1 = ws.template alloc<T>(d.rows());
        s.ln2 = LN::alloc_saved(ws, d.row_count());
        s.h2 = ws.template alloc<T>(d.rows());
        s.mlp = MLP::alloc_saved(ws, d.mlp());
    }
};

}  // namespace pickscore::nn
