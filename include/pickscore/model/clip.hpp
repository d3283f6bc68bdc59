// pickscore/model/clip.hpp — the CLIP model: both towers, the L2-normalised embeddings, the
// learned logit_scale, and PickScore's preference loss with the gradient of every parameter.
//
//   ClipModel<float> model(ClipConfig::vit_h14(), {.batch = 16});
//   model.init_weights(rng);                         // or load a checkpoint into model.parameters()
//   model.encode_images(img /*N,E*/, pixels /*N,3,224,224*/);     // inference: nothing saved
//   model.encode_text(txt /*N,E*/, ids /*N,77 int32, host*/);      // stops at the last end-of-text
//   model.zero_grad();
//   double loss = model.loss_and_grad(ids /*N,77*/, pixels /*N,2,3,224,224*/, labels /*N,2*/, weights /*N*/);
//   ... an optimizer step over model.flat_parameters() / model.flat_gradients() ...
//
// Parameters: one ParamStore (flat buffer, 64-byte aligned tensors) in Hugging Face `CLIPModel`
// names and shapes, in the order of HF's `named_parameters()`: logit_scale, the text model
// (embeddings, layers with k, v, q, out projections, layer_norm1, fc1, fc2, layer_norm2, final
// LayerNorm), the vision model (class, patch and position embeddings, pre_layrnorm, layers,
// post_layernorm), visual_projection, text_projection. logit_scale has shape [1] here ([] in HF).
// Gradients: a second buffer with the same layout, allocated (zeroed) on first use, so an
// inference-only model never pays for it. Parameter gradients accumulate across calls: gradient
// accumulation over micro-batches is calling loss_and_grad again; zero_grad() clears them.
//
// Memory: plan_memory(config, options) sizes two arenas up front — activations (what a training
// step keeps from forward to backward) and scratch (transient buffers, stack-like, peak over
// training and inference) — and the model allocates exactly those once. With options.batch = N a
// training step takes up to N prompts and 2N images; inference calls of any size run in chunks
// of 2N inputs. set_recompute(true) keeps only each block's input and recomputes the block in
// backward (re-planning the arenas).
//
// Element types: f32 (the reference precision) and bf16 (on the CPU a reference path: matrix
// products accumulate in f32, LayerNorm statistics, the loss, its probabilities, labels and
// weights are f32); f64 for gradient checks. Nothing here reads device memory on the host: the
// host-side inputs (token ids) are uploaded, and only the loss comes back as a double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/arena.hpp"
#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"
#include "../nn/workspace.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/loss.hpp"
#include "../ops/normalize.hpp"
#include "config.hpp"
#include "hooks.hpp"
#include "params.hpp"
#include "text.hpp"
#include "vision.hpp"

namespace pickscore::model {

struct ClipOptions {
    // Prompts per training step (each with 2 images); inference processes 2·batch inputs at a time.
    std::int64_t batch = 1;
    // Plan and allocate the activation arena for training. The gradient buffer is allocated
    // separately, on first use (zero_grad, gradients, loss_and_grad).
    bool training = true;
    // Per-block activation recomputation: keep only each block's input.
    bool recompute = false;
};

// The bytes of the two arenas a model allocates once.
struct MemoryPlan {
    ArenaPlan activations;  // kept from a training forward to its backward (empty when not training)
    ArenaPlan scratch;      // transient buffers: the peak over training and inference
};

// How init_weights draws: normal (HF's _init_weights), or uniform with the same standard deviation
// (U(-√3σ, √3σ): the same mean and variance, an order of magnitude cheaper for billion-parameter
// test models).
enum class InitDistribution { normal, uniform };

template <class T, class D = Cpu>
class ClipModel {
public:
    using Acc = acc_t<T>;
    using Vision = VisionTower<T, D>;
    using Text = TextTower<T, D>;
    using Keep = typename nn::Block<T, D>::Keep;
    using WS = nn::Workspace<D>;

    // What the last training forward computed (views into the activation arena, valid until the
    // next training call): the L2-normalised embeddings and, after loss/loss_and_grad, the
    // preference probabilities softmax(s_0, s_1) of each prompt's pair.
    struct Outputs {
        TensorView<T, D> text;      // [N, E]
        TensorView<T, D> images;    // [N, 2, E]
        TensorView<Acc, D> probs;   // [N, 2]
    };

