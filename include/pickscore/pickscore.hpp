// pickscore/pickscore.hpp — PickScore in one class: load a model, score a prompt against images.
// pickscore-requires: pickscore::io
//
//   pickscore::Scorer scorer("PickScore_v1/");                  // model.safetensors + config.json + tokenizer
//   auto r = scorer.score("a photo of a cat", {"a.png", "b.jpg"});
//   for (const auto& s : r.images)                               // per image, in the order given
//       if (s.ok()) std::printf("%s %.3f %.3f\n", s.name.c_str(), s.score, s.probability);
//       else        std::printf("%s failed: %s\n", s.name.c_str(), s.error.c_str());
//
// Per image the Scorer reports
//   cosine       cos(text embedding, image embedding) of the L2-normalised embeddings;
//   scaled       exp(logit_scale) · cosine (PickScore's reported score; ~21 for PickScore_v1);
//   probability  softmax of `scaled` over the images of this prompt that decoded (the predicted
//                probability that a person prefers this image among them);
//   score        the preset's score: `scaled` for pickscore and clip, `cosine` for hpsv2.
// An image that cannot be read, decoded or preprocessed gets its error message and NaN numbers;
// the others are scored (and share the softmax) as if it had not been given.
//
// Presets (the rules of the scorer a checkpoint came with):
//   pickscore  (default) PickScore_v1: Hugging Face CLIPTokenizer cleaning, CLIPImageProcessor
//              preprocessing (shorter side to 224 with Pillow's bicubic, centre crop), score = scaled.
//   clip       the zero-shot LAION CLIP-ViT-H-14 baseline of the PickScore paper: the same rules.
//   hpsv2      HPSv2 / v2.1 (an open_clip ViT-H/14 state dict): open_clip tokenizer cleaning,
//              letterbox preprocessing (longer side to 224, zero padding), score = raw cosine.
//
// Loading. Scorer(path, options): `path` is a model folder — model.safetensors, or a sharded
// model.safetensors.index.json, or open_clip_model.safetensors; config.json / open_clip_config.json
// beside it when present (io/checkpoint.hpp infers the rest) — or a single .safetensors file. The
// tokenizer: options.tokenizer when given (a file or folder, see io::Tokenizer::from_file), else in
// the model's folder tokenizer.json, vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz, else
// the file named by the environment variable PICKSCORE_VOCAB. A missing file is an IoError naming
// the path and everything that was looked for. The weights are converted to options.dtype (f32 or
// bf16) on options.device (cpu, or cuda in a build linked with pickscore::cuda).
// Scorer(model, tokenizer, options) wraps a ClipModel that is already in memory (a model being
// fine-tuned, say): the Scorer shares it and reads its logit_scale at every call.
//
// Batching and memory: text and images go through the model `options.batch` at a time (each batch of
// images is decoded and preprocessed on the thread pool, then encoded; images that failed are left out).
// A model loaded by the Scorer is planned for inference only (no activation arena, no gradients):
// weights plus one scratch arena sized for the batch, plus one batch of input pixels on the device.
//
// A Scorer is not thread-safe (it reuses its buffers and the model's arena); use one per thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/tensor.hpp"
#include "core/threads.hpp"
#include "cuda/enabled.hpp"
#include "io/checkpoint.hpp"
#include "io/image.hpp"
#include "io/safetensors.hpp"
#include "io/tokenizer.hpp"
#include "model/clip.hpp"
#include "model/config.hpp"
#include "nn/workspace.hpp"

