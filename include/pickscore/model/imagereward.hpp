// pickscore/model/imagereward.hpp — ImageReward (Xu et al. 2023): BLIP's ViT image encoder, BLIP's
// BERT "MED" text encoder cross-attending to the image in every layer, and a linear reward head.
//
//   ImageRewardModel<float> m(ImageRewardConfig::imagereward(), {.batch = 8});
//   io::load_imagereward_parameters(m.parameters(), st);                 // io/scorer_checkpoints.hpp
//   m.rewards(out /*N*/, ids /*N,L host*/, lengths /*N*/, pixels /*N,3,224,224*/);
//
// What runs (the image-reward 1.5 package: ImageReward.score / inference_rank, BLIP's vit.py and
// med.py; each detail checked against that code):
//   image:  pixels → patches (conv p×p, stride p, WITH bias) → [cls; patches] + pos_embed → pre-LN
//           ViT blocks (fused qkv with bias, exact GELU, LayerNorm eps 1e-6, no LayerNorm before the
//           blocks) → LayerNorm over ALL tokens ("norm") → the encoder states [N, 1 + P, Cv]
//           (197 × 1024 for ViT-L/16 at 224 px; there is no projection);
//   text:   ids ([CLS] prompt [SEP], bert-base-uncased WordPiece, max length 35; the first token is
//           [CLS] itself — ImageReward does not swap in BLIP's [ENC] token) → word + absolute position
//           embeddings (no token types) → LayerNorm (eps 1e-12) → 12 post-LN BERT layers, each:
//           self-attention, cross-attention to the encoder states (keys/values projected from Cv to
//           C), MLP with exact GELU → the final state of token 0 [N, C];
//   reward: MLP 768 → 1024 → 128 → 64 → 16 → 1 with no activations (dropout only, an identity
//           here), then (r − 0.16717362830052426) / 1.0333394966054072.
// Padding: the reference pads to 35 with an attention mask that gives padded keys −10000 before the
// softmax, so they get exactly zero weight in f32 (and f64). Here each row runs over its own length
// instead: rewards() takes every row's length and runs consecutive rows of equal length together
// (one prompt with many images is one run), so no mask is needed and nothing changes.
//
// Parameters: one ParamStore in the names and shapes of ImageReward.pt's state dict
// (blip.visual_encoder.*, blip.text_encoder.*, mlp.layers.{0,2,4,6,7}.*); the fused qkv weight
// [3Cv, Cv] stays one tensor and the q, k, v Linears are views of its row blocks.
//
// Inference only: one scratch arena planned for options.batch images and the longest text
// (config.text.max_length). The layers it is built from (nn::Block, nn::PostLnBlock,
// nn::CrossAttention, nn::BertEmbeddings, nn::LinearStack) all have forward and backward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "../core/arena.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "../nn/bert_embeddings.hpp"
#include "../nn/block.hpp"
#include "../nn/layernorm.hpp"
#include "../nn/linear.hpp"
#include "../nn/linear_stack.hpp"
#include "../nn/post_ln_block.hpp"
#include "../nn/workspace.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/embedding.hpp"
#include "../ops/patches.hpp"
#include "config.hpp"
#include "params.hpp"

namespace pickscore::model {

struct BlipVisionConfig {
    std::int64_t image_size = 224;
    std::int64_t patch_size = 16;
    std::int64_t width = 1024;
    std::int64_t layers = 24;
    std::int64_t heads = 16;
    std::int64_t mlp_width = 4096;
    double layer_norm_eps = 1e-6;

    std::int64_t grid() const { return image_size / patch_size; }
    std::int64_t patches() const { return grid() * grid(); }
    std::int64_t tokens() const { return patches() + 1; }
    std::int64_t patch_dim() const { return 3 * patch_size * patch_size; }
};

struct BertTextConfig {
    std::int64_t vocab_size = 30524;  // bert-base-uncased's 30522 + BLIP's [DEC] and [ENC]
    std::int64_t max_positions = 512;
    std::int64_t width = 768;
    std::int64_t layers = 12;
    std::int64_t heads = 12;
    std::int64_t mlp_width = 3072;
    double layer_norm_eps = 1e-12;
    std::int64_t max_length = 35;  // ImageReward tokenizes to 35 ids
};

struct ImageRewardConfig {
    std::string name = "custom";
    BlipVisionConfig vision;
    BertTextConfig text;
    std::vector<std::int64_t> head = {1024, 128, 64, 16, 1};  // the reward MLP after the text width
    double reward_mean = 0.16717362830052426;
    double reward_std = 1.0333394966054072;
    ops::Activation activation = ops::Activation::gelu_erf;  // both encoders (nn.GELU, BERT "gelu")