    explicit ClipModel(const ClipConfig& config, const ClipOptions& options = {})
        : cfg_((config.validate(), config)), opt_(options), vision_(cfg_), text_(cfg_) {
        require(opt_.batch >= 1, "ClipModel: options.batch must be at least 1, got ", opt_.batch);
        layout();
        store_.allocate();
        bind_values();
        plan_ = plan_memory(cfg_, opt_);
        allocate_arenas();
        init_constants();
    }
    ClipModel(const ClipModel&) = delete;
    ClipModel& operator=(const ClipModel&) = delete;
    // Moving keeps every view valid: the buffers live on the heap and move with their owners.
    ClipModel(ClipModel&&) = default;
    ClipModel& operator=(ClipModel&&) = default;

    const ClipConfig& config() const { return cfg_; }
    const ClipOptions& options() const { return opt_; }

    // ---- parameters ---------------------------------------------------------------------------------
    std::vector<NamedTensor<T, D>> parameters() const { return store_.values(); }
    std::vector<NamedTensor<T, D>> gradients() {
        ensure_gradients();
        return store_.gradients();
    }
    TensorView<T, D> flat_parameters() const { return store_.flat_values(); }
    TensorView<T, D> flat_gradients() {
        ensure_gradients();
        return store_.flat_gradients();
    }
    const ParamStore<T, D>& store() const { return store_; }
    std::int64_t num_parameters() const { return store_.num_parameters(); }
    TensorView<T, D> logit_scale() const { return logit_scale_; }  // [1]
    const typename Vision::Params& vision_params() const { return vp_; }
    const typename Text::Params& text_params() const { return tp_; }

    // A random initialisation after HF's CLIPPreTrainedModel._init_weights (initializer_factor 1,
    // initializer_range 0.02): token/position/patch embeddings N(0, 0.02); class embedding
    // N(0, C^-½); q, k, v and fc2 weights N(0, C^-½ (2·layers)^-½); out_proj N(0, C^-½); fc1
    // N(0, (2C)^-½); projections N(0, C^-½); biases 0; LayerNorms weight 1, bias 0; logit_scale
    // config.logit_scale_init. Draws are split into fixed chunks with their own seeds (from one
    // draw of rng), so the result does not depend on the thread count.
    void init_weights(Rng& rng, InitDistribution dist = InitDistribution::normal) {
        const std::uint64_t base = rng.next_u64();
        for (std::size_t i = 0; i < store_.size(); ++i) {
            const InitRule& r = init_[i];
            const auto v = store_.value(i);
            if (r.normal_std == 0.0) {
                ops::fill(v, r.value);
                continue;
            }
            if constexpr (is_cpu<D>) {
                draw(v, base, i, r.normal_std, dist);
            } else {
                Tensor<T, Cpu> host(v.shape());
                draw(host.view(), base, i, r.normal_std, dist);
                nn::copy_from_host<T, D>(v, host);
            }
        }
    }

    void zero_grad() {
        ensure_gradients();
        ops::fill(store_.flat_gradients(), 0.0);
    }

    // ---- memory --------------------------------------------------------------------------------------
    static MemoryPlan plan_memory(const ClipConfig& config, const ClipOptions& options) {
        config.validate();
        const Vision vision(config);
        const Text text(config);
        const std::int64_t N = options.batch, E = config.embed_dim, L = config.text.context_length;
        WS act, scr;  // planners
        if (options.training) {
            const Keep keep = options.recompute ? Keep::input : Keep::all;
            alloc_step(act, vision, text, config, N, L, keep);
            {
                nn::Scope<D> s(scr);
                scr.template alloc<T>(Shape{N, E});
                text.plan_forward(scr, N, L, keep);
            }
            {
                nn::Scope<D> s(scr);
                scr.template alloc<T>(Shape{2 * N, E});
                vision.plan_forward(scr, 2 * N, keep);
            }
            {
                nn::Scope<D> s(scr);
                alloc_backward(scr, N, E);
                vision.plan_backward(scr, 2 * N, keep);
                text.plan_backward(scr, N, L, keep);
            }
        }
        {
            nn::Scope<D> s(scr);
            scr.template alloc<T>(Shape{2 * N, E});
            vision.plan_infer(scr, 2 * N);
        }
        {
            nn::Scope<D> s(scr);
            scr.template alloc<T>(Shape{2 * N, E});
            text.plan_infer(scr, 2 * N);
        }
        MemoryPlan plan;
        if (act.peak()) plan.activations.add_bytes(act.peak());
        plan.scratch.add_bytes(scr.peak());
        return plan;
    }
    const MemoryPlan& memory_plan() const { return plan_; }
    const Arena<D>& activation_arena() const { return act_arena_; }
    const Arena<D>& scratch_arena() const { return scratch_arena_; }

