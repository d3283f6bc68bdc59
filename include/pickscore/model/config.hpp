// pickscore/model/config.hpp — the dimensions of a CLIP model, its presets, and what they cost.
//
// A ClipConfig describes both towers (see docs/pickscore-reference.md):
//   vision: image_size² RGB pixels cut into (image_size / patch_size)² patches plus a class token,
//           `layers` pre-LN blocks of `width` channels, `heads` heads and an MLP of `mlp_width`;
//   text:   `context_length` token positions over a vocabulary of `vocab_size` ids, causal blocks,
//           pooled at the first `eos_token_id`;
//   both projected (no bias) to `embed_dim`, with one learned scalar logit_scale.
// Checkpoints bring their own dimensions (the loader builds a ClipConfig from the tensors it finds);
// the presets here are the published architectures, for tests, planning and random-weight runs.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "../core/error.hpp"
#include "../ops/common.hpp"

namespace pickscore::model {

using ops::Activation;

struct VisionConfig {
    std::int64_t image_size = 224;
    std::int64_t patch_size = 14;
    std::int64_t width = 1280;
    std::int64_t layers = 32;
    std::int64_t heads = 16;
    std::int64_t mlp_width = 5120;

    std::int64_t grid() const { return image_size / patch_size; }     // patches per side
    std::int64_t patches() const { return grid() * grid(); }          // 256 for 224 / 14
    std::int64_t tokens() const { return patches() + 1; }             // + the class token: 257
    std::int64_t patch_dim() const { return 3 * patch_size * patch_size; }  // a flattened RGB patch
    std::int64_t head_dim() const { return width / heads; }
};

namespace detail {
// The checks every transformer stack shares: width, layers, heads and mlp_width at least 1, the
// width a multiple of the heads. `where` starts the message, `prefix` names the fields ("text").
inline void validate_stack(const std::string& where, const char* prefix, std::int64_t width, std::int64_t layers,
                           std::int64_t heads, std::int64_t mlp_width) {
    for (const auto& [field, v] : {std::pair<const char*, std::int64_t>{"width", width}, {"layers", layers},
                                   {"heads", heads}, {"mlp_width", mlp_width}})
        require(v >= 1, where, prefix, ".", field, " must be at least 1, got ", v);
    require(width % heads == 0, where, prefix, ".width ", width, " is not a multiple of ", prefix, ".heads ", heads);
}
// A ViT's image geometry and stack (VisionConfig, and ImageReward's BLIP vision config).
template <class V>
void validate_vit(const std::string& where, const V& v) {
    require(v.image_size >= 1, where, "vision.image_size must be at least 1, got ", v.image_size);
    require(v.patch_size >= 1, where, "vision.patch_size must be at least 1, got ", v.patch_size);
    validate_stack(where, "vision", v.width, v.layers, v.heads, v.mlp_width);
    require(v.image_size % v.patch_size == 0, where, "vision.image_size ", v.image_size,
            " is not a multiple of vision.patch_size ", v.patch_size);
}
}  // namespace detail

struct TextConfig {
    std::int64_t vocab_size = 49408;
    std::int64_t context_length = 77;
    std::int64_t width = 1024;
    std::int64_t layers = 24;
    std::int64_t heads = 16;
    std::int64_t mlp_width = 4096;
    // The end-of-text id: the text tower pools at its first occurrence in each row. CLIP's BPE
    // vocabulary puts it last (49407); tiny test vocabularies set their own.
    std::int32_t eos_token_id = 49407;

    std::int64_t head_dim() const { return width / heads; }
};

struct ClipConfig {
    std::string name = "custom";
    VisionConfig vision;
    TextConfig text;
    std::int64_t embed_dim = 1024;
    // The MLP nonlinearity of both towers: exact erf GELU for LAION / PickScore / HPSv2,
    // quick GELU for OpenAI's own checkpoints.
    Activation activation = Activation::gelu_erf;
    double layer_norm_eps = 1e-5;
    // The value logit_scale starts from in a fresh model: ln(1 / 0.07) = 2.6593 (CLIP's init;
    // trained checkpoints carry their own).
    double logit_scale_init = std::log(1.0 / 0.07);

    // Throws Error naming the field when a dimension is not positive, a width is not a multiple
    // of its head count, the image is not a whole number of patches, or the end-of-text id lies
    // outside the vocabulary.
    void validate() const {
        const std::string where = "ClipConfig '" + name + "': ";
        auto positive = [&](const char* field, std::int64_t v) {
            require(v >= 1, where, field, " must be at least 1, got ", v);
        };
        detail::validate_vit(where, vision);
        positive("text.vocab_size", text.vocab_size);
        positive("text.context_length", text.context_length);
        detail::validate_stack(where, "text", text.width, text.layers, text.heads, text.mlp_width);
        positive("embed_dim", embed_dim);
        require(0 <= text.eos_token_id && text.eos_token_id < text.vocab_size, where, "text.eos_token_id ",
                text.eos_token_id, " is outside the vocabulary [0, ", text.vocab_size, ")");
        require(std::isfinite(layer_norm_eps) && layer_norm_eps > 0, where, "layer_norm_eps must be positive, got ",
                layer_norm_eps);
        require(std::isfinite(logit_scale_init), where, "logit_scale_init must be finite, got ", logit_scale_init);
        require(activation == Activation::gelu_erf || activation == Activation::gelu_tanh ||
                    activation == Activation::quick_gelu,
                where, "unknown activation ", int(activation));
    }

