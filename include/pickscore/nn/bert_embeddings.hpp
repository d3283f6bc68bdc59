// pickscore/nn/bert_embeddings.hpp — BERT's input embeddings as BLIP's text encoder has them (BLIP's
// BertEmbeddings: word and absolute position embeddings, no token-type embeddings), then LayerNorm.
//
//     s[b, t, :] = word[ids[b, t], :] + position[t, :]        (ops::token_embedding_forward)
//     out        = LayerNorm(s)
// Saved: the sum s and the LayerNorm statistics (the ids are the caller's, on the device).
// Backward: ds = LayerNorm backward of dout; dword[ids] += ds, dposition[t] += Σ_b ds[b, t].
#pragma once

#include <cstdint>

#include "../core/tensor.hpp"
#include "../ops/common.hpp"
#include "../ops/embedding.hpp"
#include "layernorm.hpp"
#include "workspace.hpp"

namespace pickscore::nn {

template <class T, class D = Cpu>
struct BertEmbeddings {
    using LN = LayerNorm<T, D>;
    struct Params {
        TensorView<T, D> word;      // [V, C]
        TensorView<T, D> position;  // [P, C], P >= tokens
        typename LN::Params ln;
    };
    using Grads = Params;
    struct Dims {
        std::int64_t batch, tokens, width;
        double eps;
        Shape rows() const { return Shape{batch, tokens, width}; }
    };
    struct Saved {
        TensorView<T, D> sum;  // [B, T, C] the LayerNorm's input
        typename LN::Saved ln;
    };

    static Saved alloc_saved(Workspace<D>& ws, const Dims& d) {
        return {ws.template alloc<T>(d.rows()), LN::alloc_saved(ws, d.batch * d.tokens)};
    }

    // out = LayerNorm(word[ids] + position[:T]), saving into s (an empty s.sum: inference, where
    // out holds the sum first and is normalised in place). ids_host: an optional host copy of ids
    // (spares the CUDA path a copy back for its range check).
    static void forward(TensorView<T, D> out /*B,T,C*/, const Saved& s, In<std::int32_t, D> ids /*B,T*/,
                        const Params& p, const Dims& d, In<std::int32_t, Cpu> ids_host = {}) {
        ops::check_shape("BertEmbeddings", "out", out.shape(), d.rows());
        const TensorView<T, D> sum = s.sum.empty() ? out : s.sum;
        ops::token_embedding_forward(sum, ids, p.word.cview(), p.position.cview(), ids_host);
        LN::forward(out, s.ln, sum, p.ln, d.eps);
    }

    // Accumulates the gradients of the tables and the LayerNorm from dout. Scratch: ds [B,T,C].
    static void backward(const Grads& g, In<T, D> dout /*B,T,C*/, In<std::int32_t, D> ids /*B,T*/, const Params& p,
                         const Saved& s, const Dims& d, Workspace<D>& scratch, In<std::int32_t, Cpu> ids_host = {}) {
        ops::check_shape("BertEmbeddings::backward", "dout", dout.shape(), d.rows());
        Scope<D> scope(scratch);
        const auto ds = scratch.template alloc<T>(d.rows());
        LN::backward(ds, g.ln, dout, s.sum, p.ln, s.ln, Accumulate::no);
        ops::token_embedding_backward(g.word, g.position, ds.cview(), ids, ids_host);
    }
    static void plan_backward(Workspace<D>& scratch, const Dims& d) {
        Scope<D> scope(scratch);
        scratch.template alloc<T>(d.rows());
    }
};

}  // namespace pickscore::nn