    bool recompute() const { return opt_.recompute; }
    // Switches per-block recomputation; re-plans and re-allocates the arenas. Gradients and
    // parameters are kept; the state of the last training forward is dropped.
    void set_recompute(bool on) {
        if (on == opt_.recompute) return;
        opt_.recompute = on;
        plan_ = plan_memory(cfg_, opt_);
        step_ = Step{};
        act_arena_ = Arena<D>();
        scratch_arena_ = Arena<D>();
        allocate_arenas();
    }

    // ---- inference -----------------------------------------------------------------------------------
    // out [N, E] = the (L2-normalised unless normalize == false) image embeddings of pixels [N,3,S,S].
    void encode_images(TensorView<T, D> out /*N,E*/, In<T, D> pixels /*N,3,S,S*/, bool normalize = true) {
        constexpr const char* op = "ClipModel::encode_images";
        ops::check_rank(op, "pixels", pixels.shape(), 4);
        const std::int64_t N = pixels.size(0);
        ops::check_shape(op, "out", out.shape(), Shape{N, cfg_.embed_dim});
        for (std::int64_t i = 0; i < N; i += chunk()) {
            const std::int64_t j = std::min(N, i + chunk());
            WS scr(scratch_arena_);
            nn::Scope<D> s(scr);
            const auto proj = scr.template alloc<T>(Shape{j - i, cfg_.embed_dim});
            vision_.infer(normalize ? proj : out.slice(i, j), pixels.slice(i, j), vp_, scr);
            if (normalize) ops::l2_normalize_forward(out.slice(i, j), TensorView<Acc, D>(), proj.cview());
        }
    }

    // out [N, E] = the (L2-normalised unless normalize == false) text embeddings of ids [N, L]
    // (host memory, L <= context_length, each row holding an end-of-text token).
    void encode_text(TensorView<T, D> out /*N,E*/, In<std::int32_t, Cpu> ids /*N,L*/, bool normalize = true) {
        constexpr const char* op = "ClipModel::encode_text";
        ops::check_rank(op, "ids", ids.shape(), 2);
        const std::int64_t N = ids.size(0);
        ops::check_shape(op, "out", out.shape(), Shape{N, cfg_.embed_dim});
        for (std::int64_t i = 0; i < N; i += chunk()) {
            const std::int64_t j = std::min(N, i + chunk());
            WS scr(scratch_arena_);
            nn::Scope<D> s(scr);
            const auto proj = scr.template alloc<T>(Shape{j - i, cfg_.embed_dim});
            text_.infer(normalize ? proj : out.slice(i, j), ids.slice(i, j), tp_, scr);
            if (normalize) ops::l2_normalize_forward(out.slice(i, j), TensorView<Acc, D>(), proj.cview());
        }
    }

    // ---- training ------------------------------------------------------------------------------------
    // The training forward of both towers for N <= batch prompts, ids [N, L] (host, L <=
    // context_length, all L positions run), and their image pairs pixels [N, 2, 3, S, S], saving
    // what backward reads. The text tower runs once per prompt, the vision tower on all 2N images.
    void forward_train(In<std::int32_t, Cpu> ids /*N,L*/, In<T, D> pixels /*N,2,3,S,S*/) {
        constexpr const char* op = "ClipModel::forward_train";
        require(opt_.training, op, ": the model was built with options.training = false");
        ops::check_rank(op, "ids", ids.shape(), 2);
        const std::int64_t N = ids.size(0), L = ids.size(1), S = cfg_.vision.image_size, E = cfg_.embed_dim;
        require<ShapeError>(N >= 1 && N <= opt_.batch, op, ": ids has shape ", ids.shape(), ": ", N,
                            " prompts, the model was planned for 1 to ", opt_.batch);
        require<ShapeError>(L >= 1 && L <= cfg_.text.context_length, op, ": ids has shape ", ids.shape(),
                            ", expected 1 to ", cfg_.text.context_length, " positions");
        ops::check_shape(op, "pixels", pixels.shape(), Shape{N, 2, 3, S, S});
        step_ = Step{};
        act_arena_.reset();
        WS act(act_arena_), scr(scratch_arena_);
        step_ = alloc_step(act, vision_, text_, cfg_, N, L, keep());
        {
            nn::Scope<D> s(scr);
            const auto proj = scr.template alloc<T>(Shape{N, E});
            text_.forward(proj, step_.text, ids, tp_, scr);
            ops::l2_normalize_forward(step_.text_emb, step_.text_norm, proj.cview());
        }
        {
            nn::Scope<D> s(scr);
            const auto proj = scr.template alloc<T>(Shape{2 * N, E});
            vision_.forward(proj, step_.vision, pixels.reshape(Shape{2 * N, 3, S, S}), vp_, scr);
            ops::l2_normalize_forward(step_.image_emb, step_.image_norm, proj.cview());
        }
        step_.n = N;
    }