    // ---- parameters -----------------------------------------------------------------------------
    // One pre-LN block: q, k, v, out projections with biases, two LayerNorms, fc1 and fc2.
    static std::int64_t block_parameters(std::int64_t C, std::int64_t M) {
        return 4 * (C * C + C) + 2 * (2 * C) + (C * M + M) + (M * C + C);
    }
    // Patch weight, class and position embeddings, pre/post LayerNorm, blocks, visual_projection.
    std::int64_t vision_parameters() const {
        const std::int64_t C = vision.width;
        return vision.patch_dim() * C + C + vision.tokens() * C + 2 * C +
               vision.layers * block_parameters(C, vision.mlp_width) + 2 * C + C * embed_dim;
    }
    // Token and position embeddings, blocks, final LayerNorm, text_projection.
    std::int64_t text_parameters() const {
        const std::int64_t C = text.width;
        return text.vocab_size * C + text.context_length * C + text.layers * block_parameters(C, text.mlp_width) +
               2 * C + C * embed_dim;
    }
    // Both towers and logit_scale.
    std::int64_t num_parameters() const { return vision_parameters() + text_parameters() + 1; }

    // ---- arithmetic ------------------------------------------------------------------------------
    // Forward FLOPs, counted as 2 per multiply-add of the matrix products (projections, MLP, patch
    // GEMM, final projection) and of attention (q·kᵀ and P·v over the full T×T square: the causal
    // mask is not discounted). LayerNorm, softmax, GELU and embedding sums are not counted. This is
    // the convention of the reference figures: ViT-H/14 334.59 G per image, 47.09 G per prompt.
    static double blocks_flops(std::int64_t tokens, std::int64_t layers, std::int64_t C, std::int64_t M) {
        const double T = double(tokens), c = double(C), m = double(M);
        return 2.0 * double(layers) * (T * (4 * c * c + 2 * c * m) + 2 * T * T * c);
    }
    double vision_flops() const {
        const double C = double(vision.width);
        return blocks_flops(vision.tokens(), vision.layers, vision.width, vision.mlp_width) +
               2.0 * double(vision.patches()) * double(vision.patch_dim()) * C + 2.0 * C * double(embed_dim);
    }
    // Per prompt, over `tokens` positions (default: the whole context).
    double text_flops(std::int64_t tokens = -1) const {
        const std::int64_t t = tokens < 0 ? text.context_length : tokens;
        return blocks_flops(t, text.layers, text.width, text.mlp_width) +
               2.0 * double(text.width) * double(embed_dim);
    }

    // ---- presets ---------------------------------------------------------------------------------
    // OpenAI's ViT-B/32, ViT-B/16 and ViT-L/14 (quick GELU), LAION's ViT-H/14 (PickScore, HPSv2,
    // exact GELU) and ViT-bigG/14. All at 224 px with the 77-token, 49408-id text side.
    static ClipConfig vit_b32() { return openai("ViT-B/32", 32, 768, 12, 12, 512, 12, 8, 512); }
    static ClipConfig vit_b16() { return openai("ViT-B/16", 16, 768, 12, 12, 512, 12, 8, 512); }
    static ClipConfig vit_l14() { return openai("ViT-L/14", 14, 1024, 24, 16, 768, 12, 12, 768); }
    static ClipConfig vit_h14() {
        ClipConfig c;
        c.name = "ViT-H/14";
        c.vision = {224, 14, 1280, 32, 16, 5120};
        c.text = {49408, 77, 1024, 24, 16, 4096, 49407};
        c.embed_dim = 1024;
        c.activation = Activation::gelu_erf;
        return c;
    }
    static ClipConfig vit_bigg14() {
        ClipConfig c;
        c.name = "ViT-bigG/14";
        c.vision = {224, 14, 1664, 48, 16, 8192};
        c.text = {49408, 77, 1280, 32, 20, 5120, 49407};
        c.embed_dim = 1280;
        c.activation = Activation::gelu_erf;
        return c;
    }
    // A model small enough for finite differences: 28 px images in 14 px patches (5 tokens), width
    // 16 with 2 heads; a 50-id vocabulary (end-of-text 49) over 9 positions, width 12 with 2 heads
    // (head dim 6); 2 layers each; embed 8.
    static ClipConfig tiny() {
        ClipConfig c;
        c.name = "tiny";
        c.vision = {28, 14, 16, 2, 2, 64};
        c.text = {50, 9, 12, 2, 2, 48, 49};
        c.embed_dim = 8;
        c.activation = Activation::gelu_erf;
        return c;
    }

private:
    static ClipConfig openai(const char* name, std::int64_t patch, std::int64_t vw, std::int64_t vl,
                             std::int64_t vh, std::int64_t tw, std::int64_t tl, std::int64_t th, std::int64_t embed) {
        ClipConfig c;
        c.name = name;
        c.vision = {224, patch, vw, vl, vh, 4 * vw};
        c.text = {49408, 77, tw, tl, th, 4 * tw, 49407};
        c.embed_dim = embed;
        c.activation = Activation::quick_gelu;
        return c;
    }
};

}  // namespace pickscore::model