namespace pickscore {

// ---- presets and options ----------------------------------------------------------------------------

enum class Preset { pickscore, clip, hpsv2 };

// What `ImageScore::score` is.
enum class ScoreRule {
    scaled,  // exp(logit_scale) · cosine
    cosine,  // the raw cosine
};

// The rules a preset stands for.
struct PresetRules {
    io::TokenizerMode tokenizer = io::TokenizerMode::hf;
    io::ResizeMode resize = io::ResizeMode::pickscore;
    ScoreRule score = ScoreRule::scaled;
};

inline const char* to_string(Preset p) {
    switch (p) {
        case Preset::clip: return "clip";
        case Preset::hpsv2: return "hpsv2";
        default: return "pickscore";
    }
}

inline Preset parse_preset(std::string_view s) {
    if (s == "pickscore") return Preset::pickscore;
    if (s == "clip") return Preset::clip;
    if (s == "hpsv2") return Preset::hpsv2;
    fail<Error>("unknown preset '", s, "' (expected pickscore, clip or hpsv2)");
}

inline PresetRules preset_rules(Preset p) {
    if (p == Preset::hpsv2) return {io::TokenizerMode::openclip, io::ResizeMode::hpsv2, ScoreRule::cosine};
    return {io::TokenizerMode::hf, io::ResizeMode::pickscore, ScoreRule::scaled};  // pickscore, clip
}

enum class DeviceKind { cpu, cuda };

inline const char* to_string(DeviceKind d) { return d == DeviceKind::cuda ? "cuda" : "cpu"; }

inline DeviceKind parse_device(std::string_view s) {
    if (s == "cpu") return DeviceKind::cpu;
    if (s == "cuda" || s == "gpu") return DeviceKind::cuda;
    fail<Error>("unknown device '", s, "' (expected cpu or cuda)");
}

// Whether this program was built with a CUDA backend (pickscore::cuda, or the host emulation).
inline constexpr bool has_cuda_backend() { return PICKSCORE_CUDA_ENABLED != 0; }

inline DType parse_scorer_dtype(std::string_view s) {
    if (s == "f32" || s == "float32" || s == "fp32") return DType::f32;
    if (s == "bf16" || s == "bfloat16") return DType::bf16;
    fail<Error>("unsupported dtype '", s, "' (expected f32 or bf16)");
}

// Where a long call stands: called after each batch (from the calling thread).
struct Progress {
    std::int64_t done = 0;   // items finished
    std::int64_t total = 0;  // items in the whole call
    const char* what = "";   // "images" or "prompts"
};

struct ScorerOptions {
    Preset preset = Preset::pickscore;
    DeviceKind device = DeviceKind::cpu;
    DType dtype = DType::f32;  // f32 or bf16
    // Images (and prompts) per model call. The model's inference scratch is planned for it.
    std::int64_t batch = 8;
    // Threads of the CPU thread pool (preprocessing and CPU ops); 0 leaves the pool as it is.
    int threads = 0;
    // The tokenizer file or folder; empty: searched beside the model, then $PICKSCORE_VOCAB.
    std::filesystem::path tokenizer;
    // Limits for decoding images (decompression-bomb guard and friends).
    io::DecodeOptions decode;
    // Overrides of the preset's rules (unset: the preset's).
    std::optional<io::TokenizerMode> tokenizer_mode;
    std::optional<io::ResizeMode> resize;
    std::optional<ScoreRule> score_rule;
};

// ---- inputs and results ---------------------------------------------------------------------------

// One image to score, by reference: a file (the path is copied), encoded bytes in memory (PNG,
// JPEG or WebP; not copied: they must outlive the call) or decoded RGB pixels (not copied either).
class ImageInput {
public:
    enum class Kind { file, encoded, pixels };

    ImageInput(const std::filesystem::path& path) : kind_(Kind::file), path_(path), name_(path.string()) {}
    ImageInput(const std::string& path) : ImageInput(std::filesystem::path(path)) {}
    ImageInput(const char* path) : ImageInput(std::filesystem::path(path)) {}
    ImageInput(const io::RgbImage& pixels, std::string name = "<pixels>")
        : kind_(Kind::pixels), pixels_(&pixels), name_(std::move(name)) {}
    static ImageInput encoded(std::span<const std::uint8_t> bytes, std::string name = "<memory>") {
        ImageInput in;
        in.kind_ = Kind::encoded;
        in.bytes_ = bytes;
        in.name_ = std::move(name);
        return in;
    }

    Kind kind() const { return kind_; }
    // How results and errors name the image: the path, or the name given.
    const std::string& name() const { return name_; }
    const std::filesystem::path& path() const { return path_; }
    std::span<const std::uint8_t> bytes() const { return bytes_; }
    const io::RgbImage* pixels() const { return pixels_; }