    // The reward head's widths, input included.
    std::vector<std::int64_t> head_widths() const {
        std::vector<std::int64_t> w{text.width};
        w.insert(w.end(), head.begin(), head.end());
        return w;
    }

    void validate() const {
        const std::string where = "ImageRewardConfig '" + name + "': ";
        auto positive = [&](const char* field, std::int64_t v) {
            require(v >= 1, where, field, " must be at least 1, got ", v);
        };
        detail::validate_vit(where, vision);
        positive("text.vocab_size", text.vocab_size);
        positive("text.max_positions", text.max_positions);
        detail::validate_stack(where, "text", text.width, text.layers, text.heads, text.mlp_width);
        require(text.max_length >= 2 && text.max_length <= text.max_positions, where, "text.max_length ",
                text.max_length, " must be in [2, max_positions = ", text.max_positions, "]");
        require(!head.empty() && head.back() == 1, where, "the reward head must end in width 1");
        for (std::int64_t w : head) positive("head width", w);
        require(vision.layer_norm_eps > 0 && text.layer_norm_eps > 0, where, "LayerNorm eps must be positive");
        require(std::isfinite(reward_mean) && std::isfinite(reward_std) && reward_std != 0, where,
                "reward_mean / reward_std must be finite and reward_std non-zero");
    }

    // Every parameter tensor's element count, as the checkpoint holds them.
    std::int64_t num_parameters() const {
        const std::int64_t Cv = vision.width, Mv = vision.mlp_width, C = text.width, M = text.mlp_width;
        const std::int64_t vit_block = 2 * 2 * Cv + (3 * Cv * Cv + 3 * Cv) + (Cv * Cv + Cv) + (Cv * Mv + Mv) + (Mv * Cv + Cv);
        const std::int64_t vit = Cv + vision.tokens() * Cv + vision.patch_dim() * Cv + Cv + vision.layers * vit_block + 2 * Cv;
        const std::int64_t attn = 4 * (C * C + C) + 2 * C;
        const std::int64_t cross = 2 * (C * C + C) + 2 * (C * Cv + C) + 2 * C;
        const std::int64_t ffn = (C * M + M) + (M * C + C) + 2 * C;
        const std::int64_t bert = text.vocab_size * C + text.max_positions * C + 2 * C + text.layers * (attn + cross + ffn);
        std::int64_t mlp = 0;
        const auto w = head_widths();
        for (std::size_t i = 0; i + 1 < w.size(); ++i) mlp += w[i] * w[i + 1] + w[i + 1];
        return vit + bert + mlp;
    }

    // ImageReward-v1.0: BLIP ViT-L/16 at 224 px + BERT-base with cross-attention.
    static ImageRewardConfig imagereward() {
        ImageRewardConfig c;
        c.name = "ImageReward-v1.0";
        return c;
    }
    // Small enough for finite differences: 32 px in 16 px patches (5 tokens), widths 24 / 20.
    static ImageRewardConfig tiny() {
        ImageRewardConfig c;
        c.name = "tiny";
        c.vision = {32, 16, 24, 2, 2, 40, 1e-6};
        c.text = {60, 12, 20, 2, 2, 28, 1e-12, 9};
        c.head = {12, 6, 1};
        return c;
    }
};

struct ImageRewardOptions {
    std::int64_t batch = 8;  // images (and their text rows) per model call
};

template <class T, class D = Cpu>
class ImageRewardModel {
public:
    using Vit = nn::Block<T, D>;
    using Bert = nn::PostLnBlock<T, D>;
    using LN = nn::LayerNorm<T, D>;
    using Lin = nn::Linear<T, D>;
    using Emb = nn::BertEmbeddings<T, D>;
    using Head = nn::LinearStack<T, D>;
    using WS = nn::Workspace<D>;

