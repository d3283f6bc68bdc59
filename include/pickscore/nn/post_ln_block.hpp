// pickscore/nn/post_ln_block.hpp — the post-LN transformer block of BERT, with BLIP's optional
// cross-attention (ImageReward's text encoder: BertLayer in mode "multimodal").
//
//     x1  = ln1(x + self_attention(x))                 (BertAttention: self + output.dense + LayerNorm)
//     x2  = ln2(x1 + cross_attention(x1, e))           (crossattention; skipped without `cross`)
//     out = ln3(x2 + fc2(act(fc1(x2))))                (intermediate + output)
// Unlike the pre-LN Block, every LayerNorm sits on the residual stream itself, after the sum.
//
// Saved (training): the input x, the attention's q, k, v, a, lse, each residual sum s1, s2, s3 and
// its LayerNorm statistics, x1 and x2 (the LayerNorm outputs the next branch reads), the
// cross-attention's q, k, v, a, lse, and the MLP's pre-activation. Inference (`infer`) keeps
// nothing and can run in place (out == x).
//
// Backward: dx holds dL/d(out) on entry and dL/d(x) on exit; de (the encoder states' gradient) is
// added to. Each stage: ds = LayerNorm backward of the incoming gradient, then dx = ds + the
// branch's input gradient (the residual passes ds through unchanged).
#pragma once

#include <cstdint>
#include <utility>

#include "../core/tensor.hpp"
#include "../ops/common.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/layernorm.hpp"
#include "attention.hpp"
#include "cross_attention.hpp"
#include "layernorm.hpp"
#include "mlp.hpp"
#include "workspace.hpp"

namespace pickscore::nn {

template <class T, class D = Cpu>
struct PostLnBlock {
    using LN = LayerNorm<T, D>;
    using Attn = SelfAttention<T, D>;
    using Cross = CrossAttention<T, D>;
    using MLP = Mlp<T, D>;

    struct Params {
        typename Attn::Params attn;
        typename LN::Params ln1;
        typename Cross::Params cross;  // unused (may be empty) without cross-attention
        typename LN::Params ln2;       // likewise
        typename MLP::Params mlp;
        typename LN::Params ln3;
    };
    using Grads = Params;

    struct Dims {
        std::int64_t batch, tokens, width, heads, hidden;
        ops::Activation activation;
        double eps;
        bool cross = false;                          // with cross-attention to encoder states
        std::int64_t kv_tokens = 0, kv_width = 0;    // the encoder states [B, kv_tokens, kv_width]
        Shape rows() const { return Shape{batch, tokens, width}; }
        Shape encoder() const { return Shape{batch, kv_tokens, kv_width}; }
        std::int64_t row_count() const { return batch * tokens; }
        typename Attn::Dims attn() const { return {batch, tokens, width, heads, /*causal=*/false}; }
        typename Cross::Dims cross_dims() const { return {batch, tokens, kv_tokens, width, kv_width, heads}; }
        typename MLP::Dims mlp() const { return {batch, tokens, width, hidden, activation}; }
    };

    struct Saved {
        TensorView<T, D> x;  // [B, T, C] the block's input
        typename Attn::Saved attn;
        TensorView<T, D> s1, x1;  // x + attention branch; ln1 of it
        typename LN::Saved ln1;
        typename Cross::Saved cross;
        TensorView<T, D> s2, x2;  // x1 + cross branch; ln2 of it (x2 = x1 without cross-attention)
        typename LN::Saved ln2;
        typename MLP::Saved mlp;
        TensorView<T, D> s3;  // x2 + MLP branch
        typename LN::Saved ln3;
    };

