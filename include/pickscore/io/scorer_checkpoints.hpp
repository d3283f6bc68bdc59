// pickscore/io/scorer_checkpoints.hpp — checkpoints of the other scorers of the Pick-a-Pic paper:
// ImageReward and the LAION aesthetic predictor. Configurations inferred from the tensors, weights
// loaded into the models' named parameters with every problem reported at once.
//
//   auto ir = io::load_imagereward_model<float>("ImageReward.safetensors");   // + med_config.json beside it
//   auto ae = io::load_aesthetic_model<float>("aesthetic.safetensors");       // CLIP ViT-L/14 + head in one file
//   auto ae2 = io::load_aesthetic_model<float>("clip-vit-large-patch14/", "aesthetic_head.safetensors");
//
// ImageReward: the state dict of ImageReward.pt converted to safetensors with its names kept
// (tools/convert_checkpoint.py --preset imagereward): blip.visual_encoder.*, blip.text_encoder.*,
// mlp.layers.*. blip.vision_proj / blip.text_proj (not used for the reward) and position_ids buffers
// are ignored; any other tensor the model does not use is an error. Dimensions come from the
// tensors; what they cannot tell comes from JSON files beside the weights when present:
//   med_config.json        (BLIP's BERT config, as ImageReward ships it) num_attention_heads,
//                          layer_norm_eps, hidden_act (must be "gelu");
//   imagereward_config.json  vision_heads, vision_layer_norm_eps, max_length, reward_mean, reward_std;
// and otherwise: heads = width / 64 (16 for ViT-L, 12 for BERT-base), eps 1e-6 (ViT) and 1e-12
// (BERT), max length 35, the published reward normalisation.
//
// Aesthetic predictor: the CLIP image tower from any CLIP checkpoint io/checkpoint.hpp reads
// (Hugging Face names such as openai/clip-vit-large-patch14, or open_clip / OpenAI names such as
// ViT-L-14.pt converted) — its text tower, logit_scale and OpenAI's integer buffers are ignored,
// a vision-only file works too — and the predictor's head (layers.{0,2,4,6,7}.{weight,bias} as in
// sac+logos+ava1-l14-linearMSE.pth), either in the same file or in its own. The activation is
// always quick GELU: the predictor was trained on OpenAI's ViT-L/14. Vision heads: from config.json
// / open_clip_config.json when the checkpoint has its text tower and such a file, else width / 64.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../model/aesthetic.hpp"
#include "../model/imagereward.hpp"
#include "../model/params.hpp"
#include "checkpoint.hpp"
#include "json.hpp"
#include "safetensors.hpp"