    // Decodes the image to RGB (files and bytes); pixels are returned as they are (copied).
    io::RgbImage decode(const io::DecodeOptions& d = {}) const {
        switch (kind_) {
            case Kind::file: return io::load_image(path_, d);
            case Kind::encoded: return io::decode_image(bytes_, name_, d);
            default: return *pixels_;
        }
    }

private:
    ImageInput() = default;
    Kind kind_ = Kind::file;
    std::filesystem::path path_;
    std::span<const std::uint8_t> bytes_;
    const io::RgbImage* pixels_ = nullptr;
    std::string name_;
};

// The numbers of one image (NaN and an error message when the image failed).
struct ImageScore {
    std::string name;
    double cosine = std::numeric_limits<double>::quiet_NaN();
    double scaled = std::numeric_limits<double>::quiet_NaN();
    double probability = std::numeric_limits<double>::quiet_NaN();
    double score = std::numeric_limits<double>::quiet_NaN();  // the preset's rule: scaled or cosine
    std::string error;

    bool ok() const { return error.empty(); }
};

// One prompt's result: one entry per image, in the order given.
struct ScoreResult {
    std::string prompt;
    std::vector<ImageScore> images;

    std::size_t failed() const {
        return std::size_t(std::count_if(images.begin(), images.end(), [](const ImageScore& s) { return !s.ok(); }));
    }
    // Indices of the images that scored, best first (ties keep the given order).
    std::vector<std::size_t> ranking() const {
        std::vector<std::size_t> idx;
        for (std::size_t i = 0; i < images.size(); ++i)
            if (images[i].ok()) idx.push_back(i);
        std::stable_sort(idx.begin(), idx.end(),
                         [&](std::size_t a, std::size_t b) { return images[a].score > images[b].score; });
        return idx;
    }
};

// A prompt and its own images (batched scoring of many prompts).
struct Query {
    std::string prompt;
    std::vector<ImageInput> images;
};

// L2-normalised image embeddings [N, E] (float32, host); a failed image has a zero row and its
// message in errors[i].
struct ImageEmbeddings {
    Tensor<float, Cpu> embeddings;
    std::vector<std::string> errors;