    struct VisionParams {
        TensorView<T, D> cls;        // [C]     (cls_token [1, 1, C])
        TensorView<T, D> pos;        // [T, C]  (pos_embed [1, T, C])
        typename Lin::Params patch;  // [C, 3p²] (proj.weight [C, 3, p, p]), bias [C]
        std::vector<typename Vit::Params> blocks;
        typename LN::Params norm;
    };
    struct TextParams {
        typename Emb::Params embeddings;
        std::vector<typename Bert::Params> layers;
    };

    explicit ImageRewardModel(const ImageRewardConfig& config, const ImageRewardOptions& options = {})
        : cfg_((config.validate(), config)), opt_(options) {
        require(opt_.batch >= 1, "ImageRewardModel: options.batch must be at least 1, got ", opt_.batch);
        layout();
        store_.allocate();
        bind();
        for (std::size_t i = 0; i < store_.size(); ++i)
            if (store_.name(i).ends_with("norm1.weight") || store_.name(i).ends_with("norm2.weight") ||
                store_.name(i).ends_with("norm.weight") || store_.name(i).ends_with("LayerNorm.weight"))
                ops::fill(store_.value(i), 1.0);
        WS plan;
        plan_scratch(plan, opt_.batch, cfg_.text.max_length);
        scratch_ = Arena<D>(plan.peak());
    }
    ImageRewardModel(const ImageRewardModel&) = delete;
    ImageRewardModel& operator=(const ImageRewardModel&) = delete;
    ImageRewardModel(ImageRewardModel&&) = default;
    ImageRewardModel& operator=(ImageRewardModel&&) = default;

    const ImageRewardConfig& config() const { return cfg_; }
    const ImageRewardOptions& options() const { return opt_; }
    std::vector<NamedTensor<T, D>> parameters() const { return store_.values(); }
    const ParamStore<T, D>& store() const { return store_; }
    std::int64_t num_parameters() const { return store_.num_parameters(); }
    const VisionParams& vision_params() const { return vp_; }
    const TextParams& text_params() const { return tp_; }
    const typename Head::Params& head_params() const { return hp_; }
    const Arena<D>& scratch_arena() const { return scratch_; }

    // Random weights for tests: every matrix N(0, 1/√fan_in), embeddings and biases N(0, σ), LayerNorm
    // weights 1 + N(0, 0.1). Drawn on the host.
    void init_weights(Rng& rng, double sigma = 0.1) {
        for (std::size_t i = 0; i < store_.size(); ++i) {
            const std::string& n = store_.name(i);
            Tensor<T, Cpu> host(store_.shape(i));
            const bool norm_weight = n.ends_with("norm1.weight") || n.ends_with("norm2.weight") ||
                                     n.ends_with("norm.weight") || n.ends_with("LayerNorm.weight");
            const Shape& s = store_.shape(i);
            double sd = sigma, mean = 0.0;
            if (norm_weight) {
                mean = 1.0;
            } else if (s.rank() >= 2 && !n.ends_with("embeddings.weight") && !n.ends_with("pos_embed")) {
                sd = 1.0 / std::sqrt(double(s.numel() / s[0]));
            }
            for (std::int64_t k = 0; k < host.numel(); ++k) host[k] = cast<T>(mean + sd * rng.normal());
            nn::copy_from_host<T, D>(store_.value(i), host);
        }
    }

    // ---- inference ---------------------------------------------------------------------------------
    // The encoder states [N, 1 + P, Cv] of pixels [N, 3, S, S] (N <= options.batch).
    void encode_images(TensorView<T, D> out /*N,Tv,Cv*/, In<T, D> pixels /*N,3,S,S*/) {
        const std::int64_t N = check_pixels("ImageRewardModel::encode_images", pixels);
        ops::check_shape("ImageRewardModel::encode_images", "out", out.shape(), Shape{N, vis().tokens(), vis().width});
        WS scr(scratch_);
        vision_infer(out, pixels, scr);
    }

