// pickscore/scorers.hpp — every scorer of the Pick-a-Pic paper's table behind one interface.
// pickscore-requires: pickscore::io
//
//   auto s = pickscore::load_scorer("imagereward", "ImageReward/");         // or pickscore, clip, hpsv2, aesthetic
//   pickscore::ScoreResult r = s->score("a photo of a cat", {"a.png", "b.jpg"});
//   for (const auto& x : r.images) std::printf("%s %.4f\n", x.name.c_str(), x.score);
//
// Scorers (ScorerKind) and what `ImageScore` holds for each:
//   pickscore, clip, hpsv2   pickscore::Scorer with that preset (pickscore.hpp): score, cosine, scaled,
//                            probability = softmax of scaled over the prompt's images.
//   aesthetic                the LAION aesthetic predictor (model/aesthetic.hpp) on OpenAI's CLIP
//                            ViT-L/14: score = the predicted aesthetic score (about 1 to 10). It does
//                            not read the prompt.
//   imagereward              ImageReward (model/imagereward.hpp): score = the normalised reward.
// For the last two `scaled` = `score`, `cosine` is NaN and `probability` = softmax of the score over
// the prompt's images (the scores used as logits): the probability the paper's evaluation and
// `pickscore compare`'s win rates read.
//
// Model paths:
//   pickscore, clip, hpsv2   as pickscore::Scorer (a folder with model.safetensors + config.json +
//                            tokenizer files, or a .safetensors file).
//   aesthetic                a CLIP ViT-L/14 checkpoint (folder or file; Hugging Face or open_clip /
//                            OpenAI names) with the predictor's head (layers.*) in the same file or in
//                            aesthetic_head.safetensors beside it (tools/convert_checkpoint.py --mode
//                            aesthetic writes one file).
//   imagereward              ImageReward.pt's state dict as safetensors (tools/convert_checkpoint.py
//                            --mode imagereward), a folder with model.safetensors, med_config.json and
//                            the bert-base-uncased vocab.txt (or tokenizer.json); the tokenizer may also
//                            be given by options.tokenizer.
// Preprocessing: aesthetic and imagereward use OpenAI CLIP's torchvision pipeline
// (io::ResizeMode::torchvision, bicubic resize of the shorter side, centre crop, CLIP mean/std).
// Devices: every scorer runs on the CPU or (a build with pickscore::cuda) on CUDA, in f32 or bf16;
// decoding and preprocessing stay on the CPU thread pool, the pixels of one batch go to the device.
//
// Batching: images go through the model options.batch at a time (decoded and preprocessed on the
// thread pool); an image that fails gets its message and NaN numbers, as in pickscore.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
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
#include "io/scorer_checkpoints.hpp"
#include "io/wordpiece.hpp"
#include "model/aesthetic.hpp"
#include "model/imagereward.hpp"
#include "pickscore.hpp"