    bool ok(std::size_t i) const { return errors.at(i).empty(); }
    std::size_t failed() const {
        return std::size_t(std::count_if(errors.begin(), errors.end(), [](const std::string& e) { return !e.empty(); }));
    }
};

// The scoring arithmetic, on embeddings already computed: text [E] and images [N, E], both
// L2-normalised; ok[i] false marks an image to skip (NaN numbers, left out of the softmax).
// Computed in double.
inline std::vector<ImageScore> score_embeddings(In<float, Cpu> text /*E*/, In<float, Cpu> images /*N,E*/,
                                                const std::vector<bool>& ok, double logit_scale,
                                                ScoreRule rule = ScoreRule::scaled) {
    require<ShapeError>(text.rank() == 1, "score_embeddings: text must be [E], got ", text.shape());
    require<ShapeError>(images.rank() == 2 && images.size(1) == text.size(0), "score_embeddings: images has shape ",
                        images.shape(), ", expected [N, ", text.size(0), "]");
    const std::int64_t N = images.size(0), E = text.size(0);
    require<ShapeError>(std::int64_t(ok.size()) == N, "score_embeddings: ", ok.size(), " flags for ", N, " images");
    const double scale = std::exp(logit_scale);
    std::vector<ImageScore> out(static_cast<std::size_t>(N));
    double max_scaled = -std::numeric_limits<double>::infinity();
    for (std::int64_t i = 0; i < N; ++i) {
        if (!ok[std::size_t(i)]) continue;
        double dot = 0;
        const float* v = images.data() + i * E;
        for (std::int64_t k = 0; k < E; ++k) dot += double(text[k]) * double(v[k]);
        ImageScore& s = out[std::size_t(i)];
        s.cosine = dot;
        s.scaled = scale * dot;
        s.score = rule == ScoreRule::scaled ? s.scaled : s.cosine;
        max_scaled = std::max(max_scaled, s.scaled);
    }
    double sum = 0;
    for (std::int64_t i = 0; i < N; ++i)
        if (ok[std::size_t(i)]) sum += std::exp(out[std::size_t(i)].scaled - max_scaled);
    for (std::int64_t i = 0; i < N; ++i)
        if (ok[std::size_t(i)]) out[std::size_t(i)].probability = std::exp(out[std::size_t(i)].scaled - max_scaled) / sum;
    return out;
}

// ---- the model behind a Scorer, for any element type and device -------------------------------------
namespace detail {

struct ScorerEngine {
    virtual ~ScorerEngine() = default;
    virtual const model::ClipConfig& config() const = 0;
    virtual double logit_scale() = 0;
    // out [N, E] (host float) = normalised text embeddings of ids [N, L] (host).
    virtual void encode_text(TensorView<float, Cpu> out, In<std::int32_t, Cpu> ids) = 0;
    // out [N, E] (host float) = normalised image embeddings of preprocessed pixels [N, 3, S, S] (host
    // float), N <= the batch the engine was made for.
    virtual void encode_images(TensorView<float, Cpu> out, In<float, Cpu> pixels) = 0;
    virtual DeviceKind device() const = 0;
    virtual DType dtype() const = 0;
};

template <class T, class D>
class ScorerEngineOf final : public ScorerEngine {
public:
    ScorerEngineOf(std::shared_ptr<model::ClipModel<T, D>> m, std::int64_t batch) : m_(std::move(m)), batch_(batch) {
        require(m_ != nullptr, "Scorer: no model");
    }
    const model::ClipConfig& config() const override { return m_->config(); }
    double logit_scale() override {
        Tensor<T, Cpu> h(Shape{1});
        io::detail::copy_to_host<T, D>(h, m_->logit_scale());
        return double(cast<float>(h[0]));
    }
    void encode_text(TensorView<float, Cpu> out, In<std::int32_t, Cpu> ids) override {
        const std::int64_t N = ids.size(0), E = config().embed_dim;
        if constexpr (is_cpu<D> && std::is_same_v<T, float>) {
            m_->encode_text(out, ids);
        } else {
            Tensor<T, D> dev(Shape{N, E});
            m_->encode_text(dev, ids);
            to_host(out, dev);
        }
    }
    void encode_images(TensorView<float, Cpu> out, In<float, Cpu> pixels) override {
        const std::int64_t N = pixels.size(0);
        if constexpr (is_cpu<D> && std::is_same_v<T, float>) {
            m_->encode_images(out, pixels);
        } else {
            // One batch of pixels and embeddings on the device, allocated once at the batch size.
            const std::int64_t S = config().vision.image_size, E = config().embed_dim;
            const std::int64_t cap = std::max(batch_, N);
            if (pixels_dev_.empty() || pixels_dev_.size(0) < N) {
                pixels_dev_ = Tensor<T, D>(Shape{cap, 3, S, S});
                out_dev_ = Tensor<T, D>(Shape{cap, E});
            }
            const TensorView<T, D> px = pixels_dev_.slice(0, N), o = out_dev_.slice(0, N);
            if constexpr (std::is_same_v<T, float>) {
                nn::copy_from_host<T, D>(px, pixels);
            } else {
                if (staging_.empty() || staging_.size(0) < N) staging_ = Tensor<T, Cpu>(Shape{cap, 3, S, S});
                const TensorView<T, Cpu> st = staging_.slice(0, N);
                convert<T, float>(st, pixels);
                nn::copy_from_host<T, D>(px, st);
            }
            m_->encode_images(o, px);
            to_host(out, o);
        }
    }
    DeviceKind device() const override { return is_cpu<D> ? DeviceKind::cpu : DeviceKind::cuda; }
    DType dtype() const override { return dtype_of<T>; }

private:
    void to_host(TensorView<float, Cpu> out, In<T, D> src) {
        if constexpr (std::is_same_v<T, float>) {
            io::detail::copy_to_host<T, D>(out, src);
        } else {
            Tensor<T, Cpu> h(src.shape());
            io::detail::copy_to_host<T, D>(h, src);
            convert<float, T>(out, h);
        }
    }