    // The final state of token 0 [N, C] for ids [N, L] (host) whose row i is valid up to
    // lengths[i] (the rest is padding and ignored; empty lengths: every row is L long), each row
    // cross-attending to enc [N, Tv, Cv]. Consecutive rows of equal length run together.
    void text_features(TensorView<T, D> out /*N,C*/, In<std::int32_t, Cpu> ids /*N,L*/,
                       std::span<const std::int64_t> lengths, In<T, D> enc /*N,Tv,Cv*/) {
        constexpr const char* op = "ImageRewardModel::text_features";
        ops::check_rank(op, "ids", ids.shape(), 2);
        const std::int64_t N = ids.size(0);
        ops::check_shape(op, "enc", enc.shape(), Shape{N, vis().tokens(), vis().width});
        ops::check_shape(op, "out", out.shape(), Shape{N, txt().width});
        const std::vector<std::int64_t> len = row_lengths(op, ids, lengths);
        WS scr(scratch_);
        for (std::int64_t i = 0; i < N;) {
            std::int64_t j = i + 1;
            while (j < N && len[std::size_t(j)] == len[std::size_t(i)] && j - i < opt_.batch) ++j;
            text_infer(out.slice(i, j), ids.slice(i, j), len[std::size_t(i)], enc.slice(i, j), scr);
            i = j;
        }
    }

    // The ImageReward rewards of N (prompt, image) pairs: out [N] (normalised unless `normalize` is
    // false: then the head's raw output). ids and lengths as in text_features; pixels on the device.
    // Runs options.batch pairs at a time.
    void rewards(TensorView<T, D> out /*N*/, In<std::int32_t, Cpu> ids /*N,L*/, std::span<const std::int64_t> lengths,
                 In<T, D> pixels /*N,3,S,S*/, bool normalize = true) {
        constexpr const char* op = "ImageRewardModel::rewards";
        ops::check_rank(op, "ids", ids.shape(), 2);
        ops::check_rank(op, "pixels", pixels.shape(), 4);
        const std::int64_t N = ids.size(0);
        require<ShapeError>(pixels.size(0) == N, op, ": ids has shape ", ids.shape(), " but pixels has shape ",
                            pixels.shape(), " (one image per row of ids)");
        ops::check_shape(op, "out", out.shape(), Shape{N});
        const std::vector<std::int64_t> len = row_lengths(op, ids, lengths);
        for (std::int64_t i = 0; i < N; i += opt_.batch) {
            const std::int64_t j = std::min(N, i + opt_.batch);
            WS scr(scratch_);
            nn::Scope<D> s(scr);
            const auto enc = scr.template alloc<T>(Shape{j - i, vis().tokens(), vis().width});
            const auto feat = scr.template alloc<T>(Shape{j - i, txt().width});
            check_pixels(op, pixels.slice(i, j));
            vision_infer(enc, pixels.slice(i, j), scr);
            for (std::int64_t a = i; a < j;) {
                std::int64_t b = a + 1;
                while (b < j && len[std::size_t(b)] == len[std::size_t(a)]) ++b;
                text_infer(feat.slice(a - i, b - i), ids.slice(a, b), len[std::size_t(a)], enc.slice(a - i, b - i).cview(),
                           scr);
                a = b;
            }
            head_infer(out.slice(i, j), feat.cview(), normalize, scr);
        }
    }

    // The reward head on text features [N, C] → out [N] (normalised unless `normalize` is false).
    void head(TensorView<T, D> out /*N*/, In<T, D> features /*N,C*/, bool normalize = true) {
        ops::check_rank("ImageRewardModel::head", "features", features.shape(), 2);
        const std::int64_t N = features.size(0);
        ops::check_shape("ImageRewardModel::head", "features", features.shape(), Shape{N, txt().width});
        ops::check_shape("ImageRewardModel::head", "out", out.shape(), Shape{N});
        for (std::int64_t i = 0; i < N; i += opt_.batch) {
            const std::int64_t j = std::min(N, i + opt_.batch);
            WS scr(scratch_);
            head_infer(out.slice(i, j), features.slice(i, j), normalize, scr);
        }
    }

    typename Vit::Dims vit_dims(std::int64_t B) const {
        return {B, vis().tokens(), vis().width, vis().heads, vis().mlp_width, /*causal=*/false, cfg_.activation,
                vis().layer_norm_eps};
    }
    typename Bert::Dims bert_dims(std::int64_t B, std::int64_t L) const {
        typename Bert::Dims d{B, L, txt().width, txt().heads, txt().mlp_width, cfg_.activation, txt().layer_norm_eps};
        d.cross = true;
        d.kv_tokens = vis().tokens();
        d.kv_width = vis().width;
        return d;
    }

private:
    const BlipVisionConfig& vis() const { return cfg_.vision; }
    const BertTextConfig& txt() const { return cfg_.text; }