namespace pickscore {

enum class ScorerKind { pickscore, clip, hpsv2, aesthetic, imagereward };

inline const char* to_string(ScorerKind k) {
    switch (k) {
        case ScorerKind::clip: return "clip";
        case ScorerKind::hpsv2: return "hpsv2";
        case ScorerKind::aesthetic: return "aesthetic";
        case ScorerKind::imagereward: return "imagereward";
        default: return "pickscore";
    }
}

inline ScorerKind parse_scorer_kind(std::string_view s) {
    for (ScorerKind k : {ScorerKind::pickscore, ScorerKind::clip, ScorerKind::hpsv2, ScorerKind::aesthetic,
                         ScorerKind::imagereward})
        if (s == to_string(k)) return k;
    if (s == "laion-aesthetic" || s == "aesthetics") return ScorerKind::aesthetic;
    if (s == "image-reward" || s == "ImageReward") return ScorerKind::imagereward;
    fail<Error>("unknown scorer '", s, "' (expected pickscore, clip, hpsv2, aesthetic or imagereward)");
}

// Whether the scorer is a CLIP model with a preset of pickscore::Scorer.
inline bool is_clip_family(ScorerKind k) {
    return k == ScorerKind::pickscore || k == ScorerKind::clip || k == ScorerKind::hpsv2;
}

inline Preset preset_of(ScorerKind k) {
    require(is_clip_family(k), "preset_of: scorer '", to_string(k), "' is not a CLIP preset");
    return k == ScorerKind::clip ? Preset::clip : k == ScorerKind::hpsv2 ? Preset::hpsv2 : Preset::pickscore;
}

// Softmax over the finite logits (NaN stays NaN); computed in double.
inline std::vector<double> softmax_of_finite(std::span<const double> logits) {
    double mx = -std::numeric_limits<double>::infinity();
    for (double x : logits)
        if (std::isfinite(x)) mx = std::max(mx, x);
    std::vector<double> p(logits.size(), std::numeric_limits<double>::quiet_NaN());
    double sum = 0;
    for (std::size_t i = 0; i < logits.size(); ++i)
        if (std::isfinite(logits[i])) sum += (p[i] = std::exp(logits[i] - mx));
    for (double& x : p)
        if (std::isfinite(x)) x /= sum;
    return p;
}

// One scorer of any kind.
class AnyScorer {
public:
    virtual ~AnyScorer() = default;
    virtual ScorerKind kind() const = 0;
    const char* name() const { return to_string(kind()); }
    // exp(logit_scale)'s log for the CLIP family; NaN for the others.
    virtual double logit_scale() const { return std::numeric_limits<double>::quiet_NaN(); }
    // What `score` is, in a few words (for --help and table headers).
    virtual const char* score_meaning() const = 0;

    // Many prompts, each with its own images; one result per query, images in the order given.
    virtual std::vector<ScoreResult> score(std::span<const Query> queries) = 0;
    std::vector<ScoreResult> score(const std::vector<Query>& queries) { return score(std::span<const Query>(queries)); }
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