    std::shared_ptr<model::ClipModel<T, D>> m_;
    std::int64_t batch_;
    Tensor<T, D> pixels_dev_, out_dev_;
    Tensor<T, Cpu> staging_;
};

// The model's planning batch for `images_per_call` inputs per call (ClipModel runs 2·batch at a time).
inline model::ClipOptions inference_options(std::int64_t images_per_call) {
    model::ClipOptions o;
    o.batch = std::max<std::int64_t>(1, (images_per_call + 1) / 2);
    o.training = false;
    return o;
}

template <class T, class D>
std::unique_ptr<ScorerEngine> load_engine(const io::SafetensorsSet& st, std::int64_t batch) {
    auto m = std::make_shared<model::ClipModel<T, D>>(io::infer_clip_config(st), inference_options(batch));
    io::load_clip_parameters(m->parameters(), st);
    return std::make_unique<ScorerEngineOf<T, D>>(std::move(m), batch);
}

inline std::unique_ptr<ScorerEngine> load_engine(const io::SafetensorsSet& st, DeviceKind device, DType dtype,
                                                 std::int64_t batch) {
    require(dtype == DType::f32 || dtype == DType::bf16, "Scorer: dtype must be f32 or bf16, got ", dtype_name(dtype));
    if (device == DeviceKind::cpu) {
        if (dtype == DType::bf16) return load_engine<bf16, Cpu>(st, batch);
        return load_engine<float, Cpu>(st, batch);
    }
#if PICKSCORE_CUDA_ENABLED
    if (dtype == DType::bf16) return load_engine<bf16, Cuda>(st, batch);
    return load_engine<float, Cuda>(st, batch);
#else
    fail<Error>("Scorer: device cuda was asked for, but this program was built without a CUDA backend "
                "(link the CMake target pickscore::cuda, built with -DPICKSCORE_CUDA=ON)");
#endif
}

// The tokenizer for a model: options.tokenizer, else beside the model, else $PICKSCORE_VOCAB.
inline io::Tokenizer find_tokenizer(const std::filesystem::path& model_dir, const std::filesystem::path& explicit_path,
                                    io::TokenizerMode mode) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!explicit_path.empty()) {
        require<IoError>(fs::exists(explicit_path, ec), "Scorer: the tokenizer '", explicit_path.string(),
                         "' does not exist");
        return io::Tokenizer::from_file(explicit_path, mode);
    }
    if (fs::exists(model_dir / "tokenizer.json", ec)) return io::Tokenizer::from_tokenizer_json(model_dir / "tokenizer.json", mode);
    if (fs::exists(model_dir / "vocab.json", ec) && fs::exists(model_dir / "merges.txt", ec))
        return io::Tokenizer::from_vocab_merges(model_dir / "vocab.json", model_dir / "merges.txt", mode);
    if (fs::exists(model_dir / "bpe_simple_vocab_16e6.txt.gz", ec))
        return io::Tokenizer::from_bpe_gz(model_dir / "bpe_simple_vocab_16e6.txt.gz", mode);
    const char* env = std::getenv("PICKSCORE_VOCAB");
    if (env && *env) {
        require<IoError>(fs::exists(env, ec), "Scorer: PICKSCORE_VOCAB names '", env, "', which does not exist");
        return io::Tokenizer::from_file(env, mode);
    }
    fail<IoError>("Scorer: no tokenizer found: looked for ", (model_dir / "tokenizer.json").string(), ", ",
                  (model_dir / "vocab.json").string(), " + merges.txt, ",
                  (model_dir / "bpe_simple_vocab_16e6.txt.gz").string(),
                  " and the environment variable PICKSCORE_VOCAB (give the tokenizer file or folder explicitly, "
                  "or run scripts/get_weights.sh, which downloads tokenizer.json beside the weights)");
}

}  // namespace detail

// ---- the Scorer -------------------------------------------------------------------------------------

class Scorer {
public:
    // Loads a model folder or .safetensors file (see the top of this file).
    explicit Scorer(const std::filesystem::path& model, ScorerOptions options = {}) : opt_(std::move(options)) {
        namespace fs = std::filesystem;
        init_common();
        std::error_code ec;
        require<IoError>(fs::exists(model, ec), "Scorer: the model path '", model.string(),
                         "' does not exist (expected a folder holding model.safetensors (or "
                         "model.safetensors.index.json with its shards) + config.json + tokenizer files, or a "
                         ".safetensors file)");
        const io::SafetensorsSet st = io::SafetensorsSet::open(model);
        tokenizer_ = std::make_shared<io::Tokenizer>(
            detail::find_tokenizer(fs::is_directory(model, ec) ? model : st.dir(), opt_.tokenizer, rules_.tokenizer));
        engine_ = detail::load_engine(st, opt_.device, opt_.dtype, opt_.batch);
        check_tokenizer();
        alloc_buffers();
    }