    std::int64_t check_pixels(const char* op, const TensorView<const T, D>& pixels) const {
        ops::check_rank(op, "pixels", pixels.shape(), 4);
        const std::int64_t N = pixels.size(0), S = vis().image_size;
        require<ShapeError>(pixels.shape() == Shape{N, 3, S, S}, op, ": pixels has shape ", pixels.shape(),
                            ", expected [N, 3, ", S, ", ", S, "]");
        require<ShapeError>(N <= opt_.batch, op, ": ", N, " images, the model was planned for at most ", opt_.batch,
                            " per call");
        return N;
    }

    std::vector<std::int64_t> row_lengths(const char* op, In<std::int32_t, Cpu> ids,
                                          std::span<const std::int64_t> lengths) const {
        const std::int64_t N = ids.size(0), L = ids.size(1);
        require<ShapeError>(lengths.empty() || std::int64_t(lengths.size()) == N, op, ": ", lengths.size(),
                            " lengths for ids of shape ", ids.shape());
        require<ShapeError>(L <= txt().max_positions, op, ": ids has shape ", ids.shape(), ", more than the ",
                            txt().max_positions, " positions of the model");
        std::vector<std::int64_t> len(std::size_t(N), L);
        for (std::int64_t i = 0; i < N && !lengths.empty(); ++i) {
            len[std::size_t(i)] = lengths[std::size_t(i)];
            require<ShapeError>(len[std::size_t(i)] >= 1 && len[std::size_t(i)] <= L, op, ": length ",
                                len[std::size_t(i)], " of row ", i, " is outside [1, ", L, "]");
        }
        for (std::int64_t i = 0; i < N; ++i)
            for (std::int64_t t = 0; t < len[std::size_t(i)]; ++t) {
                const std::int32_t id = ids[i * L + t];
                require<Error>(id >= 0 && id < txt().vocab_size, op, ": id ", id, " at row ", i, ", position ", t,
                               " is outside the vocabulary [0, ", txt().vocab_size, ")");
            }
        return len;
    }

    // out [B, Tv, Cv].
    void vision_infer(TensorView<T, D> out, In<T, D> pixels, WS& scr) const {
        const std::int64_t B = pixels.size(0);
        nn::Scope<D> scope(scr);
        {
            nn::Scope<D> inner(scr);
            const auto patches = scr.template alloc<T>(Shape{B, vis().patches(), vis().patch_dim()});
            const auto tokens = scr.template alloc<T>(Shape{B, vis().patches(), vis().width});
            ops::patchify(patches, pixels, vis().patch_size);
            Lin::forward(tokens, patches, vp_.patch);
            ops::class_position_forward(out, tokens.cview(), vp_.cls.cview(), vp_.pos.cview());
        }
        const auto dims = vit_dims(B);
        for (const auto& b : vp_.blocks) Vit::infer(out, out, b, dims, scr);
        LN::forward(out, {}, out, vp_.norm, vis().layer_norm_eps);
    }

    // out [B, C] = token 0 after the text layers, for ids[:, :len] (host) and enc [B, Tv, Cv].
    void text_infer(TensorView<T, D> out, In<std::int32_t, Cpu> ids, std::int64_t len, In<T, D> enc, WS& scr) const {
        const std::int64_t B = ids.size(0), L = ids.size(1);
        std::vector<std::int32_t> head(std::size_t(B * len));
        for (std::int64_t b = 0; b < B; ++b) std::copy_n(ids.data() + b * L, len, head.data() + b * len);
        const TensorView<const std::int32_t, Cpu> host(head.data(), Shape{B, len});
        nn::Scope<D> scope(scr);
        const auto ids_dev = scr.template alloc<std::int32_t>(Shape{B, len});
        const auto zeros = scr.template alloc<std::int32_t>(Shape{B});
        const auto x = scr.template alloc<T>(Shape{B, len, txt().width});
        nn::copy_from_host<std::int32_t, D>(ids_dev, host);
        const std::vector<std::int32_t> zero(std::size_t(B), 0);
        nn::copy_from_host<std::int32_t, D>(zeros, TensorView<const std::int32_t, Cpu>(zero.data(), Shape{B}));
        Emb::forward(x, {}, ids_dev.cview(), tp_.embeddings, {B, len, txt().width, txt().layer_norm_eps}, host);
        const auto dims = bert_dims(B, len);
        for (const auto& l : tp_.layers) Bert::infer(x, x, enc, l, dims, scr);
        ops::select_token_forward(out, x.cview(), zeros.cview());
    }