    // Called after each batch of images (from the calling thread).
    void set_progress(std::function<void(const Progress&)> fn) {
        progress_ = std::move(fn);
        on_progress_changed();
    }

protected:
    virtual void on_progress_changed() {}
    void report(std::int64_t done, std::int64_t total) const {
        if (progress_) progress_(Progress{done, total, "images"});
    }
    std::function<void(const Progress&)> progress_;
};

namespace detail {

// pickscore / clip / hpsv2: pickscore::Scorer.
class ClipFamilyScorer final : public AnyScorer {
public:
    ClipFamilyScorer(ScorerKind k, Scorer s) : kind_(k), s_(std::move(s)) {}
    ScorerKind kind() const override { return kind_; }
    double logit_scale() const override { return s_.logit_scale(); }
    const char* score_meaning() const override {
        return kind_ == ScorerKind::hpsv2 ? "cosine(text, image)" : "exp(logit_scale) * cosine(text, image)";
    }
    std::vector<ScoreResult> score(std::span<const Query> queries) override { return s_.score(queries); }
    Scorer& scorer() { return s_; }

private:
    void on_progress_changed() override { s_.set_progress(progress_); }
    ScorerKind kind_;
    Scorer s_;
};

// What the aesthetic and ImageReward scorers share: decoding and torchvision preprocessing of a
// batch on the thread pool, the bookkeeping of failed images, the per-query softmax.
class PixelScorerBase : public AnyScorer {
public:
    std::vector<ScoreResult> score(std::span<const Query> queries) override {
        // Every (query, image) pair, in order.
        struct Pair {
            std::size_t q, i;
        };
        std::vector<Pair> pairs;
        for (std::size_t q = 0; q < queries.size(); ++q)
            for (std::size_t i = 0; i < queries[q].images.size(); ++i) pairs.push_back({q, i});
        std::vector<double> value(pairs.size(), std::numeric_limits<double>::quiet_NaN());
        std::vector<std::string> errors(pairs.size());
        const std::int64_t P = std::int64_t(pairs.size()), B = batch_;
        const std::int64_t S = pre_.size;
        Tensor<float, Cpu> px(Shape{B, 3, S, S});
        for (std::int64_t at = 0; at < P; at += B) {
            const std::int64_t n = std::min(B, P - at);
            parallel_for(n, [&](std::int64_t k) {
                const Pair& pr = pairs[std::size_t(at + k)];
                const ImageInput& in = queries[pr.q].images[pr.i];
                std::string& err = errors[std::size_t(at + k)];
                try {
                    if (in.kind() == ImageInput::Kind::pixels) {
                        require(in.pixels() != nullptr, "image '", in.name(), "' has no pixels");
                        io::preprocess_image(px.select(k), *in.pixels(), pre_);
                    } else {
                        io::preprocess_image(px.select(k), in.decode(decode_), pre_);
                    }
                } catch (const std::exception& e) {
                    err = e.what();
                } catch (...) {
                    err = "unknown error";
                }
                if (!err.empty() && err.find(in.name()) == std::string::npos) err = in.name() + ": " + err;
            });
            // The images that worked, moved to the front.
            std::vector<std::int64_t> good;
            std::vector<std::size_t> query_of;
            for (std::int64_t k = 0; k < n; ++k)
                if (errors[std::size_t(at + k)].empty()) {
                    if (std::int64_t(good.size()) != k) copy<float>(px.select(std::int64_t(good.size())), px.select(k));
                    good.push_back(k);
                    query_of.push_back(pairs[std::size_t(at + k)].q);
                }
            if (!good.empty()) {
                std::vector<double> out(good.size());
                run(out, px.view().slice(0, std::int64_t(good.size())), queries, query_of);
                for (std::size_t g = 0; g < good.size(); ++g) value[std::size_t(at + good[g])] = out[g];
            }
            report(at + n, P);
        }
        std::vector<ScoreResult> results(queries.size());
        std::size_t k = 0;
        for (std::size_t q = 0; q < queries.size(); ++q) {
            ScoreResult& r = results[q];
            r.prompt = queries[q].prompt;
            std::vector<double> logits;
            for (std::size_t i = 0; i < queries[q].images.size(); ++i, ++k) {
                ImageScore s;
                s.name = queries[q].images[i].name();
                s.error = errors[k];
                if (s.error.empty()) s.score = s.scaled = value[k];
                logits.push_back(s.scaled);
                r.images.push_back(std::move(s));
            }
            const std::vector<double> p = softmax_of_finite(logits);
            for (std::size_t i = 0; i < p.size(); ++i) r.images[i].probability = p[i];
        }
        return results;
    }

protected:
    PixelScorerBase(const ScorerOptions& o, std::int64_t image_size) : batch_(o.batch), decode_(o.decode) {
        require(o.batch >= 1, "load_scorer: options.batch must be at least 1, got ", o.batch);
        require(o.threads >= 0, "load_scorer: options.threads must not be negative, got ", o.threads);
        if (o.threads > 0) set_num_threads(o.threads);
        pre_.mode = o.resize.value_or(io::ResizeMode::torchvision);
        pre_.size = image_size;
    }
    // out[g] = the score of pixels[g] (float32 [n, 3, S, S]) for the prompt of query query_of[g].
    virtual void run(std::vector<double>& out, In<float, Cpu> pixels, std::span<const Query> queries,
                     const std::vector<std::size_t>& query_of) = 0;