    // Wraps a model already in memory (shared: the caller may keep training it) and a tokenizer.
    // options.device and options.dtype are taken from the model's type.
    template <class T, class D>
    Scorer(std::shared_ptr<model::ClipModel<T, D>> model, io::Tokenizer tokenizer, ScorerOptions options = {})
        : opt_(std::move(options)) {
        init_common();
        opt_.device = is_cpu<D> ? DeviceKind::cpu : DeviceKind::cuda;
        opt_.dtype = dtype_of<T>;
        tokenizer.set_mode(rules_.tokenizer);
        tokenizer_ = std::make_shared<io::Tokenizer>(std::move(tokenizer));
        engine_ = std::make_unique<detail::ScorerEngineOf<T, D>>(std::move(model), opt_.batch);
        check_tokenizer();
        alloc_buffers();
    }

    Scorer(Scorer&&) noexcept = default;
    Scorer& operator=(Scorer&&) noexcept = default;

    // ---- what was loaded ------------------------------------------------------------------------
    const ScorerOptions& options() const { return opt_; }
    Preset preset() const { return opt_.preset; }
    const PresetRules& rules() const { return rules_; }
    const model::ClipConfig& config() const { return engine_->config(); }
    const io::Tokenizer& tokenizer() const { return *tokenizer_; }
    io::PreprocessOptions preprocess_options() const { return pre_; }
    std::int64_t embed_dim() const { return config().embed_dim; }
    std::int64_t image_size() const { return config().vision.image_size; }
    DeviceKind device() const { return engine_->device(); }
    DType dtype() const { return engine_->dtype(); }
    // The model's logit_scale (read from the model at each call) and exp(logit_scale).
    double logit_scale() const { return engine_->logit_scale(); }
    double scale() const { return std::exp(logit_scale()); }

    // Called after each batch of a long call (from the calling thread); empty to switch off.
    void set_progress(std::function<void(const Progress&)> fn) { progress_ = std::move(fn); }

    // ---- embeddings -----------------------------------------------------------------------------
    // L2-normalised text embeddings [N, E] (float32, host).
    Tensor<float, Cpu> embed_text(std::span<const std::string> prompts) {
        const std::int64_t N = std::int64_t(prompts.size()), E = embed_dim();
        Tensor<float, Cpu> out(Shape{N, E});
        const int L = int(config().text.context_length);
        for (std::int64_t i = 0; i < N; i += opt_.batch) {
            const std::int64_t j = std::min(N, i + opt_.batch);
            const Tensor<std::int32_t, Cpu> ids = tokenizer_->tokenize_batch(prompts.subspan(std::size_t(i), std::size_t(j - i)), L);
            engine_->encode_text(out.slice(i, j), ids);
            report(j, N, "prompts");
        }
        return out;
    }
    Tensor<float, Cpu> embed_text(const std::vector<std::string>& prompts) {
        return embed_text(std::span<const std::string>(prompts));
    }
    Tensor<float, Cpu> embed_text(std::initializer_list<std::string> prompts) {
        return embed_text(std::span<const std::string>(prompts.begin(), prompts.size()));
    }
    Tensor<float, Cpu> embed_text(std::string_view prompt) {
        const std::string p(prompt);
        return embed_text(std::span<const std::string>(&p, 1));
    }

    // L2-normalised image embeddings [N, E] with per-image errors.
    ImageEmbeddings embed_images(std::span<const ImageInput> images) {
        ImageEmbeddings r;
        const std::int64_t N = std::int64_t(images.size());
        r.embeddings = Tensor<float, Cpu>::zeros(Shape{N, embed_dim()});
        r.errors.assign(std::size_t(N), std::string());
        for (std::int64_t i = 0; i < N; i += opt_.batch) {
            const std::int64_t j = std::min(N, i + opt_.batch);
            embed_chunk(images.subspan(std::size_t(i), std::size_t(j - i)), r.embeddings.slice(i, j),
                        std::span<std::string>(r.errors).subspan(std::size_t(i), std::size_t(j - i)));
            report(j, N, "images");
        }
        return r;
    }
    ImageEmbeddings embed_images(const std::vector<ImageInput>& images) {
        return embed_images(std::span<const ImageInput>(images));
    }
    ImageEmbeddings embed_images(std::initializer_list<ImageInput> images) {
        return embed_images(std::span<const ImageInput>(images.begin(), images.size()));
    }