    void head_infer(TensorView<T, D> out /*B*/, In<T, D> feat /*B,C*/, bool normalize, WS& scr) const {
        const std::int64_t B = feat.size(0);
        nn::Scope<D> scope(scr);
        Head::infer(out.reshape(Shape{B, 1}), feat, hp_, {B, cfg_.head_widths()}, scr);
        if (normalize) {
            // (r − mean) / std in T, as the reference computes it in float32 (the division becomes a
            // multiplication by 1/std here: at most one rounding apart).
            const auto shift = scr.template alloc<T>(Shape{B});
            ops::fill(shift, -cfg_.reward_mean);
            ops::add_inplace(out, shift.cview());
            ops::scale_inplace(out, 1.0 / cfg_.reward_std);
        }
    }

    void plan_scratch(WS& scr, std::int64_t B, std::int64_t L) const {
        nn::Scope<D> scope(scr);
        scr.template alloc<T>(Shape{B, vis().tokens(), vis().width});
        scr.template alloc<T>(Shape{B, txt().width});
        {
            nn::Scope<D> inner(scr);
            scr.template alloc<T>(Shape{B, vis().patches(), vis().patch_dim()});
            scr.template alloc<T>(Shape{B, vis().patches(), vis().width});
        }
        for (std::int64_t l = 0; l < vis().layers; ++l) Vit::plan_infer(scr, vit_dims(B));
        {
            nn::Scope<D> inner(scr);
            scr.template alloc<std::int32_t>(Shape{B, L});
            scr.template alloc<std::int32_t>(Shape{B});
            scr.template alloc<T>(Shape{B, L, txt().width});
            for (std::int64_t l = 0; l < txt().layers; ++l) Bert::plan_infer(scr, bert_dims(B, L));
        }
        {
            nn::Scope<D> inner(scr);
            Head::plan_infer(scr, {B, cfg_.head_widths()});
            scr.template alloc<T>(Shape{B});
        }
    }

    // ---- the parameter layout (ImageReward.pt's state-dict order and names) -------------------------
    std::size_t add(const std::string& name, Shape shape) { return store_.add(name, shape); }
    void layout() {
        const std::int64_t Cv = vis().width, C = txt().width, p = vis().patch_size;
        const std::string v = "blip.visual_encoder.", t = "blip.text_encoder.";
        add(v + "cls_token", Shape{1, 1, Cv});
        add(v + "pos_embed", Shape{1, vis().tokens(), Cv});
        add(v + "patch_embed.proj.weight", Shape{Cv, 3, p, p});
        add(v + "patch_embed.proj.bias", Shape{Cv});
        auto linear = [&](const std::string& n, std::int64_t out, std::int64_t in) {
            add(n + ".weight", Shape{out, in});
            add(n + ".bias", Shape{out});
        };
        auto norm = [&](const std::string& n, std::int64_t w) {
            add(n + ".weight", Shape{w});
            add(n + ".bias", Shape{w});
        };
        for (std::int64_t l = 0; l < vis().layers; ++l) {
            const std::string b = v + "blocks." + std::to_string(l) + ".";
            norm(b + "norm1", Cv);
            linear(b + "attn.qkv", 3 * Cv, Cv);
            linear(b + "attn.proj", Cv, Cv);
            norm(b + "norm2", Cv);
            linear(b + "mlp.fc1", vis().mlp_width, Cv);
            linear(b + "mlp.fc2", Cv, vis().mlp_width);
        }
        norm(v + "norm", Cv);
        add(t + "embeddings.word_embeddings.weight", Shape{txt().vocab_size, C});
        add(t + "embeddings.position_embeddings.weight", Shape{txt().max_positions, C});
        norm(t + "embeddings.LayerNorm", C);
        for (std::int64_t l = 0; l < txt().layers; ++l) {
            const std::string b = t + "encoder.layer." + std::to_string(l) + ".";
            linear(b + "attention.self.query", C, C);
            linear(b + "attention.self.key", C, C);
            linear(b + "attention.self.value", C, C);
            linear(b + "attention.output.dense", C, C);
            norm(b + "attention.output.LayerNorm", C);
            linear(b + "crossattention.self.query", C, C);
            linear(b + "crossattention.self.key", C, Cv);
            linear(b + "crossattention.self.value", C, Cv);
            linear(b + "crossattention.output.dense", C, C);
            norm(b + "crossattention.output.LayerNorm", C);
            linear(b + "intermediate.dense", txt().mlp_width, C);
            linear(b + "output.dense", C, txt().mlp_width);
            norm(b + "output.LayerNorm", C);
        }
        const auto w = cfg_.head_widths();
        // nn.Sequential indices of the Linears: 0, 2, 4 (each followed by a Dropout), then 6, 7.
        for (std::size_t i = 0; i + 1 < w.size(); ++i) {
            const std::size_t k = i < 3 ? 2 * i : i + 3;
            linear("mlp.layers." + std::to_string(k), w[i + 1], w[i]);
        }
    }