    // The PickScore loss Σ_i w_i KL(y_i || softmax(s_i0, s_i1)) of a batch (forward only). labels
    // [N, 2] and weights [N] (already normalised over the whole batch: ops::preference_weights).
    double loss(In<std::int32_t, Cpu> ids /*N,L*/, In<T, D> pixels /*N,2,3,S,S*/, In<Acc, D> labels /*N,2*/,
                In<Acc, D> weights /*N*/) {
        forward_train(ids, pixels);
        const std::int64_t N = step_.n;
        const double l = ops::pickscore_loss_forward<T>(step_.probs, step_.text_emb,
                                                        step_.image_emb.reshape(Shape{N, 2, cfg_.embed_dim}),
                                                        labels, weights, logit_scale_);
        step_.has_probs = true;
        return l;
    }

    // The loss, and its gradient with respect to every parameter (logit_scale included) added to
    // the gradient buffer. `ready` (optional) hears, while the backward runs, of every range of the
    // flat gradient buffer whose values are final (model/hooks.hpp): the ranges tile the buffer,
    // each reported once, in the order logit_scale; the vision tower's head, blocks from the last
    // down, embeddings; the text tower's the same. On a device the values are final in stream
    // order: work queued after the report sees them.
    double loss_and_grad(In<std::int32_t, Cpu> ids /*N,L*/, In<T, D> pixels /*N,2,3,S,S*/,
                         In<Acc, D> labels /*N,2*/, In<Acc, D> weights /*N*/, const GradientReady& ready = {}) {
        ensure_gradients();
        const double l = loss(ids, pixels, labels, weights);
        const std::int64_t N = step_.n, E = cfg_.embed_dim;
        WS scr(scratch_arena_);
        nn::Scope<D> s(scr);
        const Grad g = alloc_backward(scr, N, E);
        ops::pickscore_loss_backward<T>(g.text_emb, g.image_emb.reshape(Shape{N, 2, E}), dlogit_scale_,
                                        step_.probs, step_.text_emb, step_.image_emb.reshape(Shape{N, 2, E}),
                                        labels, weights, logit_scale_);
        if (ready) report(ready, {idx_.logit_scale});
        ops::l2_normalize_backward(g.text_proj, g.text_emb.cview(), step_.text_emb, step_.text_norm);
        ops::l2_normalize_backward(g.image_proj, g.image_emb.cview(), step_.image_emb, step_.image_norm);
        TowerHook vision_done, text_done;
        if (ready) {
            vision_done = [&](std::int64_t part) {
                if (part == tower_head) report(ready, {idx_.post_ln.weight, idx_.post_ln.bias, idx_.visual_projection});
                else if (part == tower_embeddings)
                    report(ready, {idx_.cls, idx_.patch, idx_.vision_pos, idx_.pre_ln.weight, idx_.pre_ln.bias});
                else report(ready, block_tensors(idx_.vision_blocks.at(std::size_t(part))));
            };
            text_done = [&](std::int64_t part) {
                if (part == tower_head) report(ready, {idx_.final_ln.weight, idx_.final_ln.bias, idx_.text_projection});
                else if (part == tower_embeddings) report(ready, {idx_.token, idx_.text_pos});
                else report(ready, block_tensors(idx_.text_blocks.at(std::size_t(part))));
            };
        }
        vision_.backward(vg_, g.image_proj, step_.vision, vp_, scr, vision_done);
        text_.backward(tg_, g.text_proj, step_.text, tp_, scr, text_done);
        return l;
    }