    std::int64_t batch_;
    io::DecodeOptions decode_;
    io::PreprocessOptions pre_;
};

// Host pixels (float32) as T on device D; results from D back to the host as doubles.
template <class T, class D>
Tensor<T, D> pixels_to_device(In<float, Cpu> pixels) {
    Tensor<T, Cpu> host = to_dtype<T>(pixels);
    if constexpr (is_cpu<D>) {
        return host;
    } else {
        Tensor<T, D> dev(host.shape());
        io::detail::copy_from_host_sync<T, D>(dev, host);
        return dev;
    }
}
template <class T, class D>
void results_to_host(std::vector<double>& out, In<T, D> values /*n*/) {
    Tensor<T, Cpu> host(values.shape());
    io::detail::copy_to_host<T, D>(host, values);
    for (std::int64_t i = 0; i < host.numel(); ++i) out[std::size_t(i)] = cast<double>(host[i]);
}

template <class T, class D = Cpu>
class AestheticScorer final : public PixelScorerBase {
public:
    AestheticScorer(const std::filesystem::path& path, const ScorerOptions& o)
        : AestheticScorer(io::load_aesthetic_model<T, D>(path, {}, {.batch = o.batch}), o) {}
    ScorerKind kind() const override { return ScorerKind::aesthetic; }
    const char* score_meaning() const override { return "LAION aesthetic score (about 1-10)"; }
    const model::AestheticModel<T, D>& model() const { return *m_; }

private:
    AestheticScorer(std::unique_ptr<model::AestheticModel<T, D>> m, const ScorerOptions& o)
        : PixelScorerBase(o, m->config().clip.vision.image_size), m_(std::move(m)) {}
    void run(std::vector<double>& out, In<float, Cpu> pixels, std::span<const Query>,
             const std::vector<std::size_t>&) override {
        const Tensor<T, D> x = pixels_to_device<T, D>(pixels);
        Tensor<T, D> s(Shape{pixels.size(0)});
        m_->scores(s, x);
        results_to_host<T, D>(out, s);
    }
    std::unique_ptr<model::AestheticModel<T, D>> m_;
};

// The WordPiece tokenizer of an ImageReward checkpoint: `explicit_path` when given, else vocab.txt
// or tokenizer.json beside the weights; BLIP's [DEC] and [ENC] added.
inline io::WordPieceTokenizer find_wordpiece_tokenizer(const std::filesystem::path& model,
                                                       const std::filesystem::path& explicit_path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    io::WordPieceTokenizer t = [&] {
        if (!explicit_path.empty()) return io::WordPieceTokenizer::from_file(explicit_path);
        const fs::path dir = fs::is_directory(model, ec) ? model : model.parent_path();
        if (fs::exists(dir / "vocab.txt", ec)) return io::WordPieceTokenizer::from_vocab_txt(dir / "vocab.txt");
        if (fs::exists(dir / "tokenizer.json", ec)) return io::WordPieceTokenizer::from_tokenizer_json(dir / "tokenizer.json");
        fail<IoError>("imagereward scorer: no tokenizer found: looked for ", (dir / "vocab.txt").string(), " and ",
                      (dir / "tokenizer.json").string(), " (bert-base-uncased's; or give --tokenizer)");
    }();
    t.add_blip_tokens();
    return t;
}

template <class T, class D = Cpu>
class ImageRewardScorer final : public PixelScorerBase {
public:
    ImageRewardScorer(const std::filesystem::path& path, const ScorerOptions& o)
        : ImageRewardScorer(io::load_imagereward_model<T, D>(path, {.batch = o.batch}),
                            find_wordpiece_tokenizer(path, o.tokenizer), o) {}
    ScorerKind kind() const override { return ScorerKind::imagereward; }
    const char* score_meaning() const override { return "ImageReward reward (normalised)"; }
    const model::ImageRewardModel<T, D>& model() const { return *m_; }
    const io::WordPieceTokenizer& tokenizer() const { return tok_; }

private:
    ImageRewardScorer(std::unique_ptr<model::ImageRewardModel<T, D>> m, io::WordPieceTokenizer tok, const ScorerOptions& o)
        : PixelScorerBase(o, m->config().vision.image_size), m_(std::move(m)), tok_(std::move(tok)) {
        require<FormatError>(std::int64_t(tok_.vocab_size()) <= m_->config().text.vocab_size,
                             "imagereward scorer: the tokenizer has ", tok_.vocab_size(),
                             " ids (with [DEC] and [ENC]) but the model's vocabulary only ",
                             m_->config().text.vocab_size, ": the tokenizer does not belong to this model");
    }
    void run(std::vector<double>& out, In<float, Cpu> pixels, std::span<const Query> queries,
             const std::vector<std::size_t>& query_of) override {
        const std::int64_t n = pixels.size(0), L = m_->config().text.max_length;
        Tensor<std::int32_t, Cpu> ids(Shape{n, L});
        std::vector<std::int64_t> len(static_cast<std::size_t>(n));
        std::size_t cached = std::size_t(-1);
        std::vector<std::int32_t> row;
        std::int64_t row_len = 0;
        for (std::int64_t g = 0; g < n; ++g) {
            const std::size_t q = query_of[std::size_t(g)];
            if (q != cached) {  // consecutive images of one prompt share its ids
                row = tok_.tokenize(queries[q].prompt, int(L), true);
                row_len = tok_.length(queries[q].prompt, int(L));
                cached = q;
            }
            std::copy(row.begin(), row.end(), ids.data() + g * L);
            len[std::size_t(g)] = row_len;
        }
        const Tensor<T, D> x = pixels_to_device<T, D>(pixels);
        Tensor<T, D> r(Shape{n});
        m_->rewards(r, ids, len, x);
        results_to_host<T, D>(out, r);
    }
    std::unique_ptr<model::ImageRewardModel<T, D>> m_;
    io::WordPieceTokenizer tok_;
};

}  // namespace detail

// Loads a scorer of the given kind from `model` (see the top of the file). options.preset is set
// from the kind for the CLIP family; options.tokenizer names the tokenizer (CLIP BPE files for the
// CLIP family, bert-base-uncased's vocab.txt / tokenizer.json for imagereward; unused by aesthetic).
inline std::unique_ptr<AnyScorer> load_scorer(ScorerKind kind, const std::filesystem::path& model,
                                              ScorerOptions options = {}) {
    if (is_clip_family(kind)) {
        options.preset = preset_of(kind);
        return std::make_unique<detail::ClipFamilyScorer>(kind, Scorer(model, options));
    }
    require(options.dtype == DType::f32 || options.dtype == DType::bf16, "load_scorer: dtype must be f32 or bf16, got ",
            dtype_name(options.dtype));
    const bool half = options.dtype == DType::bf16;
    if (options.device == DeviceKind::cuda) {
#if PICKSCORE_CUDA_ENABLED
        if (kind == ScorerKind::aesthetic) {
            if (half) return std::make_unique<detail::AestheticScorer<bf16, Cuda>>(model, options);
            return std::make_unique<detail::AestheticScorer<float, Cuda>>(model, options);
        }
        if (half) return std::make_unique<detail::ImageRewardScorer<bf16, Cuda>>(model, options);
        return std::make_unique<detail::ImageRewardScorer<float, Cuda>>(model, options);
#else
        fail<Error>("load_scorer: device cuda was asked for, but this program was built without a CUDA backend "
                    "(link pickscore::cuda)");
#endif
    }
    if (kind == ScorerKind::aesthetic) {
        if (half) return std::make_unique<detail::AestheticScorer<bf16>>(model, options);
        return std::make_unique<detail::AestheticScorer<float>>(model, options);
    }
    if (half) return std::make_unique<detail::ImageRewardScorer<bf16>>(model, options);
    return std::make_unique<detail::ImageRewardScorer<float>>(model, options);
}

inline std::unique_ptr<AnyScorer> load_scorer(std::string_view kind, const std::filesystem::path& model,
                                              ScorerOptions options = {}) {
    return load_scorer(parse_scorer_kind(kind), model, std::move(options));
}

// A pair's preference probability from two scores of one scorer, with the scorer's logits: the
// probability that the first image is preferred, softmax over the two (as ScoreResult's
// `probability` over a prompt of two images).
inline double preference_probability(const ImageScore& a, const ImageScore& b) {
    const double d = b.scaled - a.scaled;
    return 1.0 / (1.0 + std::exp(d));
}

}  // namespace pickscore
