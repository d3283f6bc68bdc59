// pickscore/model/text.hpp — CLIP's text tower (HF CLIPTextTransformer + text_projection).
//
//     x0     = token_embedding[ids] + position_embedding[:L]     [B, L, C]
//     xL     = blocks(x0)                                         (pre-LN, causal mask)
//     pooled = final_layer_norm(xL[b, e_b, :])                    [B, C]
//     out    = pooled · text_projectionᵀ                          [B, E]        (no bias)
// where e_b is the FIRST position of eos_token_id in row b (HF's pooling; for CLIP's vocabulary,
// where end-of-text is the largest id, also open_clip's argmax). A row without it is an error.
//
// Token ids are host memory: the pooling positions are found on the host and uploaded with the
// ids. Because of the causal mask nothing after e_b reaches the pooled vector, so inference runs
// only the first max_b(e_b) + 1 positions; the training forward runs the full length it is given.
//
// Like the vision tower, the tower holds no memory; every function taking scratch has a plan_* twin.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../nn/block.hpp"
#include "../nn/layernorm.hpp"
#include "../nn/linear.hpp"
#include "../nn/workspace.hpp"
#include "../ops/embedding.hpp"
#include "config.hpp"
#include "hooks.hpp"

namespace pickscore::model {

template <class T, class D = Cpu>
class TextTower {
public:
    using Blk = nn::Block<T, D>;
    using LN = nn::LayerNorm<T, D>;
    using Lin = nn::Linear<T, D>;
    using Keep = typename Blk::Keep;
    using WS = nn::Workspace<D>;

    struct Params {
        TensorView<T, D> token_embedding;     // [V, C]
        TensorView<T, D> position_embedding;  // [context_length, C]
        std::vector<typename Blk::Params> blocks;
        typename LN::Params final_ln;
        TensorView<T, D> projection;  // [E, C]
    };
    using Grads = Params;

    struct Saved {
        std::int64_t batch = 0, tokens = 0;
        TensorView<std::int32_t, D> ids;        // [B, L] on the device
        TensorView<std::int32_t, D> positions;  // [B] the pooled (first end-of-text) positions
        std::vector<typename Blk::Saved> blocks;  // blocks[0].x is the embedding sum
        TensorView<T, D> pooled;                  // [B, C]
        typename LN::Saved final_ln;
        TensorView<T, D> pooled_ln;  // [B, C] input of the projection
    };

    explicit TextTower(const ClipConfig& cfg)
        : t_(cfg.text), embed_dim_(cfg.embed_dim), activation_(cfg.activation), eps_(cfg.layer_norm_eps) {}

    const TextConfig& config() const { return t_; }
    typename Blk::Dims block_dims(std::int64_t B, std::int64_t L) const {
        return {B, L, t_.width, t_.heads, t_.mlp_width, /*causal=*/true, activation_, eps_};
    }

    // The first position of eos_token_id in every row of ids [B, L]; Error naming the row if absent.
    std::vector<std::int32_t> pool_positions(In<std::int32_t, Cpu> ids /*B,L*/, const char* op) const {
        ops::check_rank(op, "ids", ids.shape(), 2);
        const std::int64_t B = ids.size(0), L = ids.size(1);
        std::vector<std::int32_t> pos(std::size_t(B), -1);
        for (std::int64_t b = 0; b < B; ++b) {
            for (std::int64_t t = 0; t < L; ++t)
                if (ids[b * L + t] == t_.eos_token_id) {
                    pos[std::size_t(b)] = std::int32_t(t);
                    break;
                }
            require(pos[std::size_t(b)] >= 0, op, ": row ", b, " of ids ", ids.shape(),
                    " has no end-of-text token (id ", t_.eos_token_id, ")");
        }
        return pos;
    }