    Outputs outputs() const {
        require(step_.n > 0, "ClipModel::outputs: no training forward has run since the last re-plan");
        Outputs o;
        o.text = step_.text_emb;
        o.images = step_.image_emb.reshape(Shape{step_.n, 2, cfg_.embed_dim});
        if (step_.has_probs) o.probs = step_.probs;
        return o;
    }

private:
    // The state of a training step, in the activation arena.
    struct Step {
        std::int64_t n = 0;
        bool has_probs = false;
        typename Text::Saved text;
        typename Vision::Saved vision;
        TensorView<T, D> text_emb;      // [N, E]
        TensorView<Acc, D> text_norm;   // [N]
        TensorView<T, D> image_emb;     // [2N, E]
        TensorView<Acc, D> image_norm;  // [2N]
        TensorView<Acc, D> probs;       // [N, 2]
    };
    static Step alloc_step(WS& act, const Vision& vision, const Text& text, const ClipConfig& cfg, std::int64_t N,
                           std::int64_t L, Keep keep) {
        const std::int64_t E = cfg.embed_dim;
        Step s;
        s.text = text.alloc_saved(act, N, L, keep);
        s.vision = vision.alloc_saved(act, 2 * N, keep);
        s.text_emb = act.template alloc<T>(Shape{N, E});
        s.text_norm = act.template alloc<Acc>(Shape{N});
        s.image_emb = act.template alloc<T>(Shape{2 * N, E});
        s.image_norm = act.template alloc<Acc>(Shape{2 * N});
        s.probs = act.template alloc<Acc>(Shape{N, 2});
        return s;
    }
    // Gradients of the embeddings before and after normalisation (scratch, during backward).
    struct Grad {
        TensorView<T, D> text_emb, image_emb, text_proj, image_proj;
    };
    static Grad alloc_backward(WS& scr, std::int64_t N, std::int64_t E) {
        Grad g;
        g.text_emb = scr.template alloc<T>(Shape{N, E});
        g.image_emb = scr.template alloc<T>(Shape{2 * N, E});
        g.text_proj = scr.template alloc<T>(Shape{N, E});
        g.image_proj = scr.template alloc<T>(Shape{2 * N, E});
        return g;
    }

    std::int64_t chunk() const { return 2 * opt_.batch; }
    Keep keep() const { return opt_.recompute ? Keep::input : Keep::all; }

    void allocate_arenas() {
        if (plan_.activations.bytes()) act_arena_ = Arena<D>(plan_.activations.bytes());
        scratch_arena_ = Arena<D>(plan_.scratch.bytes());
    }

    // ---- the parameter layout ---------------------------------------------------------------------
    // normal_std > 0: drawn N(0, normal_std); otherwise the constant `value`.
    struct InitRule {
        double normal_std = 0.0;
        double value = 0.0;
    };
    struct LinearIdx {
        std::size_t weight = 0, bias = npos;
    };
    struct NormIdx {
        std::size_t weight = 0, bias = 0;
    };
    struct BlockIdx {
        LinearIdx k, v, q, out, fc1, fc2;
        NormIdx ln1, ln2;
    };
    static constexpr std::size_t npos = std::size_t(-1);

