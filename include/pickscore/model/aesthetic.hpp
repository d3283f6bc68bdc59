// pickscore/model/aesthetic.hpp — the LAION aesthetic predictor ("improved aesthetic predictor",
// sac+logos+ava1-l14-linearMSE): OpenAI's CLIP ViT-L/14 image embedding, L2-normalised, through a
// linear MLP 768 → 1024 → 128 → 64 → 16 → 1 (no activations: the reference's ReLUs are commented out,
// its dropouts are identities at inference), giving a score of roughly 1 to 10.
//
//   AestheticModel<float> m(AestheticConfig::aesthetic(), {.batch = 8});
//   io::load_aesthetic_parameters(m.parameters(), clip, head);      // io/scorer_checkpoints.hpp
//   m.scores(out /*N*/, pixels /*N,3,224,224*/);
//
// The image tower is CLIP's (model/vision.hpp: patches without bias, class token, pre-LN,
// post-LN on the class token, visual projection without bias) with quick GELU, as in OpenAI's
// checkpoints; only the image side of the CLIP model is held. Preprocessing is OpenAI CLIP's
// torchvision pipeline (io::ResizeMode::torchvision). Parameters: the CLIP vision tower in Hugging
// Face names (vision_model.*, visual_projection.weight) and the head in the predictor's own names
// (layers.{0,2,4,6,7}.{weight,bias}: the nn.Sequential indices of its Linears).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/arena.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "../nn/linear_stack.hpp"
#include "../nn/workspace.hpp"
#include "../ops/normalize.hpp"
#include "config.hpp"
#include "params.hpp"
#include "vision.hpp"

namespace pickscore::model {

struct AestheticConfig {
    // The CLIP model whose image tower is used (only `vision`, `embed_dim`, `activation` and
    // `layer_norm_eps` matter).
    ClipConfig clip = ClipConfig::vit_l14();
    std::vector<std::int64_t> head = {1024, 128, 64, 16, 1};  // after the embedding dimension

    std::vector<std::int64_t> head_widths() const {
        std::vector<std::int64_t> w{clip.embed_dim};
        w.insert(w.end(), head.begin(), head.end());
        return w;
    }
    void validate() const {
        clip.validate();
        require(!head.empty() && head.back() == 1, "AestheticConfig: the head must end in width 1");
        for (std::int64_t w : head) require(w >= 1, "AestheticConfig: head width ", w, " is not positive");
    }
    // The vision tower's parameters plus the head's.
    std::int64_t num_parameters() const {
        std::int64_t n = clip.vision_parameters();
        const auto w = head_widths();
        for (std::size_t i = 0; i + 1 < w.size(); ++i) n += w[i] * w[i + 1] + w[i + 1];
        return n;
    }
    static AestheticConfig aesthetic() { return AestheticConfig{}; }
};

struct AestheticOptions {
    std::int64_t batch = 8;  // images per model call
};

template <class T, class D = Cpu>
class AestheticModel {
public:
    using Vision = VisionTower<T, D>;
    using Blk = nn::Block<T, D>;
    using LN = nn::LayerNorm<T, D>;
    using Lin = nn::Linear<T, D>;
    using Head = nn::LinearStack<T, D>;
    using WS = nn::Workspace<D>;

    explicit AestheticModel(const AestheticConfig& config, const AestheticOptions& options = {})
        : cfg_((config.validate(), config)), opt_(options), vision_(cfg_.clip) {
        require(opt_.batch >= 1, "AestheticModel: options.batch must be at least 1, got ", opt_.batch);
        layout();
        store_.allocate();
        bind();
        for (std::size_t i = 0; i < store_.size(); ++i)
            if (store_.name(i).find("norm") != std::string::npos && store_.name(i).ends_with(".weight"))
                ops::fill(store_.value(i), 1.0);
        WS plan;
        {
            nn::Scope<D> s(plan);
            plan.template alloc<T>(Shape{opt_.batch, cfg_.clip.embed_dim});
            plan.template alloc<T>(Shape{opt_.batch, cfg_.clip.embed_dim});
            vision_.plan_infer(plan, opt_.batch);
            Head::plan_infer(plan, {opt_.batch, cfg_.head_widths()});
        }
        scratch_ = Arena<D>(plan.peak());
    }
    AestheticModel(const AestheticModel&) = delete;
    AestheticModel& operator=(const AestheticModel&) = delete;
    AestheticModel(AestheticModel&&) = default;
    AestheticModel& operator=(AestheticModel&&) = default;