    static Saved alloc_saved(Workspace<D>& ws, const Dims& d) {
        Saved s;
        s.x = ws.template alloc<T>(d.rows());
        s.attn = Attn::alloc_saved(ws, d.attn(), true);
        s.s1 = ws.template alloc<T>(d.rows());
        s.x1 = ws.template alloc<T>(d.rows());
        s.ln1 = LN::alloc_saved(ws, d.row_count());
        if (d.cross) {
            s.cross = Cross::alloc_saved(ws, d.cross_dims(), true);
            s.s2 = ws.template alloc<T>(d.rows());
            s.x2 = ws.template alloc<T>(d.rows());
            s.ln2 = LN::alloc_saved(ws, d.row_count());
        }
        s.mlp = MLP::alloc_saved(ws, d.mlp());
        s.s3 = ws.template alloc<T>(d.rows());
        s.ln3 = LN::alloc_saved(ws, d.row_count());
        return s;
    }

    // Training forward: fills s (all but s.x, the input) and writes out = block(s.x, e). e is
    // ignored (may be empty) without cross-attention. out must not overlap s.
    static void forward(TensorView<T, D> out /*B,T,C*/, const Saved& s, In<T, D> e /*B,Tk,Ce*/, const Params& p,
                        const Dims& d, Workspace<D>& scratch) {
        check(d, s.x.shape(), e.shape());
        Scope<D> scope(scratch);
        const auto branch = scratch.template alloc<T>(d.rows());
        Attn::forward(branch, s.attn, s.x, p.attn, d.attn());
        ops::add_layernorm_forward(s.s1, s.x1, s.ln1.mean, s.ln1.rstd, s.x.cview(), branch.cview(), p.ln1.weight,
                                   p.ln1.bias, d.eps);
        const TensorView<T, D> x2 = d.cross ? s.x2 : s.x1;
        if (d.cross) {
            Cross::forward(branch, s.cross, s.x1, e, p.cross, d.cross_dims());
            ops::add_layernorm_forward(s.s2, s.x2, s.ln2.mean, s.ln2.rstd, s.x1.cview(), branch.cview(),
                                       p.ln2.weight, p.ln2.bias, d.eps);
        }
        MLP::forward(branch, s.mlp, x2, p.mlp, d.mlp(), scratch);
        ops::add_layernorm_forward(s.s3, out, s.ln3.mean, s.ln3.rstd, x2.cview(), branch.cview(), p.ln3.weight,
                                   p.ln3.bias, d.eps);
    }
    static void plan_forward(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        scratch.template alloc<T>(d.rows());
        MLP::plan_forward(scratch, d.mlp(), true);
    }

    // Inference: out = block(x, e), nothing saved; out may be the same memory as x. The same ops
    // as forward, so the same values.
    static void infer(TensorView<T, D> out /*B,T,C*/, In<T, D> x /*B,T,C*/, In<T, D> e /*B,Tk,Ce*/,
                      const Params& p, const Dims& d, Workspace<D>& scratch) {
        check(d, x.shape(), e.shape());
        using Stats = TensorView<acc_t<T>, D>;
        Scope<D> scope(scratch);
        // branch: each branch's output, then the residual sum in place; h, h2: the LayerNorm outputs
        // (no op writes a buffer it reads, other than the documented residual-sum aliasing).
        const auto branch = scratch.template alloc<T>(d.rows());
        TensorView<T, D> h = scratch.template alloc<T>(d.rows());
        TensorView<T, D> h2 = scratch.template alloc<T>(d.rows());
        {
            Scope<D> inner(scratch);
            const auto attn = Attn::alloc_saved(scratch, d.attn(), /*with_lse=*/false);
            Attn::forward(branch, attn, x, p.attn, d.attn());
        }
        ops::add_layernorm_forward(branch, h, Stats(), Stats(), x, branch.cview(), p.ln1.weight, p.ln1.bias, d.eps);
        if (d.cross) {
            {
                Scope<D> inner(scratch);
                const auto cross = Cross::alloc_saved(scratch, d.cross_dims(), /*with_lse=*/false);
                Cross::forward(branch, cross, h, e, p.cross, d.cross_dims());
            }
            ops::add_layernorm_forward(branch, h2, Stats(), Stats(), h.cview(), branch.cview(), p.ln2.weight,
                                       p.ln2.bias, d.eps);
            std::swap(h, h2);
        }
        MLP::infer(branch, h, p.mlp, d.mlp(), scratch);
        ops::add_layernorm_forward(branch, out, Stats(), Stats(), h.cview(), branch.cview(), p.ln3.weight,
                                   p.ln3.bias, d.eps);
    }
    static void plan_infer(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        for (int i = 0; i < 3; ++i) scratch.template alloc<T>(d.rows());
        {
            Scope<D> inner(scratch);
            Attn::alloc_saved(scratch, d.attn(), false);
        }
        if (d.cross) {
            Scope<D> inner(scratch);
            Cross::alloc_saved(scratch, d.cross_dims(), false);
        }
        MLP::plan_infer(scratch, d.mlp());
    }