    std::size_t add(const std::string& name, Shape shape, InitRule rule) {
        init_.push_back(rule);
        return store_.add(name, shape);
    }
    LinearIdx add_linear(const std::string& name, std::int64_t out, std::int64_t in, double std, bool bias) {
        LinearIdx l;
        l.weight = add(name + ".weight", Shape{out, in}, {std, 0.0});
        if (bias) l.bias = add(name + ".bias", Shape{out}, {0.0, 0.0});
        return l;
    }
    NormIdx add_norm(const std::string& name, std::int64_t C) {
        NormIdx n;
        n.weight = add(name + ".weight", Shape{C}, {0.0, 1.0});
        n.bias = add(name + ".bias", Shape{C}, {0.0, 0.0});
        return n;
    }
    BlockIdx add_block(const std::string& prefix, std::int64_t C, std::int64_t M, std::int64_t layers) {
        const double in_std = std::pow(double(C), -0.5) * std::pow(2.0 * double(layers), -0.5);
        const double out_std = std::pow(double(C), -0.5);
        const double fc_std = std::pow(2.0 * double(C), -0.5);
        BlockIdx b;
        b.k = add_linear(prefix + ".self_attn.k_proj", C, C, in_std, true);
        b.v = add_linear(prefix + ".self_attn.v_proj", C, C, in_std, true);
        b.q = add_linear(prefix + ".self_attn.q_proj", C, C, in_std, true);
        b.out = add_linear(prefix + ".self_attn.out_proj", C, C, out_std, true);
        b.ln1 = add_norm(prefix + ".layer_norm1", C);
        b.fc1 = add_linear(prefix + ".mlp.fc1", M, C, fc_std, true);
        b.fc2 = add_linear(prefix + ".mlp.fc2", C, M, in_std, true);
        b.ln2 = add_norm(prefix + ".layer_norm2", C);
        return b;
    }

    // Reports the slots of these tensors as ranges of the flat buffer: adjacent slots merged, the
    // ranges in descending order (the order in which a backward finishes a layout's tensors).
    void report(const GradientReady& ready, std::vector<std::size_t> tensors) const {
        std::sort(tensors.begin(), tensors.end());
        std::int64_t hi = -1, lo = -1;
        for (std::size_t k = tensors.size(); k-- > 0;) {
            const std::size_t i = tensors[k];
            if (lo >= 0 && store_.end(i) == lo) {
                lo = store_.offset(i);
                continue;
            }
            if (lo >= 0) ready(lo, hi);
            lo = store_.offset(i);
            hi = store_.end(i);
        }
        if (lo >= 0) ready(lo, hi);
    }
    static std::vector<std::size_t> block_tensors(const BlockIdx& b) {
        std::vector<std::size_t> v;
        for (const LinearIdx* l : {&b.k, &b.v, &b.q, &b.out, &b.fc1, &b.fc2}) {
            v.push_back(l->weight);
            if (l->bias != npos) v.push_back(l->bias);
        }
        for (const NormIdx* n : {&b.ln1, &b.ln2}) {
            v.push_back(n->weight);
            v.push_back(n->bias);
        }
        return v;
    }

    // HF CLIPModel.named_parameters() order.
    void layout() {
        const VisionConfig& v = cfg_.vision;
        const TextConfig& t = cfg_.text;
        const std::int64_t E = cfg_.embed_dim;
        idx_.logit_scale = add("logit_scale", Shape{1}, {0.0, cfg_.logit_scale_init});
        idx_.token = add("text_model.embeddings.token_embedding.weight", Shape{t.vocab_size, t.width}, {0.02, 0.0});
        idx_.text_pos = add("text_model.embeddings.position_embedding.weight", Shape{t.context_length, t.width},
                            {0.02, 0.0});
        for (std::int64_t l = 0; l < t.layers; ++l)
            idx_.text_blocks.push_back(
                add_block("text_model.encoder.layers." + std::to_string(l), t.width, t.mlp_width, t.layers));
        idx_.final_ln = add_norm("text_model.final_layer_norm", t.width);
        idx_.cls = add("vision_model.embeddings.class_embedding", Shape{v.width},
                       {std::pow(double(v.width), -0.5), 0.0});
        idx_.patch = add("vision_model.embeddings.patch_embedding.weight",
                         Shape{v.width, 3, v.patch_size, v.patch_size}, {0.02, 0.0});
        idx_.vision_pos = add("vision_model.embeddings.position_embedding.weight", Shape{v.tokens(), v.width},
                              {0.02, 0.0});
        idx_.pre_ln = add_norm("vision_model.pre_layrnorm", v.width);
        for (std::int64_t l = 0; l < v.layers; ++l)
            idx_.vision_blocks.push_back(
                add_block("vision_model.encoder.layers." + std::to_string(l), v.width, v.mlp_width, v.layers));
        idx_.post_ln = add_norm("vision_model.post_layernorm", v.width);
        idx_.visual_projection = add("visual_projection.weight", Shape{E, v.width},
                                     {std::pow(double(v.width), -0.5), 0.0});
        idx_.text_projection = add("text_projection.weight", Shape{E, t.width}, {std::pow(double(t.width), -0.5), 0.0});
    }