    const AestheticConfig& config() const { return cfg_; }
    std::vector<NamedTensor<T, D>> parameters() const { return store_.values(); }
    const ParamStore<T, D>& store() const { return store_; }
    std::int64_t num_parameters() const { return store_.num_parameters(); }
    const typename Vision::Params& vision_params() const { return vp_; }
    const typename Head::Params& head_params() const { return hp_; }

    // Random weights for tests (matrices N(0, 1/√fan_in), the rest N(0, σ), LayerNorm weights 1 + N(0, 0.1)).
    void init_weights(Rng& rng, double sigma = 0.1) {
        for (std::size_t i = 0; i < store_.size(); ++i) {
            const std::string& n = store_.name(i);
            const Shape& s = store_.shape(i);
            Tensor<T, Cpu> host(s);
            double sd = sigma, mean = 0.0;
            if (n.find("norm") != std::string::npos && n.ends_with(".weight")) mean = 1.0;
            else if (s.rank() >= 2 && n.find("position") == std::string::npos) sd = 1.0 / std::sqrt(double(s.numel() / s[0]));
            for (std::int64_t k = 0; k < host.numel(); ++k) host[k] = cast<T>(mean + sd * rng.normal());
            nn::copy_from_host<T, D>(store_.value(i), host);
        }
    }

    // out [N, E]: the L2-normalised image embeddings of pixels [N, 3, S, S] (the predictor's input).
    void embed(TensorView<T, D> out /*N,E*/, In<T, D> pixels /*N,3,S,S*/) {
        const std::int64_t N = check(pixels, "AestheticModel::embed");
        ops::check_shape("AestheticModel::embed", "out", out.shape(), Shape{N, cfg_.clip.embed_dim});
        for (std::int64_t i = 0; i < N; i += opt_.batch) {
            const std::int64_t j = std::min(N, i + opt_.batch);
            WS scr(scratch_);
            nn::Scope<D> s(scr);
            const auto proj = scr.template alloc<T>(Shape{j - i, cfg_.clip.embed_dim});
            vision_.infer(proj, pixels.slice(i, j), vp_, scr);
            ops::l2_normalize_forward(out.slice(i, j), TensorView<acc_t<T>, D>(), proj.cview());
        }
    }

    // out [N]: the aesthetic scores of pixels [N, 3, S, S].
    void scores(TensorView<T, D> out /*N*/, In<T, D> pixels /*N,3,S,S*/) {
        const std::int64_t N = check(pixels, "AestheticModel::scores");
        ops::check_shape("AestheticModel::scores", "out", out.shape(), Shape{N});
        for (std::int64_t i = 0; i < N; i += opt_.batch) {
            const std::int64_t j = std::min(N, i + opt_.batch);
            WS scr(scratch_);
            nn::Scope<D> s(scr);
            const auto proj = scr.template alloc<T>(Shape{j - i, cfg_.clip.embed_dim});
            const auto emb = scr.template alloc<T>(Shape{j - i, cfg_.clip.embed_dim});
            vision_.infer(proj, pixels.slice(i, j), vp_, scr);
            ops::l2_normalize_forward(emb, TensorView<acc_t<T>, D>(), proj.cview());
            Head::infer(out.slice(i, j).reshape(Shape{j - i, 1}), emb.cview(), hp_, {j - i, cfg_.head_widths()}, scr);
        }
    }

    // The head alone on normalised embeddings [N, E] → out [N].
    void head(TensorView<T, D> out /*N*/, In<T, D> embeddings /*N,E*/) {
        ops::check_rank("AestheticModel::head", "embeddings", embeddings.shape(), 2);
        const std::int64_t N = embeddings.size(0);
        ops::check_shape("AestheticModel::head", "embeddings", embeddings.shape(), Shape{N, cfg_.clip.embed_dim});
        ops::check_shape("AestheticModel::head", "out", out.shape(), Shape{N});
        for (std::int64_t i = 0; i < N; i += opt_.batch) {
            const std::int64_t j = std::min(N, i + opt_.batch);
            WS scr(scratch_);
            Head::infer(out.slice(i, j).reshape(Shape{j - i, 1}), embeddings.slice(i, j), hp_, {j - i, cfg_.head_widths()},
                        scr);
        }
    }

private:
    std::int64_t check(const TensorView<const T, D>& pixels, const char* op) const {
        ops::check_rank(op, "pixels", pixels.shape(), 4);
        const std::int64_t N = pixels.size(0), S = cfg_.clip.vision.image_size;
        require<ShapeError>(pixels.shape() == Shape{N, 3, S, S}, op, ": pixels has shape ", pixels.shape(),
                            ", expected [N, 3, ", S, ", ", S, "]");
        return N;
    }

