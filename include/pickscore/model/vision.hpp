// pickscore/model/vision.hpp — CLIP's vision tower (HF CLIPVisionTransformer + visual_projection).
//
//     patches  = patchify(pixels)                        [B, P, 3p²]
//     embed    = [cls; patches · Wpatchᵀ] + pos           [B, T, C]     (T = P + 1, conv without bias)
//     x0       = pre_layrnorm(embed)
//     xL       = blocks(x0)                              (pre-LN, no mask)
//     pooled   = post_layernorm(xL[:, 0, :])              [B, C]
//     out      = pooled · visual_projectionᵀ              [B, E]        (no bias)
// LayerNorm works row by row, so normalising only the class token after pooling is the same as
// HF's post_layernorm of token 0.
//
// The tower holds no parameters and no memory: the model passes Params (views of its flat
// buffer), Saved (views of its activation arena) and a scratch Workspace. Every function that
// takes scratch has a plan_* twin that makes the same allocations on a planning Workspace.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../nn/block.hpp"
#include "../nn/layernorm.hpp"
#include "../nn/linear.hpp"
#include "../nn/workspace.hpp"
#include "../ops/embedding.hpp"
#include "../ops/patches.hpp"
#include "config.hpp"
#include "hooks.hpp"

namespace pickscore::model {

template <class T, class D = Cpu>
class VisionTower {
public:
    using Blk = nn::Block<T, D>;
    using LN = nn::LayerNorm<T, D>;
    using Lin = nn::Linear<T, D>;
    using Keep = typename Blk::Keep;
    using WS = nn::Workspace<D>;

    struct Params {
        TensorView<T, D> class_embedding;     // [C]
        TensorView<T, D> patch_embedding;     // [C, 3, p, p]
        TensorView<T, D> position_embedding;  // [T, C]
        typename LN::Params pre_ln;
        std::vector<typename Blk::Params> blocks;
        typename LN::Params post_ln;
        TensorView<T, D> projection;  // [E, C]
    };
    using Grads = Params;

    struct Saved {
        std::int64_t batch = 0;
        TensorView<std::int32_t, D> positions;  // [B] zeros: the class token is pooled
        TensorView<T, D> patches;               // [B, P, 3p²] input of the patch GEMM
        TensorView<T, D> embed;                 // [B, T, C] input of pre_layrnorm
        typename LN::Saved pre_ln;
        std::vector<typename Blk::Saved> blocks;  // blocks[0].x is pre_layrnorm's output
        TensorView<T, D> pooled;                  // [B, C] token 0 of the last block's output
        typename LN::Saved post_ln;
        TensorView<T, D> pooled_ln;  // [B, C] input of the projection
    };

    explicit VisionTower(const ClipConfig& cfg)
        : v_(cfg.vision), embed_dim_(cfg.embed_dim), activation_(cfg.activation), eps_(cfg.layer_norm_eps) {}

    const VisionConfig& config() const { return v_; }
    typename Blk::Dims block_dims(std::int64_t B) const {
        return {B, v_.tokens(), v_.width, v_.heads, v_.mlp_width, /*causal=*/false, activation_, eps_};
    }

    // ---- training: forward that saves, backward ---------------------------------------------------
    Saved alloc_saved(WS& act, std::int64_t B, Keep keep) const {
        Saved s;
        s.batch = B;
        s.positions = act.template alloc<std::int32_t>(Shape{B});
        s.patches = act.template alloc<T>(Shape{B, v_.patches(), v_.patch_dim()});
        s.embed = act.template alloc<T>(Shape{B, v_.tokens(), v_.width});
        s.pre_ln = LN::alloc_saved(act, B * v_.tokens());
        for (std::int64_t l = 0; l < v_.layers; ++l) s.blocks.push_back(Blk::alloc_saved(act, block_dims(B), keep));
        s.pooled = act.template alloc<T>(Shape{B, v_.width});
        s.post_ln = LN::alloc_saved(act, B);
        s.pooled_ln = act.template alloc<T>(Shape{B, v_.width});
        return s;
    }