    // Tower parameter structs whose views come from get(index).
    template <class Get>
    void bind(Get get, typename Vision::Params& vp, typename Text::Params& tp, TensorView<T, D>& logit_scale) const {
        auto lin = [&](const LinearIdx& l) {
            return typename nn::Linear<T, D>::Params{get(l.weight), l.bias == npos ? TensorView<T, D>() : get(l.bias)};
        };
        auto norm = [&](const NormIdx& n) { return typename nn::LayerNorm<T, D>::Params{get(n.weight), get(n.bias)}; };
        auto block = [&](const BlockIdx& b) {
            typename nn::Block<T, D>::Params p;
            p.ln1 = norm(b.ln1);
            p.attn = {lin(b.q), lin(b.k), lin(b.v), lin(b.out)};
            p.ln2 = norm(b.ln2);
            p.mlp = {lin(b.fc1), lin(b.fc2)};
            return p;
        };
        logit_scale = get(idx_.logit_scale);
        tp.token_embedding = get(idx_.token);
        tp.position_embedding = get(idx_.text_pos);
        tp.blocks.clear();
        for (const BlockIdx& b : idx_.text_blocks) tp.blocks.push_back(block(b));
        tp.final_ln = norm(idx_.final_ln);
        tp.projection = get(idx_.text_projection);
        vp.class_embedding = get(idx_.cls);
        vp.patch_embedding = get(idx_.patch);
        vp.position_embedding = get(idx_.vision_pos);
        vp.pre_ln = norm(idx_.pre_ln);
        vp.blocks.clear();
        for (const BlockIdx& b : idx_.vision_blocks) vp.blocks.push_back(block(b));
        vp.post_ln = norm(idx_.post_ln);
        vp.projection = get(idx_.visual_projection);
    }
    void bind_values() {
        bind([&](std::size_t i) { return store_.value(i); }, vp_, tp_, logit_scale_);
    }
    void ensure_gradients() {
        if (store_.has_gradients()) return;
        store_.allocate_gradients();
        bind([&](std::size_t i) { return store_.gradient(i); }, vg_, tg_, dlogit_scale_);
    }
    // Constants (LayerNorm weights 1, biases 0, logit_scale) so a fresh model is well defined.
    void init_constants() {
        for (std::size_t i = 0; i < store_.size(); ++i)
            if (init_[i].normal_std == 0.0 && init_[i].value != 0.0) ops::fill(store_.value(i), init_[i].value);
    }

    // Fills a host view with N(0, σ) or U(-√3σ, √3σ), chunk by chunk, each chunk from its own seed.
    static void draw(TensorView<T, Cpu> v, std::uint64_t base, std::size_t tensor, double sigma,
                     InitDistribution dist) {
        constexpr std::int64_t kChunk = 1 << 16;
        const std::int64_t n = v.numel(), chunks = (n + kChunk - 1) / kChunk;
        parallel_for(chunks, [&](std::int64_t c) {
            Rng rng(base + (std::uint64_t(tensor) << 32) + std::uint64_t(c));
            const std::int64_t end = std::min(n, (c + 1) * kChunk);
            if (dist == InitDistribution::normal) {
                for (std::int64_t i = c * kChunk; i < end; ++i) v[i] = cast<T>(rng.normal(0.0, sigma));
            } else {
                const double a = std::sqrt(3.0) * sigma;
                for (std::int64_t i = c * kChunk; i < end; ++i) v[i] = cast<T>(rng.uniform(-a, a));
            }
        });
    }

    struct Indices {
        std::size_t logit_scale = 0, token = 0, text_pos = 0, cls = 0, patch = 0, vision_pos = 0;
        std::size_t visual_projection = 0, text_projection = 0;
        std::vector<BlockIdx> text_blocks, vision_blocks;
        NormIdx final_ln, pre_ln, post_ln;
    };

    ClipConfig cfg_;
    ClipOptions opt_;
    Vision vision_;
    Text text_;
    ParamStore<T, D> store_;
    std::vector<InitRule> init_;
    Indices idx_;
    typename Vision::Params vp_, vg_;
    typename Text::Params tp_, tg_;
    TensorView<T, D> logit_scale_, dlogit_scale_;
    MemoryPlan plan_;
    Arena<D> act_arena_, scratch_arena_;
    Step step_;
};

}  // namespace pickscore::model