    // HF CLIPVisionModel names, in HF's order, then the head.
    void layout() {
        const VisionConfig& v = cfg_.clip.vision;
        const std::int64_t C = v.width, M = v.mlp_width;
        auto norm = [&](const std::string& n) {
            store_.add(n + ".weight", Shape{C});
            store_.add(n + ".bias", Shape{C});
        };
        store_.add("vision_model.embeddings.class_embedding", Shape{C});
        store_.add("vision_model.embeddings.patch_embedding.weight", Shape{C, 3, v.patch_size, v.patch_size});
        store_.add("vision_model.embeddings.position_embedding.weight", Shape{v.tokens(), C});
        norm("vision_model.pre_layrnorm");
        for (std::int64_t l = 0; l < v.layers; ++l) {
            const std::string b = "vision_model.encoder.layers." + std::to_string(l) + ".";
            for (const char* x : {"k", "v", "q", "out"}) {
                store_.add(b + "self_attn." + x + "_proj.weight", Shape{C, C});
                store_.add(b + "self_attn." + x + "_proj.bias", Shape{C});
            }
            norm(b + "layer_norm1");
            store_.add(b + "mlp.fc1.weight", Shape{M, C});
            store_.add(b + "mlp.fc1.bias", Shape{M});
            store_.add(b + "mlp.fc2.weight", Shape{C, M});
            store_.add(b + "mlp.fc2.bias", Shape{C});
            norm(b + "layer_norm2");
        }
        norm("vision_model.post_layernorm");
        store_.add("visual_projection.weight", Shape{cfg_.clip.embed_dim, C});
        const auto w = cfg_.head_widths();
        for (std::size_t i = 0; i + 1 < w.size(); ++i) {
            const std::string n = "layers." + std::to_string(head_index(i));
            store_.add(n + ".weight", Shape{w[i + 1], w[i]});
            store_.add(n + ".bias", Shape{w[i + 1]});
        }
    }
    // nn.Sequential indices of the head's Linears: 0, 2, 4 (each followed by a Dropout), then 6, 7.
    static std::size_t head_index(std::size_t i) { return i < 3 ? 2 * i : i + 3; }

    void bind() {
        auto get = [&](const std::string& n) { return store_.value(n); };
        auto lin = [&](const std::string& n) { return typename Lin::Params{get(n + ".weight"), get(n + ".bias")}; };
        auto norm = [&](const std::string& n) { return typename LN::Params{get(n + ".weight"), get(n + ".bias")}; };
        vp_.class_embedding = get("vision_model.embeddings.class_embedding");
        vp_.patch_embedding = get("vision_model.embeddings.patch_embedding.weight");
        vp_.position_embedding = get("vision_model.embeddings.position_embedding.weight");
        vp_.pre_ln = norm("vision_model.pre_layrnorm");
        vp_.blocks.clear();
        for (std::int64_t l = 0; l < cfg_.clip.vision.layers; ++l) {
            const std::string b = "vision_model.encoder.layers." + std::to_string(l) + ".";
            typename Blk::Params p;
            p.ln1 = norm(b + "layer_norm1");
            p.attn = {lin(b + "self_attn.q_proj"), lin(b + "self_attn.k_proj"), lin(b + "self_attn.v_proj"),
                      lin(b + "self_attn.out_proj")};
            p.ln2 = norm(b + "layer_norm2");
            p.mlp = {lin(b + "mlp.fc1"), lin(b + "mlp.fc2")};
            vp_.blocks.push_back(p);
        }
        vp_.post_ln = norm("vision_model.post_layernorm");
        vp_.projection = get("visual_projection.weight");
        hp_.layers.clear();
        const auto w = cfg_.head_widths();
        for (std::size_t i = 0; i + 1 < w.size(); ++i) hp_.layers.push_back(lin("layers." + std::to_string(head_index(i))));
    }

    AestheticConfig cfg_;
    AestheticOptions opt_;
    Vision vision_;
    ParamStore<T, D> store_;
    typename Vision::Params vp_;
    typename Head::Params hp_;
    Arena<D> scratch_;
};

}  // namespace pickscore::model