    void bind() {
        const std::int64_t Cv = vis().width;
        const std::string v = "blip.visual_encoder.", t = "blip.text_encoder.";
        auto get = [&](const std::string& n) { return store_.value(n); };
        auto lin = [&](const std::string& n) { return typename Lin::Params{get(n + ".weight"), get(n + ".bias")}; };
        auto norm = [&](const std::string& n) { return typename LN::Params{get(n + ".weight"), get(n + ".bias")}; };
        vp_.cls = get(v + "cls_token").reshape(Shape{Cv});
        vp_.pos = get(v + "pos_embed").reshape(Shape{vis().tokens(), Cv});
        vp_.patch = {get(v + "patch_embed.proj.weight").reshape(Shape{Cv, vis().patch_dim()}),
                     get(v + "patch_embed.proj.bias")};
        vp_.blocks.clear();
        for (std::int64_t l = 0; l < vis().layers; ++l) {
            const std::string b = v + "blocks." + std::to_string(l) + ".";
            typename Vit::Params p;
            p.ln1 = norm(b + "norm1");
            const auto qkv_w = get(b + "attn.qkv.weight"), qkv_b = get(b + "attn.qkv.bias");
            p.attn.q = {qkv_w.slice(0, Cv), qkv_b.slice(0, Cv)};
            p.attn.k = {qkv_w.slice(Cv, 2 * Cv), qkv_b.slice(Cv, 2 * Cv)};
            p.attn.v = {qkv_w.slice(2 * Cv, 3 * Cv), qkv_b.slice(2 * Cv, 3 * Cv)};
            p.attn.out = lin(b + "attn.proj");
            p.ln2 = norm(b + "norm2");
            p.mlp = {lin(b + "mlp.fc1"), lin(b + "mlp.fc2")};
            vp_.blocks.push_back(p);
        }
        vp_.norm = norm(v + "norm");
        tp_.embeddings = {get(t + "embeddings.word_embeddings.weight"), get(t + "embeddings.position_embeddings.weight"),
                          norm(t + "embeddings.LayerNorm")};
        tp_.layers.clear();
        for (std::int64_t l = 0; l < txt().layers; ++l) {
            const std::string b = t + "encoder.layer." + std::to_string(l) + ".";
            typename Bert::Params p;
            p.attn = {lin(b + "attention.self.query"), lin(b + "attention.self.key"), lin(b + "attention.self.value"),
                      lin(b + "attention.output.dense")};
            p.ln1 = norm(b + "attention.output.LayerNorm");
            p.cross = {lin(b + "crossattention.self.query"), lin(b + "crossattention.self.key"),
                       lin(b + "crossattention.self.value"), lin(b + "crossattention.output.dense")};
            p.ln2 = norm(b + "crossattention.output.LayerNorm");
            p.mlp = {lin(b + "intermediate.dense"), lin(b + "output.dense")};
            p.ln3 = norm(b + "output.LayerNorm");
            tp_.layers.push_back(p);
        }
        hp_.layers.clear();
        const auto w = cfg_.head_widths();
        for (std::size_t i = 0; i + 1 < w.size(); ++i) {
            const std::size_t k = i < 3 ? 2 * i : i + 3;
            hp_.layers.push_back(lin("mlp.layers." + std::to_string(k)));
        }
    }

    ImageRewardConfig cfg_;
    ImageRewardOptions opt_;
    ParamStore<T, D> store_;
    VisionParams vp_;
    TextParams tp_;
    typename Head::Params hp_;
    Arena<D> scratch_;
};

}  // namespace pickscore::model
