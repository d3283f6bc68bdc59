// pickscore/io/checkpoint.hpp — CLIP checkpoints: Hugging Face and open_clip names, loading into a
// model's named parameters, inferring a ClipConfig, and saving in Hugging Face's layout.
//
//   auto model = io::load_clip_model<float>("PickScore_v1/");            // config inferred, weights loaded
//   // or, step by step:
//   io::SafetensorsSet st = io::SafetensorsSet::open("HPS_v2.safetensors"); // file, index or folder
//   model::ClipConfig cfg = io::infer_clip_config(st);                     // + config.json if present
//   model::ClipModel<float> m(cfg);
//   io::load_clip_parameters(m.parameters(), st);
//   io::save_clip_checkpoint("out/", m.config(), m.parameters());          // model.safetensors + config.json
//
// Naming schemes, detected from the names (after stripping a "module." prefix that every name carries,
// as DistributedDataParallel state dicts do):
//   hf         Hugging Face CLIPModel (PickScore_v1, laion/CLIP-ViT-H-14-laion2B-s32B-b79K): the model's
//              own names; "*.embeddings.position_ids" buffers of older files are ignored.
//   open_clip  open_clip CLIP (HPSv2, LAION's open_clip files): visual.conv1.weight,
//              visual.class_embedding, visual.positional_embedding, visual.ln_pre/ln_post,
//              visual.transformer.resblocks.{i}.{ln_1, attn.in_proj_weight [3W,W] / in_proj_bias [3W]
//              (q, k, v stacked: split into q_proj, k_proj, v_proj), attn.out_proj, ln_2, mlp.c_fc,
//              mlp.c_proj}, visual.proj [W,E] (used as x @ proj: the transpose of HF's
//              visual_projection.weight [E,W]), token_embedding.weight, positional_embedding,
//              transformer.resblocks.*, ln_final, text_projection [W,E] (transposed likewise),
//              logit_scale; a non-persistent "attn_mask" that older files carry is ignored.
// logit_scale may be stored as [] (HF, open_clip) or [1] (open_clip's nonscalar_logit_scale).
//
// Loading checks everything before reading any tensor data: every model parameter must have its
// source tensor with the right shape, and every tensor of the file must be used. All problems are
// collected and reported in one FormatError that names each tensor (missing, unexpected,
// mis-shaped). Tensors of dtype F32, F16, BF16 or F64 are converted to the model's element type
// (round to nearest even). CPU parameters are filled in place; for another device each tensor is
// read into a host staging tensor and copied with nn::copy_from_host (the CUDA hook).
//
// infer_clip_config: the dimensions come from the tensors — widths, MLP widths and layer counts,
// patch size (patch weight [W,3,p,p]), image size (grid² + 1 = position rows, image = grid·p),
// vocabulary and context (token / position embedding rows), embed dim (projections). What tensors
// cannot tell comes from config.json (HF) or open_clip_config.json (open_clip) in the checkpoint's
// folder when present — head counts, activation, LayerNorm eps, end-of-text id — and, without one:
//   heads       text: width / 64; vision: 16 for widths 1280 (ViT-H/14, head dim 80) and 1664
//               (ViT-bigG/14, head dim 104), else width / 64 (OpenAI ViT-B and ViT-L use 64); a width
//               that is not a multiple of 64 is an error asking for a config file;
//   activation  exact erf GELU (LAION, PickScore, HPSv2; OpenAI's own checkpoints need quick-GELU:
//               their HF config.json says "quick_gelu" and open_clip's names the model "-quickgelu");
//   eos id      vocab_size - 1 (CLIP's end-of-text is the largest id; open_clip pools at argmax(ids)).
// A config file whose numbers disagree with the tensors is an error naming both. HF's legacy
// text_config.eos_token_id = 2 means "pool at argmax(ids)" there and is read as vocab_size - 1.
//
// save_clip_checkpoint writes Hugging Face names (logit_scale as shape []) to model.safetensors —
// or, past SaveOptions::max_shard_bytes, to model-0000i-of-0000n.safetensors with
// model.safetensors.index.json — with __metadata__ {"format": "pt"} (transformers requires it), and
// a config.json that transformers' CLIPConfig reads; each file atomically (temporary + rename). A
// stale model.safetensors (when writing shards) or model.safetensors.index.json (when writing one
// file) is removed so that from_pretrained cannot pick up the old weights.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../model/clip.hpp"
#include "../model/config.hpp"
#include "../model/params.hpp"
#include "../nn/workspace.hpp"
#include "json.hpp"
#include "safetensors.hpp"