    // out [B, E] = the tower applied to pixels [B, 3, S, S], filling s for backward.
    void forward(TensorView<T, D> out /*B,E*/, const Saved& s, In<T, D> pixels /*B,3,S,S*/, const Params& p,
                 WS& scratch) const {
        const std::int64_t B = s.batch;
        check_io("VisionTower::forward", out.shape(), pixels.shape(), B);
        upload_zeros(s.positions);
        const auto dims = block_dims(B);
        ops::patchify(s.patches, pixels, v_.patch_size);
        {
            nn::Scope<D> scope(scratch);
            const auto tokens = scratch.template alloc<T>(Shape{B, v_.patches(), v_.width});
            Lin::forward(tokens, s.patches, patch_linear(p));
            ops::class_position_forward(s.embed, tokens.cview(), p.class_embedding, p.position_embedding);
        }
        LN::forward(s.blocks[0].x, s.pre_ln, s.embed, p.pre_ln, eps_);
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
        LN::forward(s.pooled_ln, s.post_ln, s.pooled, p.post_ln, eps_);
        Lin::forward(out, s.pooled_ln, {p.projection, {}});
    }
    void plan_forward(WS& scratch, std::int64_t B, Keep keep) const {
        const auto dims = block_dims(B);
        {
            nn::Scope<D> scope(scratch);
            scratch.template alloc<T>(Shape{B, v_.patches(), v_.width});
        }
        nn::Scope<D> scope(scratch);
        scratch.template alloc<T>(dims.rows());
        for (std::int64_t l = 0; l < v_.layers; ++l) {
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
        const std::int64_t B = s.batch;
        ops::check_shape("VisionTower::backward", "dout", dout.shape(), Shape{B, embed_dim_});
        const auto dims = block_dims(B);
        nn::Scope<D> scope(scratch);
        const auto dpooled_ln = scratch.template alloc<T>(Shape{B, v_.width});
        const auto dpooled = scratch.template alloc<T>(Shape{B, v_.width});
        const auto dx = scratch.template alloc<T>(dims.rows());
        Lin::backward(dpooled_ln, {g.projection, {}}, dout, s.pooled_ln, {p.projection, {}});
        LN::backward(dpooled, g.post_ln, dpooled_ln, s.pooled, p.post_ln, s.post_ln, nn::Accumulate::no);
        if (done) done(tower_head);
        ops::select_token_backward(dx, dpooled.cview(), s.positions);
        for (std::size_t l = s.blocks.size(); l-- > 0;) {
            Blk::backward(dx, g.blocks[l], s.blocks[l], p.blocks[l], dims, scratch);
            if (done) done(std::int64_t(l));
        }
        const auto dembed = scratch.template alloc<T>(dims.rows());
        LN::backward(dembed, g.pre_ln, dx, s.embed, p.pre_ln, s.pre_ln, nn::Accumulate::no);
        const auto dtokens = scratch.template alloc<T>(Shape{B, v_.patches(), v_.width});
        ops::class_position_backward(dtokens, g.class_embedding, g.position_embedding, dembed.cview());
        Lin::backward(TensorView<T, D>(), patch_linear(g), dtokens, s.patches, patch_linear(p));
        if (done) done(tower_embeddings);
    }
    void plan_backward(WS& scratch, std::int64_t B, Keep keep) const {
        const auto dims = block_dims(B);
        nn::Scope<D> scope(scratch);
        scratch.template alloc<T>(Shape{B, v_.width});
        scratch.template alloc<T>(Shape{B, v_.width});
        scratch.template alloc<T>(dims.rows());
        for (std::int64_t l = 0; l < v_.layers; ++l) Blk::plan_backward(scratch, dims, keep);
        scratch.template alloc<T>(dims.rows());
        scratch.template alloc<T>(Shape{B, v_.patches(), v_.width});
    }

    // ---- inference ---------------------------------------------------------------------------------
    // out [B, E] for pixels [B, 3, S, S]; everything in scratch, released on return.
    void infer(TensorView<T, D> out /*B,E*/, In<T, D> pixels /*B,3,S,S*/, const Params& p, WS& scratch) const {
        ops::check_rank("VisionTower::infer", "pixels", pixels.shape(), 4);
        const std::int64_t B = pixels.size(0);
        check_io("VisionTower::infer", out.shape(), pixels.shape(), B);
        const auto dims = block_dims(B);
        nn::Scope<D> scope(scratch);
        const auto positions = scratch.template alloc<std::int32_t>(Shape{B});
        const auto x = scratch.template alloc<T>(dims.rows());
        const auto pooled = scratch.template alloc<T>(Shape{B, v_.width});
        upload_zeros(positions);
        {
            nn::Scope<D> inner(scratch);
            const auto patches = scratch.template alloc<T>(Shape{B, v_.patches(), v_.patch_dim()});
            const auto tokens = scratch.template alloc<T>(Shape{B, v_.patches(), v_.width});
            ops::patchify(patches, pixels, v_.patch_size);
            Lin::forward(tokens, patches, patch_linear(p));
            ops::class_position_forward(x, tokens.cview(), p.class_embedding, p.position_embedding);
        }
        LN::forward(x, {}, x, p.pre_ln, eps_);
        for (std::size_t l = 0; l < p.blocks.size(); ++l) Blk::infer(x, x, p.blocks[l], dims, scratch);
        ops::select_token_forward(pooled, x.cview(), positions);
        LN::forward(pooled, {}, pooled, p.post_ln, eps_);
        Lin::forward(out, pooled, {p.projection, {}});
    }
    void plan_infer(WS& scratch, std::int64_t B) const {
        const auto dims = block_dims(B);
        nn::Scope<D> scope(scratch);
        scratch.template alloc<std::int32_t>(Shape{B});
        scratch.template alloc<T>(dims.rows());
        scratch.template alloc<T>(Shape{B, v_.width});
        {
            nn::Scope<D> inner(scratch);
            scratch.template alloc<T>(Shape{B, v_.patches(), v_.patch_dim()});
            scratch.template alloc<T>(Shape{B, v_.patches(), v_.width});
        }
        for (std::int64_t l = 0; l < v_.layers; ++l) Blk::plan_infer(scratch, dims);
    }

private:
    // The patch convolution as a Linear over flattened patches: weight [C, 3p²], no bias.
    typename Lin::Params patch_linear(const Params& p) const {
        return {p.patch_embedding.reshape(Shape{v_.width, v_.patch_dim()}), {}};
    }
    void check_io(const char* op, const Shape& out, const Shape& pixels, std::int64_t B) const {
        const Shape want{B, 3, v_.image_size, v_.image_size};
        require<ShapeError>(pixels == want, op, ": pixels has shape ", pixels, ", expected ", want,
                            " (batch, RGB, image_size, image_size)");
        require<ShapeError>(out == Shape{B, embed_dim_}, op, ": out has shape ", out, ", expected ",
                            Shape{B, embed_dim_});
    }
    static void upload_zeros(TensorView<std::int32_t, D> positions) {
        const std::vector<std::int32_t> zeros(std::size_t(positions.numel()), 0);
        nn::copy_from_host<std::int32_t, D>(positions, TensorView<const std::int32_t, Cpu>(zeros.data(), positions.shape()));
    }

    VisionConfig v_;
    std::int64_t embed_dim_;
    ops::Activation activation_;
    double eps_;
};

}  // namespace pickscore::model