namespace pickscore::io {

namespace detail {

// One parameter and where its value comes from.
struct ParamSource {
    const SafetensorsSet* st = nullptr;
    ClipTensorSource src;
};

// Loads every parameter from its source, after checking all names, shapes and dtypes; `unexpected`
// lists, per checkpoint, the predicate telling which of its tensors may go unused. All problems
// are reported in one FormatError.
template <class T, class D>
void load_parameters(const char* op, const std::vector<model::NamedTensor<T, D>>& params,
                     const std::function<std::optional<ParamSource>(const std::string&)>& source_of,
                     const std::vector<std::pair<const SafetensorsSet*, std::function<bool(std::string_view)>>>& unused_ok) {
    struct Plan {
        const model::NamedTensor<T, D>* param;
        ParamSource from;
    };
    std::vector<Plan> plans;
    std::vector<std::string> problems;
    std::unordered_set<std::string> used;
    for (const auto& p : params) {
        const std::optional<ParamSource> s = source_of(p.name);
        if (!s) {
            problems.push_back("model parameter '" + p.name + "' has no counterpart in the checkpoint");
            continue;
        }
        used.insert(checkpoint_label(*s->st) + "\n" + s->src.name);
        const SafetensorsEntry* e = s->st->find(s->src.name);
        const Shape want = expected_source_shape(s->src, p.view.shape());
        const std::string for_what = s->src.name == p.name ? std::string() : " (for '" + p.name + "')";
        if (!e) {
            problems.push_back("missing tensor '" + s->src.name + "'" + for_what + " in '" + checkpoint_label(*s->st) +
                               "', expected shape " + want.str());
            continue;
        }
        if (e->shape != want) {
            problems.push_back("tensor '" + s->src.name + "' has shape " + e->shape.str() + ", expected " + want.str() +
                               for_what);
            continue;
        }
        if (!e->pick_dtype() || e->dtype == "I32") {
            problems.push_back("tensor '" + s->src.name + "' has dtype " + e->dtype +
                               ", expected a floating-point dtype (F32, F16, BF16, F64)");
            continue;
        }
        plans.push_back({&p, *s});
    }
    for (const auto& [st, ok] : unused_ok)
        for (const std::string& n : st->names())
            if (!used.count(checkpoint_label(*st) + "\n" + n) && !ok(n))
                problems.push_back("unexpected tensor '" + n + "' (" + st->find(n)->shape.str() + ") in '" +
                                   checkpoint_label(*st) + "'");
    if (!problems.empty()) {
        std::string msg;
        for (const std::string& s : problems) msg += "\n  " + s;
        fail<FormatError>(op, ": ", problems.size(), problems.size() == 1 ? " problem:" : " problems:", msg);
    }
    std::string fused_name;
    Tensor<T, Cpu> fused;
    for (const Plan& pl : plans) {
        const TensorView<T, D>& dst = pl.param->view;
        Tensor<T, Cpu> staging;
        TensorView<T, Cpu> host;
        if constexpr (is_cpu<D>) {
            host = dst;
        } else {
            staging = Tensor<T, Cpu>(dst.shape());
            host = staging;
        }
        const ClipTensorSource& src = pl.from.src;
        switch (src.op) {
            case ClipTensorSource::Op::copy: pl.from.st->template read<T>(src.name, host.flat()); break;
            case ClipTensorSource::Op::rows:
                if (fused_name != src.name) {
                    fused = pl.from.st->template load<T>(src.name);
                    fused_name = src.name;
                }
                copy<T>(host, fused.view().slice(src.row_begin, src.row_end));
                break;
            case ClipTensorSource::Op::transpose: {
                const Tensor<T, Cpu> t = pl.from.st->template load<T>(src.name);
                const std::int64_t out = host.size(0), in = host.size(1);
                for (std::int64_t o = 0; o < out; ++o)
                    for (std::int64_t i = 0; i < in; ++i) host[o * in + i] = t[i * out + o];
                break;
            }
        }
        if constexpr (!is_cpu<D>) copy_from_host_sync<T, D>(dst, staging);
    }
}

inline Shape tensor_shape(const SafetensorsSet& st, const std::string& name, const std::string& where, int rank) {
    const SafetensorsEntry* e = st.find(name);
    require<FormatError>(e != nullptr, where, "missing tensor '", name, "'");
    require<FormatError>(e->shape.rank() == rank, where, "tensor '", name, "' has shape ", e->shape, ", expected rank ",
                         rank);
    return e->shape;
}

inline std::int64_t count_indexed(const SafetensorsSet& st, const std::string& prefix, const std::string& suffix) {
    std::int64_t n = 0;
    while (st.find(prefix + std::to_string(n) + suffix)) ++n;
    return n;
}

// The widths of a reward head stored as nn.Sequential Linears "<prefix>layers.K.weight" (K ascending).
inline std::vector<std::int64_t> sequential_linear_widths(const SafetensorsSet& st, const std::string& prefix,
                                                          std::int64_t input, const std::string& where) {
    std::vector<std::pair<int, Shape>> found;
    for (const std::string& n : st.names()) {
        if (!starts_with(n, prefix + "layers.") || !ends_with(n, ".weight")) continue;
        const std::string k = n.substr(prefix.size() + 7, n.size() - prefix.size() - 7 - 7);
        if (k.empty() || !std::all_of(k.begin(), k.end(), [](char c) { return c >= '0' && c <= '9'; })) continue;
        found.emplace_back(std::stoi(k), st.find(n)->shape);
    }
    std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    require<FormatError>(!found.empty(), where, "no reward head found (", prefix, "layers.K.weight)");
    static const int want_index[] = {0, 2, 4, 6, 7};
    require<FormatError>(found.size() <= 5, where, "the reward head has ", found.size(), " Linears, at most 5 expected");
    std::vector<std::int64_t> widths{input};
    for (std::size_t i = 0; i < found.size(); ++i) {
        const auto& [k, s] = found[i];
        require<FormatError>(k == want_index[i], where, "reward head Linear ", i, " is '", prefix, "layers.", k,
                             ".weight', expected index ", want_index[i], " (Linears at 0, 2, 4, 6, 7 of the nn.Sequential)");
        require<FormatError>(s.rank() == 2 && s[1] == widths.back(), where, "'", prefix, "layers.", k,
                             ".weight' has shape ", s, ", expected [*, ", widths.back(), "]");
        widths.push_back(s[0]);
    }
    require<FormatError>(widths.back() == 1, where, "the reward head ends in width ", widths.back(), ", expected 1");
    return widths;
}

}  // namespace detail

// ---- ImageReward ------------------------------------------------------------------------------------

// The configuration of an ImageReward checkpoint (see the top of the file). `med_config` and
// `ir_config` are the parsed JSON files, or null.
inline model::ImageRewardConfig infer_imagereward_config(const SafetensorsSet& st, const Json* med_config,
                                                         const Json* ir_config) {
    const std::string label = detail::checkpoint_label(st);
    const std::string where = "infer_imagereward_config: checkpoint '" + label + "': ";
    const std::string v = "blip.visual_encoder.", t = "blip.text_encoder.";
    model::ImageRewardConfig c;
    c.name = label;
    const Shape cls = detail::tensor_shape(st, v + "cls_token", where, 3);
    c.vision.width = cls[2];
    const Shape patch = detail::tensor_shape(st, v + "patch_embed.proj.weight", where, 4);
    require<FormatError>(patch[0] == c.vision.width && patch[1] == 3 && patch[2] == patch[3], where,
                         "patch_embed.proj.weight has shape ", patch, ", expected [", c.vision.width, ", 3, p, p]");
    c.vision.patch_size = patch[2];
    const Shape pos = detail::tensor_shape(st, v + "pos_embed", where, 3);
    const std::int64_t grid = std::int64_t(std::llround(std::sqrt(double(std::max<std::int64_t>(pos[1] - 1, 0)))));
    require<FormatError>(grid >= 1 && grid * grid + 1 == pos[1], where, "pos_embed has ", pos[1],
                         " rows, expected a square grid of patches plus the class token");
    c.vision.image_size = grid * c.vision.patch_size;
    c.vision.layers = detail::count_indexed(st, v + "blocks.", ".norm1.weight");
    require<FormatError>(c.vision.layers >= 1, where, "no vision blocks found (", v, "blocks.0.norm1.weight)");
    c.vision.mlp_width = detail::tensor_shape(st, v + "blocks.0.mlp.fc1.weight", where, 2)[0];
    const Shape word = detail::tensor_shape(st, t + "embeddings.word_embeddings.weight", where, 2);
    c.text.vocab_size = word[0];
    c.text.width = word[1];
    c.text.max_positions = detail::tensor_shape(st, t + "embeddings.position_embeddings.weight", where, 2)[0];
    c.text.layers = detail::count_indexed(st, t + "encoder.layer.", ".attention.self.query.weight");
    require<FormatError>(c.text.layers >= 1, where, "no text layers found (", t, "encoder.layer.0.*)");
    c.text.mlp_width = detail::tensor_shape(st, t + "encoder.layer.0.intermediate.dense.weight", where, 2)[0];
    const std::vector<std::int64_t> head = detail::sequential_linear_widths(st, "mlp.", c.text.width, where);
    c.head.assign(head.begin() + 1, head.end());

    auto heads = [&](std::int64_t width, const char* what) {
        require<FormatError>(width % 64 == 0, where, what, " width ", width,
                             " is not a multiple of 64: the head count cannot be inferred (give it in "
                             "med_config.json / imagereward_config.json)");
        return width / 64;
    };
    c.vision.heads = 0;  // from imagereward_config.json, else inferred below
    c.text.heads = 0;
    if (med_config) {
        const std::string w = where + "med_config.json: ";
        require<FormatError>(med_config->is_object(), w, "not a JSON object");
        if (auto h = detail::json_int(med_config, "num_attention_heads", w)) c.text.heads = *h;
        if (auto e = detail::json_number(med_config, "layer_norm_eps", w)) c.text.layer_norm_eps = *e;
        if (auto a = detail::json_string(med_config, "hidden_act", w))
            require<FormatError>(*a == "gelu", w, "hidden_act \"", *a, "\" is not supported (BLIP uses \"gelu\")");
        auto agrees = [&](const char* key, std::int64_t have) {
            if (auto x = detail::json_int(med_config, key, w))
                require<FormatError>(*x == have, w, key, " is ", *x, " but the tensors say ", have);
        };
        agrees("hidden_size", c.text.width);
        agrees("num_hidden_layers", c.text.layers);
        agrees("intermediate_size", c.text.mlp_width);
        agrees("vocab_size", c.text.vocab_size);
        agrees("max_position_embeddings", c.text.max_positions);
    }
    if (c.text.heads == 0) c.text.heads = heads(c.text.width, "text");
    if (ir_config) {
        const std::string w = where + "imagereward_config.json: ";
        require<FormatError>(ir_config->is_object(), w, "not a JSON object");
        if (auto h = detail::json_int(ir_config, "vision_heads", w)) c.vision.heads = *h;
        if (auto e = detail::json_number(ir_config, "vision_layer_norm_eps", w)) c.vision.layer_norm_eps = *e;
        if (auto n = detail::json_int(ir_config, "max_length", w)) c.text.max_length = *n;
        if (auto m = detail::json_number(ir_config, "reward_mean", w)) c.reward_mean = *m;
        if (auto s = detail::json_number(ir_config, "reward_std", w)) c.reward_std = *s;
    }
    if (c.vision.heads == 0) c.vision.heads = heads(c.vision.width, "vision");
    c.text.max_length = std::min(c.text.max_length, c.text.max_positions);
    try {
        c.validate();
    } catch (const Error& e) {
        fail<FormatError>(where, e.what());
    }
    return c;
}

// Reads med_config.json and imagereward_config.json from the checkpoint's folder when present.
inline model::ImageRewardConfig infer_imagereward_config(const SafetensorsSet& st) {
    const std::optional<Json> med = detail::read_json_file(st.dir() / "med_config.json");
    const std::optional<Json> own = detail::read_json_file(st.dir() / "imagereward_config.json");
    return infer_imagereward_config(st, med ? &*med : nullptr, own ? &*own : nullptr);
}

// Tensors of ImageReward.pt the reward does not use.
inline bool imagereward_unused_tensor(std::string_view name) {
    return detail::starts_with(name, "blip.vision_proj.") || detail::starts_with(name, "blip.text_proj.") ||
           detail::ends_with(name, ".position_ids");
}

template <class T, class D>
void load_imagereward_parameters(const std::vector<model::NamedTensor<T, D>>& params, const SafetensorsSet& st) {
    detail::load_parameters<T, D>(
        ("load_imagereward_parameters: checkpoint '" + detail::checkpoint_label(st) + "'").c_str(), params,
        [&](const std::string& name) { return std::optional<detail::ParamSource>(detail::ParamSource{&st, {name}}); },
        {{&st, [](std::string_view n) { return imagereward_unused_tensor(n); }}});
}

template <class T, class D = Cpu>
std::unique_ptr<model::ImageRewardModel<T, D>> load_imagereward_model(const std::filesystem::path& path,
                                                                      const model::ImageRewardOptions& options = {}) {
    const SafetensorsSet st = SafetensorsSet::open(path);
    auto m = std::make_unique<model::ImageRewardModel<T, D>>(infer_imagereward_config(st), options);
    load_imagereward_parameters(m->parameters(), st);
    return m;
}

// ---- the aesthetic predictor --------------------------------------------------------------------------

namespace detail {

// Whether a CLIP checkpoint holds its text tower (then io/checkpoint.hpp's inference applies).
inline bool has_text_tower(const SafetensorsSet& st, const ClipNamingInfo& info) {
    const auto src = clip_tensor_source("text_model.embeddings.token_embedding.weight", info, 1, 1);
    return src && st.find(src->name) != nullptr;
}

// Tensors of a CLIP checkpoint the aesthetic predictor does not use: the text side, logit_scale,
// OpenAI's integer buffers, the head (when it shares the file), old buffers.
inline bool aesthetic_unused_clip_tensor(std::string_view n, const std::string& prefix) {
    if (!starts_with(n, prefix)) return false;
    const std::string_view s = n.substr(prefix.size());
    if (starts_with(s, "vision_model.") || starts_with(s, "visual.") || s == "visual_projection.weight")
        return ignorable_checkpoint_tensor(s);
    return true;
}

}  // namespace detail

// The predictor's configuration from its CLIP checkpoint and its head (they may be one set).
inline model::AestheticConfig infer_aesthetic_config(const SafetensorsSet& clip, const SafetensorsSet& head) {
    const std::string label = detail::checkpoint_label(clip);
    const std::string where = "infer_aesthetic_config: checkpoint '" + label + "': ";
    const ClipNamingInfo info = detect_clip_naming(clip.names(), label);
    model::AestheticConfig c;
    if (detail::has_text_tower(clip, info)) {
        c.clip = infer_clip_config(clip);
    } else {
        // Vision only: the same rules as infer_clip_config's vision part.
        auto shape_of = [&](const std::string& hf_name, int rank) {
            const auto src = clip_tensor_source(hf_name, info, 1, 1);
            return detail::tensor_shape(clip, src->name, where, rank);
        };
        model::ClipConfig& k = c.clip;
        k.name = label;
        const Shape patch = shape_of("vision_model.embeddings.patch_embedding.weight", 4);
        require<FormatError>(patch[1] == 3 && patch[2] == patch[3], where, "patch embedding has shape ", patch,
                             ", expected [width, 3, p, p]");
        k.vision.width = patch[0];
        k.vision.patch_size = patch[2];
        const Shape pos = shape_of("vision_model.embeddings.position_embedding.weight", 2);
        const std::int64_t grid = std::int64_t(std::llround(std::sqrt(double(std::max<std::int64_t>(pos[0] - 1, 0)))));
        require<FormatError>(grid >= 1 && grid * grid + 1 == pos[0], where, "vision position embedding has ", pos[0],
                             " rows, expected a square grid of patches plus the class token");
        k.vision.image_size = grid * k.vision.patch_size;
        k.vision.layers = 0;
        while (true) {
            const auto src = clip_tensor_source("vision_model.encoder.layers." + std::to_string(k.vision.layers) +
                                                    ".layer_norm1.weight",
                                                info, 1, 1);
            if (!src || !clip.find(src->name)) break;
            ++k.vision.layers;
        }
        require<FormatError>(k.vision.layers >= 1, where, "no vision blocks found");
        k.vision.mlp_width = shape_of("vision_model.encoder.layers.0.mlp.fc1.weight", 2)[0];
        const Shape proj = shape_of("visual_projection.weight", 2);
        k.embed_dim = info.naming == ClipNaming::hf ? proj[0] : proj[1];
        require<FormatError>(k.vision.width % 64 == 0, where, "vision width ", k.vision.width,
                             " is not a multiple of 64: the head count cannot be inferred");
        k.vision.heads = k.vision.width / 64;
    }
    c.clip.activation = ops::Activation::quick_gelu;
    const std::vector<std::int64_t> w =
        detail::sequential_linear_widths(head, "", c.clip.embed_dim, "infer_aesthetic_config: head '" +
                                                                         detail::checkpoint_label(head) + "': ");
    c.head.assign(w.begin() + 1, w.end());
    c.validate();
    return c;
}

template <class T, class D>
void load_aesthetic_parameters(const std::vector<model::NamedTensor<T, D>>& params, const SafetensorsSet& clip,
                               const SafetensorsSet& head) {
    const ClipNamingInfo info = detect_clip_naming(clip.names(), detail::checkpoint_label(clip));
    std::int64_t vw = 0;
    for (const auto& p : params)
        if (p.name == "vision_model.embeddings.class_embedding") vw = p.view.size(0);
    const bool same = &clip == &head;
    std::vector<std::pair<const SafetensorsSet*, std::function<bool(std::string_view)>>> unused;
    unused.emplace_back(&clip, [prefix = info.prefix, same](std::string_view n) {
        if (same && detail::starts_with(n, "layers.")) return false;  // the head's tensors must all be used
        return detail::aesthetic_unused_clip_tensor(n, prefix);
    });
    if (!same) unused.emplace_back(&head, [](std::string_view) { return false; });
    detail::load_parameters<T, D>(
        ("load_aesthetic_parameters: checkpoint '" + detail::checkpoint_label(clip) + "'" +
         (same ? std::string() : " + head '" + detail::checkpoint_label(head) + "'"))
            .c_str(),
        params,
        [&](const std::string& name) -> std::optional<detail::ParamSource> {
            if (detail::starts_with(name, "layers.")) return detail::ParamSource{&head, {name}};
            const auto src = clip_tensor_source(name, info, 0, vw);
            if (!src) return std::nullopt;
            return detail::ParamSource{&clip, *src};
        },
        unused);
}

// The head's file for a CLIP checkpoint path: `head` when given; else aesthetic_head.safetensors
// in the folder (or beside the file), else the CLIP file itself.
inline std::filesystem::path aesthetic_head_path(const std::filesystem::path& clip, const std::filesystem::path& head = {}) {
    namespace fs = std::filesystem;
    if (!head.empty()) return head;
    std::error_code ec;
    const fs::path dir = fs::is_directory(clip, ec) ? clip : clip.parent_path();
    if (fs::exists(dir / "aesthetic_head.safetensors", ec) && dir / "aesthetic_head.safetensors" != clip)
        return dir / "aesthetic_head.safetensors";
    return {};
}

// A predictor built from a CLIP checkpoint (file or folder) and its head (see aesthetic_head_path).
template <class T, class D = Cpu>
std::unique_ptr<model::AestheticModel<T, D>> load_aesthetic_model(const std::filesystem::path& clip_path,
                                                                  const std::filesystem::path& head_path = {},
                                                                  const model::AestheticOptions& options = {}) {
    const SafetensorsSet clip = SafetensorsSet::open(clip_path);
    const std::filesystem::path hp = aesthetic_head_path(clip_path, head_path);
    std::optional<SafetensorsSet> head;
    if (!hp.empty()) head = SafetensorsSet::open(hp);
    const SafetensorsSet& h = head ? *head : clip;
    auto m = std::make_unique<model::AestheticModel<T, D>>(infer_aesthetic_config(clip, h), options);
    load_aesthetic_parameters(m->parameters(), clip, h);
    return m;
}

}  // namespace pickscore::io