    // Embeddings [N, E] of pixels already preprocessed to [N, 3, S, S] (float32, host), for callers
    // with their own preprocessing.
    Tensor<float, Cpu> embed_pixels(In<float, Cpu> pixels /*N,3,S,S*/) {
        const std::int64_t S = image_size();
        require<ShapeError>(pixels.rank() == 4 && pixels.size(1) == 3 && pixels.size(2) == S && pixels.size(3) == S,
                            "Scorer::embed_pixels: pixels has shape ", pixels.shape(), ", expected [N, 3, ", S, ", ",
                            S, "]");
        const std::int64_t N = pixels.size(0);
        Tensor<float, Cpu> out(Shape{N, embed_dim()});
        for (std::int64_t i = 0; i < N; i += opt_.batch) {
            const std::int64_t j = std::min(N, i + opt_.batch);
            engine_->encode_images(out.slice(i, j), pixels.slice(i, j));
            report(j, N, "images");
        }
        return out;
    }

    // ---- scores ---------------------------------------------------------------------------------
    ScoreResult score(std::string_view prompt, std::span<const ImageInput> images) {
        Query q{std::string(prompt), std::vector<ImageInput>(images.begin(), images.end())};
        return std::move(score(std::span<const Query>(&q, 1)).front());
    }
    ScoreResult score(std::string_view prompt, const std::vector<ImageInput>& images) {
        return score(prompt, std::span<const ImageInput>(images));
    }
    ScoreResult score(std::string_view prompt, std::initializer_list<ImageInput> images) {
        return score(prompt, std::span<const ImageInput>(images.begin(), images.size()));
    }
    // Any range of things an ImageInput is made from (paths, strings, RgbImages).
    template <std::ranges::input_range R>
        requires(std::convertible_to<std::ranges::range_reference_t<const R&>, ImageInput> &&
                 !std::same_as<std::ranges::range_value_t<R>, ImageInput>)
    ScoreResult score(std::string_view prompt, const R& images) {
        std::vector<ImageInput> v;
        for (auto&& x : images) v.emplace_back(x);
        return score(prompt, std::span<const ImageInput>(v));
    }

    // Many prompts, each with its own images: the prompts are embedded `batch` at a time, the images
    // of all queries `batch` at a time, then each query is scored over its own images.
    std::vector<ScoreResult> score(std::span<const Query> queries) {
        std::vector<std::string> prompts;
        std::vector<ImageInput> all;
        for (const Query& q : queries) {
            prompts.push_back(q.prompt);
            all.insert(all.end(), q.images.begin(), q.images.end());
        }
        const Tensor<float, Cpu> text = embed_text_quiet(prompts);
        const ImageEmbeddings img = embed_images(all);
        const double ls = logit_scale();
        std::vector<ScoreResult> out;
        out.reserve(queries.size());
        std::int64_t at = 0;
        for (std::size_t q = 0; q < queries.size(); ++q) {
            const std::int64_t n = std::int64_t(queries[q].images.size());
            std::vector<bool> ok(static_cast<std::size_t>(n));
            for (std::int64_t i = 0; i < n; ++i) ok[std::size_t(i)] = img.ok(std::size_t(at + i));
            ScoreResult r;
            r.prompt = queries[q].prompt;
            r.images = score_embeddings(text.select(std::int64_t(q)), img.embeddings.slice(at, at + n), ok, ls,
                                        rules_.score);
            for (std::int64_t i = 0; i < n; ++i) {
                r.images[std::size_t(i)].name = queries[q].images[std::size_t(i)].name();
                r.images[std::size_t(i)].error = img.errors[std::size_t(at + i)];
            }
            out.push_back(std::move(r));
            at += n;
        }
        return out;
    }
    std::vector<ScoreResult> score(const std::vector<Query>& queries) { return score(std::span<const Query>(queries)); }

    // Preprocesses one image the way this scorer does: [3, S, S] float32 (for inspection and tests).
    Tensor<float, Cpu> preprocess(const ImageInput& image) const {
        Tensor<float, Cpu> out(Shape{3, image_size(), image_size()});
        preprocess_into(out, image);
        return out;
    }

private:
    void init_common() {
        require(opt_.batch >= 1, "Scorer: options.batch must be at least 1, got ", opt_.batch);
        require(opt_.threads >= 0, "Scorer: options.threads must not be negative, got ", opt_.threads);
        if (opt_.threads > 0) set_num_threads(opt_.threads);
        rules_ = preset_rules(opt_.preset);
        if (opt_.tokenizer_mode) rules_.tokenizer = *opt_.tokenizer_mode;
        if (opt_.resize) rules_.resize = *opt_.resize;
        if (opt_.score_rule) rules_.score = *opt_.score_rule;
    }