    // ---- training: forward that saves, backward ---------------------------------------------------
    Saved alloc_saved(WS& act, std::int64_t B, std::int64_t L, Keep keep) const {
        Saved s;
        s.batch = B;
        s.tokens = L;
        s.ids = act.template alloc<std::int32_t>(Shape{B, L});
        s.positions = act.template alloc<std::int32_t>(Shape{B});
        for (std::int64_t l = 0; l < t_.layers; ++l) s.blocks.push_back(Blk::alloc_saved(act, block_dims(B, L), keep));
        s.pooled = act.template alloc<T>(Shape{B, t_.width});
        s.final_ln = LN::alloc_saved(act, B);
        s.pooled_ln = act.template alloc<T>(Shape{B, t_.width});
        return s;
    }

    // out [B, E] for ids [B, L] (host), over all L positions, filling s for backward.
    void forward(TensorView<T, D> out /*B,E*/, const Saved& s, In<std::int32_t, Cpu> ids /*B,L*/, const Params& p,
                 WS& scratch) const {
        constexpr const char* op = "TextTower::forward";
        ops::check_shape(op, "ids", ids.shape(), Shape{s.batch, s.tokens});
        ops::check_shape(op, "out", out.shape(), Shape{s.batch, embed_dim_});
        const std::vector<std::int32_t> pos = pool_positions(ids, op);
        nn::copy_from_host<std::int32_t, D>(s.ids, ids);
        nn::copy_from_host<std::int32_t, D>(s.positions, TensorView<const std::int32_t, Cpu>(pos.data(), Shape{s.batch}));
        const auto dims = block_dims(s.batch, s.tokens);
        ops::token_embedding_forward(s.blocks[0].x, s.ids.cview(), p.token_embedding, p.position_embedding);
        {
            nn::Scope<D> scope(scratch);
            const auto last = scratch.template alloc<T>(dims.rows());
            for (std::size_t l = 0; l < s.blocks.size(); ++l) {
                const auto next = l + 1 < s.blocks.size() ? s.blocks[l + 1].x : last;
                if (s.blocks[l].complete())
                    Blk::forward(next, s.blocks[l], p.blocks[l], dims, scratch);
                else
                    Blk::infer(next, s.blocks[l].x, p.blocks[l], dims, scratch);
            }
            ops::select_token_forward(s.pooled, last.cview(), s.positions);
        }
        LN::forward(s.pooled_ln, s.final_ln, s.pooled, p.final_ln, eps_);
        Lin::forward(out, s.pooled_ln, {p.projection, {}});
    }
    void plan_forward(WS& scratch, std::int64_t B, std::int64_t L, Keep keep) const {
        const auto dims = block_dims(B, L);
        nn::Scope<D> scope(scratch);
        scratch.template alloc<T>(dims.rows());
        for (std::int64_t l = 0; l < t_.layers; ++l) {
            if (keep == Keep::all)
                Blk::plan_forward(scratch, dims, true);
            else
                Blk::plan_infer(scratch, dims);
        }
    }

    // Accumulates the gradient of every parameter from dout = dL/dout [B, E]; `done` hears of each
    // part as its gradients become final (model/hooks.hpp).
    void backward(const Grads& g, In<T, D> dout /*B,E*/, const Saved& s, const Params& p, WS& scratch,
                  const TowerHook& done = {}) const {
        ops::check_shape("TextTower::backward", "dout", dout.shape(), Shape{s.batch, embed_dim_});
        const auto dims = block_dims(s.batch, s.tokens);
        nn::Scope<D> scope(scratch);
        const auto dpooled_ln = scratch.template alloc<T>(Shape{s.batch, t_.width});
        const auto dpooled = scratch.template alloc<T>(Shape{s.batch, t_.width});
        const auto dx = scratch.template alloc<T>(dims.rows());
        Lin::backward(dpooled_ln, {g.projection, {}}, dout, s.pooled_ln, {p.projection, {}});
        LN::backward(dpooled, g.final_ln, dpooled_ln, s.pooled, p.final_ln, s.final_ln, nn::Accumulate::no);
        if (done) done(tower_head);
        ops::select_token_backward(dx, dpooled.cview(), s.positions);
        for (std::size_t l = s.blocks.size(); l-- > 0;) {
            Blk::backward(dx, g.blocks[l], s.blocks[l], p.blocks[l], dims, scratch);
            if (done) done(std::int64_t(l));
        }
        ops::token_embedding_backward(g.token_embedding, g.position_embedding, dx.cview(), s.ids.cview());
        if (done) done(tower_embeddings);
    }
    void plan_backward(WS& scratch, std::int64_t B, std::int64_t L, Keep keep) const {
        const auto dims = block_dims(B, L);
        nn::Scope<D> scope(scratch);
        scratch.template alloc<T>(Shape{B, t_.width});
        scratch.template alloc<T>(Shape{B, t_.width});
        scratch.template alloc<T>(dims.rows());
        for (std::int64_t l = 0; l < t_.layers; ++l) Blk::plan_backward(scratch, dims, keep);
    }