namespace pickscore::io {

enum class ClipNaming { hf, open_clip };

inline const char* to_string(ClipNaming n) { return n == ClipNaming::hf ? "Hugging Face" : "open_clip"; }

// The naming scheme of a checkpoint and the prefix every name carries ("" or "module.", repeated).
struct ClipNamingInfo {
    ClipNaming naming = ClipNaming::hf;
    std::string prefix;
};

namespace detail {

inline bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
inline bool ends_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

inline std::string checkpoint_label(const SafetensorsSet& st) {
    if (st.files().size() == 1) return st.files()[0].label();
    return (st.dir() / "model.safetensors.index.json").string();
}

}  // namespace detail

inline ClipNamingInfo detect_clip_naming(const std::vector<std::string>& names, const std::string& label) {
    ClipNamingInfo info;
    // A prefix carried by every name ("module." from DistributedDataParallel, possibly repeated).
    for (;;) {
        const std::string p = info.prefix + "module.";
        const bool all = !names.empty() && std::all_of(names.begin(), names.end(), [&](const std::string& n) {
            return detail::starts_with(n, p);
        });
        if (!all) break;
        info.prefix = p;
    }
    bool hf = false, oc = false;
    for (const std::string& n : names) {
        const std::string_view s = std::string_view(n).substr(info.prefix.size());
        if (detail::starts_with(s, "vision_model.") || detail::starts_with(s, "text_model.")) hf = true;
        if (detail::starts_with(s, "visual.") || detail::starts_with(s, "transformer.resblocks.") ||
            s == "token_embedding.weight")
            oc = true;
    }
    require<FormatError>(!(hf && oc), "checkpoint '", label,
                         "': mixes Hugging Face names (vision_model.*, text_model.*) with open_clip names "
                         "(visual.*, transformer.*)");
    if (!hf && !oc) {
        std::string some;
        for (std::size_t i = 0; i < names.size() && i < 5; ++i) some += (i ? ", '" : "'") + names[i] + "'";
        fail<FormatError>("checkpoint '", label,
                          "': neither Hugging Face CLIPModel names (vision_model.*, text_model.*) nor open_clip "
                          "names (visual.*, transformer.resblocks.*, token_embedding.weight); first names: ",
                          some.empty() ? std::string("none") : some);
    }
    info.naming = hf ? ClipNaming::hf : ClipNaming::open_clip;
    return info;
}

// Where the value of one model parameter (Hugging Face name) comes from in a checkpoint.
struct ClipTensorSource {
    enum class Op {
        copy,       // the tensor as it is
        rows,       // rows [row_begin, row_end) of the leading dimension (q, k, v of a fused in_proj)
        transpose,  // a [in, out] matrix used as x @ P, transposed into HF's [out, in]
    };
    std::string name;  // in the checkpoint, prefix included
    Op op = Op::copy;
    std::int64_t row_begin = 0, row_end = 0;
};

namespace detail {

// The open_clip name of a parameter inside a block ("self_attn.q_proj.weight" -> fused rows, ...).
inline std::optional<ClipTensorSource> open_clip_block_source(std::string_view rest, const std::string& block,
                                                              std::int64_t width) {
    static const std::pair<std::string_view, std::string_view> same[] = {
        {"self_attn.out_proj.", "attn.out_proj."}, {"layer_norm1.", "ln_1."}, {"layer_norm2.", "ln_2."},
        {"mlp.fc1.", "mlp.c_fc."},                 {"mlp.fc2.", "mlp.c_proj."}};
    for (const auto& [hf, oc] : same)
        if (starts_with(rest, hf)) return ClipTensorSource{block + std::string(oc) + std::string(rest.substr(hf.size()))};
    static const std::string_view qkv[] = {"q", "k", "v"};
    for (int j = 0; j < 3; ++j) {
        const std::string p = "self_attn." + std::string(qkv[j]) + "_proj.";
        if (starts_with(rest, p)) {
            const std::string_view what = rest.substr(p.size());
            if (what != "weight" && what != "bias") return std::nullopt;
            ClipTensorSource s{block + "attn.in_proj_" + std::string(what), ClipTensorSource::Op::rows};
            s.row_begin = j * width;
            s.row_end = (j + 1) * width;
            return s;
        }
    }
    return std::nullopt;
}

}  // namespace detail

// The source of model parameter `hf_name` (whose width is the leading dimension of its q/k/v
// projections) under a naming scheme; nullopt when the scheme has no such tensor.
inline std::optional<ClipTensorSource> clip_tensor_source(const std::string& hf_name, const ClipNamingInfo& info,
                                                          std::int64_t text_width, std::int64_t vision_width) {
    using Op = ClipTensorSource::Op;
    const std::string& pre = info.prefix;
    if (info.naming == ClipNaming::hf) return ClipTensorSource{pre + hf_name};
    static const std::pair<std::string_view, std::string_view> direct[] = {
        {"logit_scale", "logit_scale"},
        {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
        {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
        {"text_model.final_layer_norm.weight", "ln_final.weight"},
        {"text_model.final_layer_norm.bias", "ln_final.bias"},
        {"vision_model.embeddings.class_embedding", "visual.class_embedding"},
        {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"},
        {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"},
        {"vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"},
        {"vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"},
        {"vision_model.post_layernorm.weight", "visual.ln_post.weight"},
        {"vision_model.post_layernorm.bias", "visual.ln_post.bias"}};
    for (const auto& [hf, oc] : direct)
        if (hf_name == hf) return ClipTensorSource{pre + std::string(oc)};
    if (hf_name == "text_projection.weight") return ClipTensorSource{pre + "text_projection", Op::transpose};
    if (hf_name == "visual_projection.weight") return ClipTensorSource{pre + "visual.proj", Op::transpose};
    struct Tower {
        std::string_view hf, oc;
        std::int64_t width;
    };
    for (const Tower& t : {Tower{"text_model.encoder.layers.", "transformer.resblocks.", text_width},
                           Tower{"vision_model.encoder.layers.", "visual.transformer.resblocks.", vision_width}}) {
        if (!detail::starts_with(hf_name, t.hf)) continue;
        const std::string_view rest = std::string_view(hf_name).substr(t.hf.size());
        const std::size_t dot = rest.find('.');
        if (dot == std::string_view::npos || dot == 0) return std::nullopt;
        const std::string layer(rest.substr(0, dot));
        if (!std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
        return detail::open_clip_block_source(rest.substr(dot + 1), pre + std::string(t.oc) + layer + ".", t.width);
    }
    return std::nullopt;
}

namespace detail {

// Tensors a checkpoint may carry that are not parameters (buffers of older library versions).
inline bool ignorable_checkpoint_tensor(std::string_view name) {
    return name == "attn_mask" || ends_with(name, ".attn_mask") || ends_with(name, "embeddings.position_ids");
}

// The shape the source tensor must have for a parameter of shape `param`.
inline Shape expected_source_shape(const ClipTensorSource& s, const Shape& param) {
    switch (s.op) {
        case ClipTensorSource::Op::copy: return param;
        case ClipTensorSource::Op::rows: return param.with_front(param[0] * 3);
        case ClipTensorSource::Op::transpose: return Shape{param[1], param[0]};
    }
    return param;
}

inline bool is_logit_scale(const std::string& hf_name) { return hf_name == "logit_scale"; }

// dst (host) = src (device D), finished when it returns: the device-to-host hook of saving.
template <class U, class D>
void copy_to_host(TensorView<U, Cpu> dst, In<U, D> src) {
    if constexpr (is_cpu<D>) {
        copy<U>(dst, src);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::copy<U>(dst, src);
        cuda::current().synchronize();
#endif
    } else {
        static_assert(ops::dependent_false<D>, "copy_to_host: no backend for this device in this build");
    }
}

// dst (device D) = src (host), finished when it returns (the staging tensor may then be freed):
// the host-to-device hook of loading.
template <class U, class D>
void copy_from_host_sync(TensorView<U, D> dst, In<U, Cpu> src) {
    nn::copy_from_host<U, D>(dst, src);
#if PICKSCORE_CUDA_ENABLED
    if constexpr (is_cuda<D>) cuda::current().synchronize();
#endif
}

// The widths of the q/k/v projections in a parameter list (for the fused in_proj row ranges).
template <class T, class D>
std::pair<std::int64_t, std::int64_t> clip_widths(const std::vector<model::NamedTensor<T, D>>& params) {
    std::int64_t tw = 0, vw = 0;
    for (const auto& p : params) {
        if (p.name == "text_model.embeddings.token_embedding.weight") tw = p.view.size(1);
        if (p.name == "vision_model.embeddings.class_embedding") vw = p.view.size(0);
    }
    return {tw, vw};
}

}  // namespace detail

// Loads a checkpoint into `params` (the model's parameters(), Hugging Face names and shapes).
// Checks every name and shape first and reports all problems together (FormatError).
template <class T, class D>
void load_clip_parameters(const std::vector<model::NamedTensor<T, D>>& params, const SafetensorsSet& st) {
    const std::string label = detail::checkpoint_label(st);
    const ClipNamingInfo info = detect_clip_naming(st.names(), label);
    const auto [tw, vw] = detail::clip_widths(params);

    struct Plan {
        const model::NamedTensor<T, D>* param;
        ClipTensorSource src;
        const SafetensorsEntry* entry;
    };
    std::vector<Plan> plans;
    std::vector<std::string> problems;
    std::unordered_set<std::string> used;
    for (const auto& p : params) {
        const std::optional<ClipTensorSource> src = clip_tensor_source(p.name, info, tw, vw);
        if (!src) {
            problems.push_back("model parameter '" + p.name + "' has no " + to_string(info.naming) + " counterpart");
            continue;
        }
        used.insert(src->name);
        const SafetensorsEntry* e = st.find(src->name);
        if (!e) {
            problems.push_back("missing tensor '" + src->name + "'" +
                               (src->name == info.prefix + p.name ? std::string() : " (for '" + p.name + "')") +
                               ", expected shape " + detail::expected_source_shape(*src, p.view.shape()).str());
            continue;
        }
        Shape want = detail::expected_source_shape(*src, p.view.shape());
        bool ok = e->shape == want;
        if (detail::is_logit_scale(p.name)) ok = e->numel() == 1 && e->shape.rank() <= 1 && p.view.numel() == 1;
        if (!ok) {
            problems.push_back("tensor '" + src->name + "' has shape " + e->shape.str() + ", expected " +
                               (detail::is_logit_scale(p.name) ? std::string("[] or [1]") : want.str()) +
                               (src->name == info.prefix + p.name ? std::string() : " (for '" + p.name + "')"));
            continue;
        }
        if (!e->pick_dtype() || e->dtype == "I32") {
            problems.push_back("tensor '" + src->name + "' has dtype " + e->dtype +
                               ", expected a floating-point dtype (F32, F16, BF16, F64)");
            continue;
        }
        plans.push_back({&p, *src, e});
    }
    for (const std::string& n : st.names()) {
        if (used.count(n)) continue;
        if (detail::ignorable_checkpoint_tensor(std::string_view(n).substr(info.prefix.size()))) continue;
        problems.push_back("unexpected tensor '" + n + "' (" + st.find(n)->shape.str() + ")");
    }
    if (!problems.empty()) {
        std::string msg;
        for (const std::string& s : problems) msg += "\n  " + s;
        fail<FormatError>("load_clip_parameters: checkpoint '", label, "' (", to_string(info.naming), " names): ",
                          problems.size(), problems.size() == 1 ? " problem:" : " problems:", msg);
    }

    // Read. A fused in_proj is read once for its three parameters (they are consecutive).
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
        switch (pl.src.op) {
            case ClipTensorSource::Op::copy: st.read<T>(pl.src.name, host.flat()); break;
            case ClipTensorSource::Op::rows: {
                if (fused_name != pl.src.name) {
                    fused = st.load<T>(pl.src.name);
                    fused_name = pl.src.name;
                }
                copy<T>(host, fused.view().slice(pl.src.row_begin, pl.src.row_end));
                break;
            }
            case ClipTensorSource::Op::transpose: {
                const Tensor<T, Cpu> t = st.load<T>(pl.src.name);  // [in, out]
                const std::int64_t out = host.size(0), in = host.size(1);
                for (std::int64_t o = 0; o < out; ++o)
                    for (std::int64_t i = 0; i < in; ++i) host[o * in + i] = t[i * out + o];
                break;
            }
        }
        if constexpr (!is_cpu<D>) detail::copy_from_host_sync<T, D>(dst, staging);
    }
}

// Overload taking a path: a .safetensors file, a sharded index, or a folder.
template <class T, class D>
void load_clip_parameters(const std::vector<model::NamedTensor<T, D>>& params, const std::filesystem::path& path) {
    load_clip_parameters(params, SafetensorsSet::open(path));
}

// ---- configuration --------------------------------------------------------------------------------

namespace detail {

inline std::optional<Json> read_json_file(const std::filesystem::path& p) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) return std::nullopt;
    std::ifstream in(p, std::ios::binary);
    if (!in) fail<IoError>("cannot open '", p.string(), "'");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    try {
        return json::parse(text, {.max_depth = 64, .allow_duplicate_keys = true});
    } catch (const FormatError& e) {
        fail<FormatError>("'", p.string(), "': ", e.what());
    }
}

// An integer member, if present (null counts as absent).
inline std::optional<std::int64_t> json_int(const Json* obj, std::string_view key, const std::string& where) {
    if (!obj || !obj->is_object()) return std::nullopt;
    const Json* v = obj->find(key);
    if (!v || v->is_null()) return std::nullopt;
    require<FormatError>(v->is_number() && std::floor(v->as_double()) == v->as_double(), where, "\"", key,
                         "\" is not an integer");
    return std::int64_t(v->as_double());
}
inline std::optional<double> json_number(const Json* obj, std::string_view key, const std::string& where) {
    if (!obj || !obj->is_object()) return std::nullopt;
    const Json* v = obj->find(key);
    if (!v || v->is_null()) return std::nullopt;
    require<FormatError>(v->is_number(), where, "\"", key, "\" is not a number");
    return v->as_double();
}
inline std::optional<std::string> json_string(const Json* obj, std::string_view key, const std::string& where) {
    if (!obj || !obj->is_object()) return std::nullopt;
    const Json* v = obj->find(key);
    if (!v || v->is_null()) return std::nullopt;
    require<FormatError>(v->is_string(), where, "\"", key, "\" is not a string");
    return v->as_string();
}

inline ops::Activation hf_activation(const std::string& act, const std::string& where) {
    if (act == "gelu") return ops::Activation::gelu_erf;
    if (act == "quick_gelu") return ops::Activation::quick_gelu;
    if (act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast") return ops::Activation::gelu_tanh;
    fail<FormatError>(where, "unsupported hidden_act \"", act, "\" (supported: gelu, quick_gelu, gelu_pytorch_tanh)");
}

inline const char* hf_activation_name(ops::Activation a) {
    switch (a) {
        case ops::Activation::gelu_erf: return "gelu";
        case ops::Activation::quick_gelu: return "quick_gelu";
        case ops::Activation::gelu_tanh: return "gelu_pytorch_tanh";
    }
    return "gelu";
}

}  // namespace detail

// The configuration of a checkpoint: dimensions from its tensors, the rest from `hf_config`
// (config.json) or `open_clip_config` (open_clip_config.json) when given (see the top of the file).
inline model::ClipConfig infer_clip_config(const SafetensorsSet& st, const Json* hf_config,
                                           const Json* open_clip_config) {
    const std::string label = detail::checkpoint_label(st);
    const std::string where = "infer_clip_config: checkpoint '" + label + "': ";
    const ClipNamingInfo info = detect_clip_naming(st.names(), label);
    const bool hf = info.naming == ClipNaming::hf;
    auto shape_of = [&](const std::string& hf_name) -> Shape {
        const auto src = clip_tensor_source(hf_name, info, 1, 1);
        const SafetensorsEntry* e = src ? st.find(src->name) : nullptr;
        if (!e) fail<FormatError>(where, "missing tensor '", src ? src->name : hf_name, "'");
        return e->shape;
    };
    auto rank_is = [&](const std::string& hf_name, const Shape& s, int r) {
        require<FormatError>(s.rank() == r, where, "tensor for '", hf_name, "' has shape ", s, ", expected rank ", r);
    };
    auto count_layers = [&](const std::string& tower_prefix_hf) {
        std::int64_t n = 0;
        while (true) {
            const auto src = clip_tensor_source(tower_prefix_hf + std::to_string(n) + ".layer_norm1.weight", info, 1, 1);
            if (!src || !st.find(src->name)) break;
            ++n;
        }
        return n;
    };

    model::ClipConfig c;
    c.name = label;
    // Vision.
    const Shape patch = shape_of("vision_model.embeddings.patch_embedding.weight");
    rank_is("vision_model.embeddings.patch_embedding.weight", patch, 4);
    require<FormatError>(patch[1] == 3 && patch[2] == patch[3], where, "patch embedding has shape ", patch,
                         ", expected [width, 3, p, p]");
    c.vision.width = patch[0];
    c.vision.patch_size = patch[2];
    const Shape vpos = shape_of("vision_model.embeddings.position_embedding.weight");
    rank_is("vision_model.embeddings.position_embedding.weight", vpos, 2);
    const std::int64_t grid = std::int64_t(std::llround(std::sqrt(double(std::max<std::int64_t>(vpos[0] - 1, 0)))));
    require<FormatError>(grid >= 1 && grid * grid + 1 == vpos[0], where, "vision position embedding has ", vpos[0],
                         " rows, expected a square grid of patches plus the class token");
    c.vision.image_size = grid * c.vision.patch_size;
    c.vision.layers = count_layers("vision_model.encoder.layers.");
    require<FormatError>(c.vision.layers >= 1, where, "no vision blocks found");
    const Shape vfc1 = shape_of("vision_model.encoder.layers.0.mlp.fc1.weight");
    rank_is("vision_model.encoder.layers.0.mlp.fc1.weight", vfc1, 2);
    c.vision.mlp_width = vfc1[0];
    // Text.
    const Shape tok = shape_of("text_model.embeddings.token_embedding.weight");
    rank_is("text_model.embeddings.token_embedding.weight", tok, 2);
    c.text.vocab_size = tok[0];
    c.text.width = tok[1];
    const Shape tpos = shape_of("text_model.embeddings.position_embedding.weight");
    rank_is("text_model.embeddings.position_embedding.weight", tpos, 2);
    c.text.context_length = tpos[0];
    c.text.layers = count_layers("text_model.encoder.layers.");
    require<FormatError>(c.text.layers >= 1, where, "no text blocks found");
    const Shape tfc1 = shape_of("text_model.encoder.layers.0.mlp.fc1.weight");
    rank_is("text_model.encoder.layers.0.mlp.fc1.weight", tfc1, 2);
    c.text.mlp_width = tfc1[0];
    c.text.eos_token_id = std::int32_t(c.text.vocab_size - 1);
    // Embedding dimension: HF projections are [E, W], open_clip's [W, E].
    const Shape vproj = shape_of("visual_projection.weight");
    const Shape tproj = shape_of("text_projection.weight");
    rank_is("visual_projection.weight", vproj, 2);
    rank_is("text_projection.weight", tproj, 2);
    c.embed_dim = hf ? vproj[0] : vproj[1];
    const std::int64_t tproj_e = hf ? tproj[0] : tproj[1];
    require<FormatError>(tproj_e == c.embed_dim, where, "the text projection gives embed dim ", tproj_e,
                         " but the visual projection ", c.embed_dim);

    // Defaults for what the tensors cannot tell.
    auto default_heads = [&](std::int64_t width, bool vision) -> std::int64_t {
        if (vision && (width == 1280 || width == 1664)) return 16;
        require<FormatError>(width % 64 == 0, where, (vision ? "vision" : "text"), " width ", width,
                             " is not a multiple of 64: the head count cannot be inferred without a config.json "
                             "or open_clip_config.json");
        return width / 64;
    };
    c.vision.heads = 0;  // 0: not given by a config file; defaults below
    c.text.heads = 0;
    c.activation = ops::Activation::gelu_erf;
    c.layer_norm_eps = 1e-5;

    auto agree = [&](const std::string& file, const std::string& key, std::optional<std::int64_t> v,
                     std::int64_t from_tensors) {
        require<FormatError>(!v || *v == from_tensors, where, file, " says ", key, " = ", v ? *v : 0,
                             " but the tensors say ", from_tensors);
    };
    if (hf_config) {
        const std::string f = "config.json";
        const std::string w = where + f + ": ";
        require<FormatError>(hf_config->is_object(), w, "not a JSON object");
        // Configs written by older transformers may also carry text_config_dict / vision_config_dict,
        // whose values take precedence (as CLIPConfig does).
        auto merged = [&](const char* key, const char* dict_key) {
            Json out = Json::Object{};
            for (const char* k : {key, dict_key})
                if (const Json* v = hf_config->find(k); v && v->is_object())
                    for (const auto& [name, value] : v->items()) out.set(name, value);
            return out;
        };
        const Json text_cfg = merged("text_config", "text_config_dict");
        const Json vision_cfg = merged("vision_config", "vision_config_dict");
        const Json* tc = &text_cfg;
        const Json* vc = &vision_cfg;
        agree(f, "projection_dim", detail::json_int(hf_config, "projection_dim", w), c.embed_dim);
        agree(f, "vision_config.hidden_size", detail::json_int(vc, "hidden_size", w), c.vision.width);
        agree(f, "vision_config.intermediate_size", detail::json_int(vc, "intermediate_size", w), c.vision.mlp_width);
        agree(f, "vision_config.num_hidden_layers", detail::json_int(vc, "num_hidden_layers", w), c.vision.layers);
        agree(f, "vision_config.patch_size", detail::json_int(vc, "patch_size", w), c.vision.patch_size);
        agree(f, "vision_config.image_size", detail::json_int(vc, "image_size", w), c.vision.image_size);
        agree(f, "text_config.hidden_size", detail::json_int(tc, "hidden_size", w), c.text.width);
        agree(f, "text_config.intermediate_size", detail::json_int(tc, "intermediate_size", w), c.text.mlp_width);
        agree(f, "text_config.num_hidden_layers", detail::json_int(tc, "num_hidden_layers", w), c.text.layers);
        agree(f, "text_config.vocab_size", detail::json_int(tc, "vocab_size", w), c.text.vocab_size);
        agree(f, "text_config.max_position_embeddings", detail::json_int(tc, "max_position_embeddings", w),
              c.text.context_length);
        if (auto h = detail::json_int(vc, "num_attention_heads", w)) c.vision.heads = *h;
        if (auto h = detail::json_int(tc, "num_attention_heads", w)) c.text.heads = *h;
        require<FormatError>(c.vision.heads >= 0 && c.text.heads >= 0, w, "negative num_attention_heads");
        const auto vact = detail::json_string(vc, "hidden_act", w);
        const auto tact = detail::json_string(tc, "hidden_act", w);
        require<FormatError>(!vact || !tact || *vact == *tact, w, "vision hidden_act \"", vact.value_or(""),
                             "\" differs from text hidden_act \"", tact.value_or(""),
                             "\" (one activation for both towers is supported)");
        if (vact || tact) c.activation = detail::hf_activation(vact ? *vact : *tact, w);
        const auto veps = detail::json_number(vc, "layer_norm_eps", w);
        const auto teps = detail::json_number(tc, "layer_norm_eps", w);
        require<FormatError>(!veps || !teps || *veps == *teps, w, "vision layer_norm_eps ", veps.value_or(0),
                             " differs from text layer_norm_eps ", teps.value_or(0));
        if (veps || teps) c.layer_norm_eps = veps ? *veps : *teps;
        if (auto eos = detail::json_int(tc, "eos_token_id", w)) {
            // transformers pools at argmax(ids) when eos_token_id == 2 (configs written before 4.31).
            if (*eos != 2) {
                require<FormatError>(*eos >= 0 && *eos < c.text.vocab_size, w, "text_config.eos_token_id ", *eos,
                                     " is outside the vocabulary of ", c.text.vocab_size);
                c.text.eos_token_id = std::int32_t(*eos);
            }
        }
    } else if (open_clip_config) {
        const std::string f = "open_clip_config.json";
        const std::string w = where + f + ": ";
        require<FormatError>(open_clip_config->is_object(), w, "not a JSON object");
        const Json* mc = open_clip_config->find("model_cfg");
        if (!mc) mc = open_clip_config;  // a bare model config (open_clip's model_configs/*.json)
        const Json* vc = mc->find("vision_cfg");
        const Json* tc = mc->find("text_cfg");
        agree(f, "embed_dim", detail::json_int(mc, "embed_dim", w), c.embed_dim);
        agree(f, "vision_cfg.width", detail::json_int(vc, "width", w), c.vision.width);
        agree(f, "vision_cfg.layers", detail::json_int(vc, "layers", w), c.vision.layers);
        agree(f, "vision_cfg.patch_size", detail::json_int(vc, "patch_size", w), c.vision.patch_size);
        agree(f, "vision_cfg.image_size", detail::json_int(vc, "image_size", w), c.vision.image_size);
        agree(f, "text_cfg.width", detail::json_int(tc, "width", w), c.text.width);
        agree(f, "text_cfg.layers", detail::json_int(tc, "layers", w), c.text.layers);
        agree(f, "text_cfg.vocab_size", detail::json_int(tc, "vocab_size", w), c.text.vocab_size);
        agree(f, "text_cfg.context_length", detail::json_int(tc, "context_length", w), c.text.context_length);
        // open_clip's defaults: vision head_width 64, text heads 8.
        const std::int64_t head_width = detail::json_int(vc, "head_width", w).value_or(64);
        require<FormatError>(head_width >= 1 && c.vision.width % head_width == 0, w, "vision_cfg.head_width ",
                             head_width, " does not divide the vision width ", c.vision.width);
        c.vision.heads = c.vision.width / head_width;
        c.text.heads = detail::json_int(tc, "heads", w).value_or(8);
        require<FormatError>(c.text.heads >= 1, w, "text_cfg.heads must be positive");
        if (mc->is_object())
            if (const Json* q = mc->find("quick_gelu"))
                if (q->is_bool() && q->as_bool()) c.activation = ops::Activation::quick_gelu;
        const std::string pool = detail::json_string(tc, "pool_type", w).value_or("argmax");
        if (pool == "eos") {
            const std::int64_t eos = detail::json_int(tc, "eos_id", w).value_or(2);
            require<FormatError>(eos >= 0 && eos < c.text.vocab_size, w, "text_cfg.eos_id ", eos,
                                 " is outside the vocabulary");
            c.text.eos_token_id = std::int32_t(eos);
        } else {
            require<FormatError>(pool == "argmax", w, "text_cfg.pool_type \"", pool,
                                 "\" is not supported (argmax or eos)");
        }
    }
    if (c.vision.heads == 0) c.vision.heads = default_heads(c.vision.width, true);
    if (c.text.heads == 0) c.text.heads = default_heads(c.text.width, false);
    c.validate();
    return c;
}

// As above, reading config.json / open_clip_config.json from the checkpoint's folder if present
// (config.json is used only for Hugging Face names, open_clip_config.json only for open_clip names).
inline model::ClipConfig infer_clip_config(const SafetensorsSet& st) {
    const ClipNamingInfo info = detect_clip_naming(st.names(), detail::checkpoint_label(st));
    std::optional<Json> cfg;
    if (info.naming == ClipNaming::hf) {
        cfg = detail::read_json_file(st.dir() / "config.json");
        return infer_clip_config(st, cfg ? &*cfg : nullptr, nullptr);
    }
    cfg = detail::read_json_file(st.dir() / "open_clip_config.json");
    return infer_clip_config(st, nullptr, cfg ? &*cfg : nullptr);
}

// A model built from a checkpoint's inferred configuration, with its weights loaded.
template <class T, class D = Cpu>
std::unique_ptr<model::ClipModel<T, D>> load_clip_model(const std::filesystem::path& path,
                                                        const model::ClipOptions& options = {}) {
    const SafetensorsSet st = SafetensorsSet::open(path);
    auto m = std::make_unique<model::ClipModel<T, D>>(infer_clip_config(st), options);
    load_clip_parameters(m->parameters(), st);
    return m;
}

// ---- saving ---------------------------------------------------------------------------------------

// The config.json transformers' CLIPConfig reads for `c`.
inline Json hf_clip_config_json(const model::ClipConfig& c, DType dtype = DType::f32) {
    const char* act = detail::hf_activation_name(c.activation);
    Json text = Json::Object{};
    text.set("model_type", "clip_text_model");
    text.set("vocab_size", Json(c.text.vocab_size));
    text.set("hidden_size", Json(c.text.width));
    text.set("intermediate_size", Json(c.text.mlp_width));
    text.set("num_hidden_layers", Json(c.text.layers));
    text.set("num_attention_heads", Json(c.text.heads));
    text.set("max_position_embeddings", Json(c.text.context_length));
    text.set("hidden_act", act);
    text.set("layer_norm_eps", Json(c.layer_norm_eps));
    text.set("projection_dim", Json(c.embed_dim));
    // eos_token_id 2 would switch transformers to argmax(ids) pooling, which only agrees when 2 is
    // the largest id; CLIP vocabularies put end-of-text last (49407).
    text.set("bos_token_id", Json(std::int64_t(c.text.eos_token_id > 0 ? c.text.eos_token_id - 1 : 0)));
    text.set("eos_token_id", Json(std::int64_t(c.text.eos_token_id)));
    text.set("pad_token_id", Json(std::int64_t(1)));
    Json vision = Json::Object{};
    vision.set("model_type", "clip_vision_model");
    vision.set("hidden_size", Json(c.vision.width));
    vision.set("intermediate_size", Json(c.vision.mlp_width));
    vision.set("num_hidden_layers", Json(c.vision.layers));
    vision.set("num_attention_heads", Json(c.vision.heads));
    vision.set("image_size", Json(c.vision.image_size));
    vision.set("patch_size", Json(c.vision.patch_size));
    vision.set("num_channels", Json(std::int64_t(3)));
    vision.set("hidden_act", act);
    vision.set("layer_norm_eps", Json(c.layer_norm_eps));
    vision.set("projection_dim", Json(c.embed_dim));
    Json j = Json::Object{};
    Json arch = Json::Array{};
    arch.push_back("CLIPModel");
    j.set("architectures", std::move(arch));
    j.set("model_type", "clip");
    j.set("projection_dim", Json(c.embed_dim));
    j.set("logit_scale_init_value", Json(c.logit_scale_init));
    j.set("initializer_factor", Json(1.0));
    j.set("torch_dtype", dtype == DType::bf16 ? "bfloat16" : dtype == DType::f16 ? "float16" : "float32");
    j.set("text_config", std::move(text));
    j.set("vision_config", std::move(vision));
    return j;
}

struct ClipSaveOptions {
    DType dtype = DType::f32;         // F32, BF16 or F16 in the file
    std::uint64_t max_shard_bytes = 0;  // 0: always one model.safetensors
};

// Writes `params` (Hugging Face names) and config.json into folder `dir` (created if needed).
template <class T, class D>
void save_clip_checkpoint(const std::filesystem::path& dir, const model::ClipConfig& config,
                          const std::vector<model::NamedTensor<T, D>>& params, const ClipSaveOptions& options = {}) {
    namespace fs = std::filesystem;
    require<Error>(options.dtype == DType::f32 || options.dtype == DType::bf16 || options.dtype == DType::f16,
                   "save_clip_checkpoint: dtype must be f32, bf16 or f16, got ", dtype_name(options.dtype));
    config.validate();
    fs::create_directories(dir);
    // Host tensors of the file's dtype (a view of the parameter itself when nothing changes).
    std::vector<Tensor<float, Cpu>> f32;
    std::vector<Tensor<bf16, Cpu>> b16;
    std::vector<Tensor<f16, Cpu>> h16;
    std::vector<TensorToWrite> list;
    list.reserve(params.size());
    f32.reserve(params.size());
    b16.reserve(params.size());
    h16.reserve(params.size());
    for (const auto& p : params) {
        const Shape shape = detail::is_logit_scale(p.name) ? Shape{} : p.view.shape();
        require<ShapeError>(shape.numel() == p.view.numel(), "save_clip_checkpoint: '", p.name, "' has shape ",
                            p.view.shape(), ", expected one element");
        Tensor<T, Cpu> staging;
        TensorView<const T, Cpu> host;
        if constexpr (is_cpu<D>) {
            host = p.view;
        } else {
            staging = Tensor<T, Cpu>(p.view.shape());
            detail::copy_to_host<T, D>(staging.view(), p.view);
            host = staging;
        }
        auto emit = [&](auto& store, auto tag) {
            using U = decltype(tag);
            if constexpr (std::is_same_v<U, std::remove_cv_t<T>>) {
                if constexpr (is_cpu<D>) {
                    list.push_back(TensorToWrite{p.name, dtype_of<U>, shape, host.data()});
                    return;
                }
            }
            store.push_back(Tensor<U, Cpu>(host.shape()));
            convert<U, std::remove_cv_t<T>>(store.back(), host);
            list.push_back(TensorToWrite{p.name, dtype_of<U>, shape, store.back().data()});
        };
        if (options.dtype == DType::f32) emit(f32, float{});
        else if (options.dtype == DType::bf16) emit(b16, bf16{});
        else emit(h16, f16{});
    }
    const std::map<std::string, std::string> md{{"format", "pt"}};
    std::uint64_t total = 0;
    for (const TensorToWrite& t : list) total += t.bytes();
    std::error_code ec;
    if (options.max_shard_bytes > 0 && total > options.max_shard_bytes) {
        save_safetensors_sharded(dir, list, options.max_shard_bytes, md, "model");
        fs::remove(dir / "model.safetensors", ec);
    } else {
        save_safetensors(dir / "model.safetensors", list, md);
        fs::remove(dir / "model.safetensors.index.json", ec);
    }
    save_text_atomic(dir / "config.json", json::dump(hf_clip_config_json(config, options.dtype), 2) + "\n");
}

}  // namespace pickscore::io