    // dx: dL/d(out) on entry, dL/d(s.x) on exit. de added to (may be empty when no gradient of the
    // encoder states is wanted; must be empty or [B, Tk, Ce]). Parameter gradients accumulate.
    static void backward(TensorView<T, D> dx /*B,T,C*/, TensorView<T, D> de /*B,Tk,Ce +=*/, const Grads& g,
                         const Saved& s, In<T, D> e /*B,Tk,Ce*/, const Params& p, const Dims& d,
                         Workspace<D>& scratch) {
        check(d, s.x.shape(), e.shape());
        ops::check_shape("PostLnBlock::backward", "dx", dx.shape(), d.rows());
        Scope<D> scope(scratch);
        const auto ds = scratch.template alloc<T>(d.rows());
        const TensorView<T, D> x2 = d.cross ? s.x2 : s.x1;
        // out = ln3(s3), s3 = x2 + mlp(x2)
        LN::backward(ds, g.ln3, dx, s.s3, p.ln3, s.ln3, Accumulate::no);
        MLP::backward(dx, g.mlp, ds, x2, p.mlp, s.mlp, d.mlp(), scratch, Accumulate::no);
        ops::add_inplace(dx, ds.cview());  // dx = dL/dx2
        if (d.cross) {
            // x2 = ln2(s2), s2 = x1 + cross(x1, e)
            LN::backward(ds, g.ln2, dx, s.s2, p.ln2, s.ln2, Accumulate::no);
            if (de.empty()) {
                const auto de_scratch = scratch.template alloc<T>(d.encoder());
                Cross::backward(dx, de_scratch, g.cross, ds, s.x1, e, p.cross, s.cross, d.cross_dims(), scratch,
                                Accumulate::no);
            } else {
                ops::check_shape("PostLnBlock::backward", "de", de.shape(), d.encoder());
                Cross::backward(dx, de, g.cross, ds, s.x1, e, p.cross, s.cross, d.cross_dims(), scratch,
                                Accumulate::no);
            }
            ops::add_inplace(dx, ds.cview());  // dx = dL/dx1
        }
        // x1 = ln1(s1), s1 = x + attn(x)
        LN::backward(ds, g.ln1, dx, s.s1, p.ln1, s.ln1, Accumulate::no);
        Attn::backward(dx, g.attn, ds, s.x, p.attn, s.attn, d.attn(), scratch, Accumulate::no);
        ops::add_inplace(dx, ds.cview());  // dx = dL/dx
    }
    static void plan_backward(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        scratch.template alloc<T>(d.rows());
        MLP::plan_backward(scratch, d.mlp());
        if (d.cross) {
            Scope<D> inner(scratch);
            scratch.template alloc<T>(d.encoder());
            Cross::plan_backward(scratch, d.cross_dims());
        }
        Attn::plan_backward(scratch, d.attn());
    }

private:
    static void check(const Dims& d, const Shape& x, const Shape& e) {
        ops::check_shape("PostLnBlock", "x", x, d.rows());
        if (d.cross) ops::check_shape("PostLnBlock", "e (the encoder states)", e, d.encoder());
    }
};

}  // namespace pickscore::nn