    // ---- inference ---------------------------------------------------------------------------------
    // out [B, E] for ids [B, L] (host, L <= context_length), running only the positions up to the
    // batch's last end-of-text token; everything in scratch, released on return.
    void infer(TensorView<T, D> out /*B,E*/, In<std::int32_t, Cpu> ids /*B,L*/, const Params& p, WS& scratch) const {
        constexpr const char* op = "TextTower::infer";
        ops::check_rank(op, "ids", ids.shape(), 2);
        const std::int64_t B = ids.size(0), L = ids.size(1);
        require<ShapeError>(L <= t_.context_length, op, ": ids has shape ", ids.shape(), ", more than the ",
                            t_.context_length, " positions of the model");
        const std::vector<std::int32_t> pos = pool_positions(ids, op);
        ops::check_shape(op, "out", out.shape(), Shape{B, embed_dim_});
        const std::int64_t used = B == 0 ? 0 : std::int64_t(*std::max_element(pos.begin(), pos.end())) + 1;
        std::vector<std::int32_t> head(std::size_t(B * used));  // ids[:, :used], contiguous
        for (std::int64_t b = 0; b < B; ++b)
            std::copy_n(ids.data() + b * L, used, head.data() + b * used);
        const auto dims = block_dims(B, used);
        nn::Scope<D> scope(scratch);
        const auto ids_dev = scratch.template alloc<std::int32_t>(Shape{B, used});
        const auto pos_dev = scratch.template alloc<std::int32_t>(Shape{B});
        const auto x = scratch.template alloc<T>(dims.rows());
        const auto pooled = scratch.template alloc<T>(Shape{B, t_.width});
        nn::copy_from_host<std::int32_t, D>(ids_dev, TensorView<const std::int32_t, Cpu>(head.data(), Shape{B, used}));
        nn::copy_from_host<std::int32_t, D>(pos_dev, TensorView<const std::int32_t, Cpu>(pos.data(), Shape{B}));
        ops::token_embedding_forward(x, ids_dev.cview(), p.token_embedding, p.position_embedding);
        for (std::size_t l = 0; l < p.blocks.size(); ++l) Blk::infer(x, x, p.blocks[l], dims, scratch);
        ops::select_token_forward(pooled, x.cview(), pos_dev.cview());
        LN::forward(pooled, {}, pooled, p.final_ln, eps_);
        Lin::forward(out, pooled, {p.projection, {}});
    }
    // The plan covers the whole context (the most inference can use).
    void plan_infer(WS& scratch, std::int64_t B) const {
        const std::int64_t L = t_.context_length;
        const auto dims = block_dims(B, L);
        nn::Scope<D> scope(scratch);
        scratch.template alloc<std::int32_t>(Shape{B, L});
        scratch.template alloc<std::int32_t>(Shape{B});
        scratch.template alloc<T>(dims.rows());
        scratch.template alloc<T>(Shape{B, t_.width});
        for (std::int64_t l = 0; l < t_.layers; ++l) Blk::plan_infer(scratch, dims);
    }

private:
    TextConfig t_;
    std::int64_t embed_dim_;
    ops::Activation activation_;
    double eps_;
};

}  // namespace pickscore::model