    void check_tokenizer() {
        const model::TextConfig& t = config().text;
        require<FormatError>(tokenizer_->eot_id() == t.eos_token_id, "Scorer: the tokenizer's end-of-text id ",
                             tokenizer_->eot_id(), " is not the model's (", t.eos_token_id,
                             "): the tokenizer does not belong to this model");
        require<FormatError>(std::int64_t(tokenizer_->vocab_size()) <= t.vocab_size, "Scorer: the tokenizer has ",
                             tokenizer_->vocab_size(), " ids but the model's vocabulary only ", t.vocab_size);
        require<FormatError>(t.context_length >= 2, "Scorer: the model's context length ", t.context_length,
                             " is too short for start and end tokens");
    }

    void alloc_buffers() {
        pre_ = io::PreprocessOptions{};
        pre_.mode = rules_.resize;
        pre_.size = image_size();
        host_pixels_ = Tensor<float, Cpu>(Shape{opt_.batch, 3, pre_.size, pre_.size});
        host_out_ = Tensor<float, Cpu>(Shape{opt_.batch, embed_dim()});
    }

    void report(std::int64_t done, std::int64_t total, const char* what) const {
        if (progress_) progress_(Progress{done, total, what});
    }

    Tensor<float, Cpu> embed_text_quiet(const std::vector<std::string>& prompts) {
        auto saved = std::move(progress_);
        progress_ = nullptr;
        try {
            Tensor<float, Cpu> t = embed_text(prompts);
            progress_ = std::move(saved);
            return t;
        } catch (...) {
            progress_ = std::move(saved);
            throw;
        }
    }

    void preprocess_into(TensorView<float, Cpu> out, const ImageInput& in) const {
        if (in.kind() == ImageInput::Kind::pixels) {
            require(in.pixels() != nullptr, "Scorer: image '", in.name(), "' has no pixels");
            io::preprocess_image(out, *in.pixels(), pre_);
        } else {
            io::preprocess_image(out, in.decode(opt_.decode), pre_);
        }
    }

    // Decodes and preprocesses n <= batch images on the thread pool, encodes those that worked.
    void embed_chunk(std::span<const ImageInput> images, TensorView<float, Cpu> out /*n,E*/,
                     std::span<std::string> errors) {
        const std::int64_t n = std::int64_t(images.size());
        const TensorView<float, Cpu> px = host_pixels_.slice(0, n);
        parallel_for(n, [&](std::int64_t i) {
            try {
                preprocess_into(px.select(i), images[std::size_t(i)]);
            } catch (const std::exception& e) {
                errors[std::size_t(i)] = e.what();
            } catch (...) {
                errors[std::size_t(i)] = "unknown error";
            }
            if (!errors[std::size_t(i)].empty() && errors[std::size_t(i)].find(images[std::size_t(i)].name()) == std::string::npos)
                errors[std::size_t(i)] = images[std::size_t(i)].name() + ": " + errors[std::size_t(i)];
        });
        // Move the images that worked to the front, encode them, and scatter the rows back.
        std::vector<std::int64_t> good;
        for (std::int64_t i = 0; i < n; ++i)
            if (errors[std::size_t(i)].empty()) {
                if (std::int64_t(good.size()) != i) copy<float>(px.select(std::int64_t(good.size())), px.select(i));
                good.push_back(i);
            }
        if (good.empty()) return;
        const std::int64_t g = std::int64_t(good.size());
        const TensorView<float, Cpu> emb = host_out_.slice(0, g);
        engine_->encode_images(emb, px.slice(0, g));
        for (std::int64_t k = 0; k < g; ++k) copy<float>(out.select(good[std::size_t(k)]), emb.select(k));
    }

    ScorerOptions opt_;
    PresetRules rules_;
    io::PreprocessOptions pre_;
    std::shared_ptr<io::Tokenizer> tokenizer_;
    std::unique_ptr<detail::ScorerEngine> engine_;
    Tensor<float, Cpu> host_pixels_, host_out_;
    std::function<void(const Progress&)> progress_;
};

}  // namespace pickscore
