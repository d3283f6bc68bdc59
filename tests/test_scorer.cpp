// pickscore::Scorer and the `pickscore score | rank | embed` commands, on a tiny random CLIP saved
// with save_clip_checkpoint next to a small vocab.json + merges.txt in a temporary folder: the scores
// against the model's own embeddings and an independent computation of cos, exp(scale)·cos and the
// softmax; the presets; images from files, bytes and pixels; a corrupt image among good ones; batch
// sizes, batched queries, bf16; the errors; the CUDA backend on the host emulation (when linked);
// and the command-line tool as a subprocess (when the build passes PICKSCORE_CLI_PATH).
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "support/cli.hpp"
#include "support/tiny_vocab.hpp"
#include <pickscore/io/npy.hpp>
#include <pickscore/pickscore.hpp>

using namespace pickscore;
namespace fs = std::filesystem;

#ifndef PICKSCORE_TEST_DATA_DIR
#error "the build defines PICKSCORE_TEST_DATA_DIR (tests/data)"
#endif

namespace {

const fs::path kImages = fs::path(PICKSCORE_TEST_DATA_DIR) / "images";

template <class E, class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "(no exception thrown)";
}

using test::read_text;
using test::write_text;
using test::write_tiny_vocab;


// The tiny model's configuration: 28 px images in 14 px patches, a 520-id vocabulary over 16
// positions, 2 layers each, embed dim 8.
model::ClipConfig tiny_config(int vocab) {
    model::ClipConfig c = model::ClipConfig::tiny();
    c.text.vocab_size = vocab;
    c.text.eos_token_id = vocab - 1;
    c.text.context_length = 16;
    return c;
}

// A temporary folder with model.safetensors + config.json (random weights, logit_scale ln 30) and
// vocab.json + merges.txt; removed at the end of the test program.
struct TinyModelDir {
    fs::path dir;
    model::ClipConfig config;
    TinyModelDir() {
        dir = fs::temp_directory_path() / ("pickscore_test_scorer_" + std::to_string(::getpid()));
        fs::remove_all(dir);
        fs::create_directories(dir / "model");
        config = tiny_config(write_tiny_vocab(dir / "model"));
        model::ClipModel<float> m(config, {.batch = 1, .training = false});
        Rng rng(2024);
        m.init_weights(rng);
        // Larger weights than the initialisation's, so that the images' embeddings differ clearly.
        for (const auto& p : m.parameters())
            if (p.name.find("patch_embedding") != std::string::npos || p.name.find("projection") != std::string::npos)
                for (float& v : p.view) v *= 8.0f;
        m.logit_scale()[0] = float(std::log(30.0));
        io::save_clip_checkpoint(dir / "model", config, m.parameters());
    }
    ~TinyModelDir() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    fs::path model() const { return dir / "model"; }
};

const TinyModelDir& tiny() {
    static const TinyModelDir d;
    return d;
}

const std::vector<fs::path>& some_images() {
    static const std::vector<fs::path> v = test::sample_images(kImages);
    return v;
}

ScorerOptions opts(Preset p = Preset::pickscore, std::int64_t batch = 8) {
    ScorerOptions o;
    o.preset = p;
    o.batch = batch;
    return o;
}

// The scores computed independently: the model loaded on its own, inputs prepared with the io
// functions, and the arithmetic written out here (double).
struct Reference {
    std::vector<double> cosine, scaled, prob;
};
Reference reference_scores(const std::string& prompt, const std::vector<fs::path>& images, io::ResizeMode mode,
                           io::TokenizerMode tmode) {
    auto m = io::load_clip_model<float>(tiny().model(), {.batch = 1, .training = false});
    const io::Tokenizer tok = io::Tokenizer::from_vocab_merges(tiny().model() / "vocab.json",
                                                               tiny().model() / "merges.txt", tmode);
    const auto& c = m->config();
    const std::int64_t N = std::int64_t(images.size()), E = c.embed_dim, S = c.vision.image_size;
    Tensor<std::int32_t, Cpu> ids(Shape{1, c.text.context_length});
    tok.tokenize_into(prompt, std::span<std::int32_t>(ids.data(), std::size_t(ids.numel())));
    Tensor<float, Cpu> px(Shape{N, 3, S, S});
    io::PreprocessOptions po;
    po.mode = mode;
    po.size = S;
    for (std::int64_t i = 0; i < N; ++i) io::preprocess_image(px.select(i), io::load_image(images[std::size_t(i)]), po);
    // Unnormalised embeddings; the normalisation is done here.
    Tensor<float, Cpu> t(Shape{1, E}), v(Shape{N, E});
    m->encode_text(t, ids, false);
    m->encode_images(v, px, false);
    auto norm = [&](const float* x) {
        double s = 0;
        for (std::int64_t k = 0; k < E; ++k) s += double(x[k]) * double(x[k]);
        return std::sqrt(s);
    };
    const double tn = norm(t.data()), scale = std::exp(double(m->logit_scale()[0]));
    Reference r;
    for (std::int64_t i = 0; i < N; ++i) {
        double dot = 0;
        for (std::int64_t k = 0; k < E; ++k) dot += double(t[k]) * double(v.at(i, k));
        r.cosine.push_back(dot / (tn * norm(v.data() + i * E)));
        r.scaled.push_back(scale * r.cosine.back());
    }
    const double mx = *std::max_element(r.scaled.begin(), r.scaled.end());
    double sum = 0;
    for (double s : r.scaled) sum += std::exp(s - mx);
    for (double s : r.scaled) r.prob.push_back(std::exp(s - mx) / sum);
    return r;
}

}  // namespace

TEST_CASE("score_embeddings: cos, exp(scale)·cos and the softmax over the images that worked") {
    Tensor<float, Cpu> t(Shape{2}), v(Shape{3, 2});
    t[0] = 0.6f, t[1] = 0.8f;
    v.at(0, 0) = 1, v.at(0, 1) = 0;    // cos 0.6
    v.at(1, 0) = 0, v.at(1, 1) = 1;    // cos 0.8
    v.at(2, 0) = -1, v.at(2, 1) = 0;   // skipped
    const auto s = score_embeddings(t, v, {true, true, false}, std::log(10.0));
    // float inputs 0.6f/0.8f: products exact in double, so 1e-7 relative covers the float rounding
    CHECK(s[0].cosine == doctest::Approx(0.6).epsilon(1e-7));
    CHECK(s[1].scaled == doctest::Approx(8.0).epsilon(1e-7));
    CHECK(s[0].score == s[0].scaled);
    const double e0 = std::exp(6.0), e1 = std::exp(8.0);
    CHECK(s[0].probability == doctest::Approx(e0 / (e0 + e1)).epsilon(1e-7));
    CHECK(s[1].probability == doctest::Approx(e1 / (e0 + e1)).epsilon(1e-7));
    CHECK(std::isnan(s[2].cosine));
    CHECK(std::isnan(s[2].probability));
    const auto c = score_embeddings(t, v, {true, true, true}, std::log(10.0), ScoreRule::cosine);
    CHECK(c[2].score == doctest::Approx(-0.6).epsilon(1e-7));
    CHECK(c[0].probability + c[1].probability + c[2].probability == doctest::Approx(1.0));
    CHECK_THROWS_AS(score_embeddings(t, v.slice(0, 2), {true, true, true}, 0.0), ShapeError);
}

TEST_CASE("Scorer (pickscore preset) equals the model's embeddings math") {
    const auto& imgs = some_images();
    const std::string prompt = "a red cat and a dog";
    const Reference ref = reference_scores(prompt, imgs, io::ResizeMode::pickscore, io::TokenizerMode::hf);
    for (std::int64_t batch : {1, 2, 8}) {
        CAPTURE(batch);
        Scorer s(tiny().model(), opts(Preset::pickscore, batch));
        CHECK(s.embed_dim() == 8);
        CHECK(s.image_size() == 28);
        CHECK(s.tokenizer().mode() == io::TokenizerMode::hf);
        CHECK(s.logit_scale() == doctest::Approx(std::log(30.0)).epsilon(1e-6));
        const ScoreResult r = s.score(prompt, imgs);
        REQUIRE(r.images.size() == imgs.size());
        CHECK(r.failed() == 0);
        double psum = 0;
        for (std::size_t i = 0; i < imgs.size(); ++i) {
            const ImageScore& x = r.images[i];
            CHECK(x.ok());
            CHECK(x.name == imgs[i].string());
            // The same float model; batch composition may change the GEMM's summation order: a few
            // float ulps of the embeddings, far below 1e-5 of a cosine.
            CHECK(x.cosine == doctest::Approx(ref.cosine[i]).epsilon(1e-5));
            CHECK(x.scaled == doctest::Approx(ref.scaled[i]).epsilon(1e-5));
            CHECK(x.score == x.scaled);
            CHECK(x.probability == doctest::Approx(ref.prob[i]).epsilon(1e-5));
            psum += x.probability;
        }
        CHECK(psum == doctest::Approx(1.0).epsilon(1e-12));
        // The images must be told apart, or the comparisons above prove little.
        const auto [lo, hi] = std::minmax_element(ref.prob.begin(), ref.prob.end());
        CHECK(*hi - *lo > 0.02);
        // ranking: best first
        const auto rank = r.ranking();
        REQUIRE(rank.size() == imgs.size());
        for (std::size_t k = 1; k < rank.size(); ++k) CHECK(r.images[rank[k - 1]].score >= r.images[rank[k]].score);
    }
}

TEST_CASE("presets: hpsv2 scores the raw cosine of letterboxed images with the open_clip tokenizer") {
    const auto& imgs = some_images();
    const std::string prompt = "A  RED cat &amp; dog";  // differs between the two cleanings (HTML unescaping)
    Scorer hp(tiny().model(), opts(Preset::hpsv2));
    Scorer ps(tiny().model(), opts(Preset::pickscore));
    Scorer cl(tiny().model(), opts(Preset::clip));
    CHECK(hp.tokenizer().mode() == io::TokenizerMode::openclip);
    CHECK(hp.preprocess_options().mode == io::ResizeMode::hpsv2);
    CHECK(cl.rules().score == ScoreRule::scaled);
    const Reference ref = reference_scores(prompt, imgs, io::ResizeMode::hpsv2, io::TokenizerMode::openclip);
    const ScoreResult h = hp.score(prompt, imgs);
    const ScoreResult p = ps.score(prompt, imgs);
    const ScoreResult c = cl.score(prompt, imgs);
    for (std::size_t i = 0; i < imgs.size(); ++i) {
        CHECK(h.images[i].score == h.images[i].cosine);
        CHECK(h.images[i].cosine == doctest::Approx(ref.cosine[i]).epsilon(1e-5));  // as above
        CHECK(h.images[i].probability == doctest::Approx(ref.prob[i]).epsilon(1e-5));
        CHECK(c.images[i].score == p.images[i].score);  // clip: PickScore's rules
    }
    // letterbox vs crop: a 640x480 image preprocesses differently
    const Tensor<float, Cpu> a = hp.preprocess(imgs[0]), b = ps.preprocess(imgs[0]);
    double diff = 0;
    for (std::int64_t k = 0; k < a.numel(); ++k) diff = std::max(diff, double(std::abs(a[k] - b[k])));
    CHECK(diff > 0.1);
    // the letterbox's top rows are padding: (0 - mean) / std in every channel
    CHECK(a.at(0, 0, 14) == doctest::Approx((0.0 - 0.48145466) / 0.26862954).epsilon(1e-6));
    // and the scores differ from the pickscore preset's
    CHECK(std::abs(h.images[0].cosine - p.images[0].cosine) > 1e-6);
}

TEST_CASE("images from files, encoded bytes and decoded pixels give the same scores") {
    const auto& imgs = some_images();
    Scorer s(tiny().model(), opts(Preset::pickscore, 3));
    std::vector<std::vector<std::uint8_t>> bytes;
    std::vector<io::RgbImage> pixels;
    for (const auto& p : imgs) {
        bytes.push_back(io::read_file_bytes(p));
        pixels.push_back(io::load_image(p));
    }
    std::vector<ImageInput> from_bytes, from_pixels;
    for (std::size_t i = 0; i < imgs.size(); ++i) {
        from_bytes.push_back(ImageInput::encoded(bytes[i], "bytes" + std::to_string(i)));
        from_pixels.push_back(ImageInput(pixels[i], "pixels" + std::to_string(i)));
    }
    const ScoreResult f = s.score("a dog", imgs);
    // the README's form: a braced list of C strings
    const ScoreResult braced = s.score("a dog", {imgs[0].c_str(), imgs[1].c_str()});
    CHECK(braced.images.size() == 2);
    CHECK(braced.images[1].cosine == doctest::Approx(f.images[1].cosine).epsilon(1e-5));  // batch order
    const ScoreResult b = s.score("a dog", from_bytes);
    const ScoreResult x = s.score("a dog", from_pixels);
    for (std::size_t i = 0; i < imgs.size(); ++i) {
        CHECK(b.images[i].name == "bytes" + std::to_string(i));
        // identical pixels through identical batches: bit-identical
        CHECK(f.images[i].cosine == b.images[i].cosine);
        CHECK(f.images[i].cosine == x.images[i].cosine);
        CHECK(f.images[i].probability == x.images[i].probability);
    }
    // preprocessed pixels in: embed_pixels equals embed_images
    Tensor<float, Cpu> px(Shape{std::int64_t(imgs.size()), 3, 28, 28});
    for (std::size_t i = 0; i < imgs.size(); ++i) copy<float>(px.select(std::int64_t(i)), s.preprocess(imgs[i]));
    const Tensor<float, Cpu> e1 = s.embed_pixels(px);
    const ImageEmbeddings e2 = s.embed_images(from_pixels);
    for (std::int64_t k = 0; k < e1.numel(); ++k) CHECK(e1[k] == e2.embeddings[k]);
    // embed_text rows are unit vectors
    const Tensor<float, Cpu> t = s.embed_text({"a cat", "a red dog", ""});
    for (std::int64_t r = 0; r < 3; ++r) {
        double n = 0;
        for (std::int64_t k = 0; k < 8; ++k) n += double(t.at(r, k)) * double(t.at(r, k));
        CHECK(n == doctest::Approx(1.0).epsilon(1e-5));  // normalised in float
    }
}

TEST_CASE("a corrupt or missing image is reported for itself; the others are scored as without it") {
    const auto& imgs = some_images();
    const fs::path bad = tiny().dir / "corrupt.png";
    std::vector<std::uint8_t> b = io::read_file_bytes(imgs[0]);
    b.resize(b.size() / 3);  // a truncated PNG
    std::ofstream(bad, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    const fs::path missing = tiny().dir / "no_such_image.jpg";
    const std::vector<std::uint8_t> junk = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
    Scorer s(tiny().model(), opts(Preset::pickscore, 2));
    std::vector<ImageInput> in = {imgs[0], bad, imgs[1], missing, ImageInput::encoded(junk, "junk"), imgs[2]};
    const ScoreResult r = s.score("a cat", in);
    const ScoreResult clean = s.score("a cat", std::vector<ImageInput>{imgs[0], imgs[1], imgs[2]});
    REQUIRE(r.images.size() == 6);
    CHECK(r.failed() == 3);
    CHECK(!r.images[1].ok());
    CHECK(r.images[1].error.find("corrupt.png") != std::string::npos);
    CHECK(r.images[3].error.find("no_such_image.jpg") != std::string::npos);
    CHECK(r.images[4].error.find("junk") != std::string::npos);
    CHECK(std::isnan(r.images[1].score));
    const std::size_t good[] = {0, 2, 5};
    for (std::size_t k = 0; k < 3; ++k) {
        // the same images in other batch positions: equal up to float summation order
        CHECK(r.images[good[k]].cosine == doctest::Approx(clean.images[k].cosine).epsilon(1e-5));
        CHECK(r.images[good[k]].probability == doctest::Approx(clean.images[k].probability).epsilon(1e-5));
    }
    CHECK(r.ranking().size() == 3);
    const ImageEmbeddings e = s.embed_images(in);
    CHECK(e.failed() == 3);
    for (std::int64_t k = 0; k < 8; ++k) CHECK(e.embeddings.at(1, k) == 0.0f);
    // all images bad: no numbers, no exception
    const ScoreResult none = s.score("a cat", std::vector<ImageInput>{bad, missing});
    CHECK(none.failed() == 2);
    CHECK(none.ranking().empty());
}

TEST_CASE("many prompts, each with its own images, in one call") {
    const auto& imgs = some_images();
    Scorer s(tiny().model(), opts(Preset::pickscore, 2));
    std::vector<Query> q = {{"a cat", {imgs[0], imgs[1]}},
                            {"a red dog", {imgs[2], imgs[3], imgs[4]}},
                            {"", {}},
                            {"cat cat cat dog dog red red red cat dog red cat", {imgs[4]}}};
    std::vector<Progress> seen;
    s.set_progress([&](const Progress& p) { seen.push_back(p); });
    const auto rs = s.score(q);
    s.set_progress({});
    REQUIRE(rs.size() == 4);
    REQUIRE(!seen.empty());
    CHECK(seen.back().done == 6);
    CHECK(seen.back().total == 6);
    CHECK(seen.size() == 3);  // 6 images, batch 2
    for (std::size_t i = 0; i < q.size(); ++i) {
        CHECK(rs[i].prompt == q[i].prompt);
        const ScoreResult one = s.score(q[i].prompt, q[i].images);
        REQUIRE(one.images.size() == rs[i].images.size());
        for (std::size_t k = 0; k < one.images.size(); ++k) {
            CHECK(rs[i].images[k].cosine == doctest::Approx(one.images[k].cosine).epsilon(1e-5));  // batch order
            CHECK(rs[i].images[k].probability == doctest::Approx(one.images[k].probability).epsilon(1e-5));
        }
    }
    CHECK(rs[3].images[0].probability == 1.0);  // one image: softmax of one
}

TEST_CASE("bf16 scores follow f32") {
    const auto& imgs = some_images();
    ScorerOptions o = opts();
    o.dtype = DType::bf16;
    Scorer b(tiny().model(), o);
    Scorer f(tiny().model(), opts());
    CHECK(b.dtype() == DType::bf16);
    const ScoreResult rb = b.score("a red cat", imgs), rf = f.score("a red cat", imgs);
    for (std::size_t i = 0; i < imgs.size(); ++i) {
        // bf16 weights and activations (8 bits of mantissa) through 2 layers of width 16: a cosine
        // moves by a few 1e-2 at most
        CHECK(rb.images[i].cosine == doctest::Approx(rf.images[i].cosine).epsilon(0.05).scale(1.0));
    }
}

TEST_CASE("a Scorer over a model in memory (shared with its owner) and a tokenizer") {
    auto m = io::load_clip_model<float>(tiny().model(), {.batch = 2, .training = true});
    std::shared_ptr<model::ClipModel<float>> shared(std::move(m));
    io::Tokenizer tok = io::Tokenizer::from_file(tiny().model() / "vocab.json");
    Scorer s(shared, std::move(tok), opts(Preset::pickscore, 3));
    Scorer disk(tiny().model(), opts(Preset::pickscore, 3));
    const auto& imgs = some_images();
    const ScoreResult a = s.score("a dog", imgs), b = disk.score("a dog", imgs);
    for (std::size_t i = 0; i < imgs.size(); ++i) CHECK(a.images[i].cosine == doctest::Approx(b.images[i].cosine).epsilon(1e-5));
    // the Scorer reads logit_scale from the model at each call
    shared->logit_scale()[0] = float(std::log(5.0));
    CHECK(s.logit_scale() == doctest::Approx(std::log(5.0)).epsilon(1e-6));
    const ScoreResult c = s.score("a dog", imgs);
    CHECK(c.images[0].scaled == doctest::Approx(5.0 * a.images[0].cosine).epsilon(1e-5));
    // a tokenizer of another vocabulary is refused
    model::ClipConfig other = tiny().config;
    other.text.vocab_size += 10;
    other.text.eos_token_id += 10;
    auto wrong = std::make_shared<model::ClipModel<float>>(other, model::ClipOptions{.batch = 1, .training = false});
    const std::string msg = error_of<FormatError>(
        [&] { Scorer x(wrong, io::Tokenizer::from_file(tiny().model() / "vocab.json")); });
    CHECK(msg.find("end-of-text") != std::string::npos);
}

TEST_CASE("loading errors name the path and what was looked for") {
    const fs::path nowhere = tiny().dir / "no_model_here";
    std::string msg = error_of<IoError>([&] { Scorer s(nowhere); });
    CHECK(msg.find(nowhere.string()) != std::string::npos);
    CHECK(msg.find("model.safetensors") != std::string::npos);
    // a folder without weights
    fs::create_directories(tiny().dir / "empty");
    msg = error_of<IoError>([&] { Scorer s(tiny().dir / "empty"); });
    CHECK(msg.find("model.safetensors") != std::string::npos);
    // weights without a tokenizer (and no PICKSCORE_VOCAB)
    const fs::path bare = tiny().dir / "bare";
    fs::create_directories(bare);
    for (const char* f : {"model.safetensors", "config.json"})
        fs::copy_file(tiny().model() / f, bare / f, fs::copy_options::overwrite_existing);
    ::unsetenv("PICKSCORE_VOCAB");
    msg = error_of<IoError>([&] { Scorer s(bare); });
    CHECK(msg.find("tokenizer.json") != std::string::npos);
    CHECK(msg.find("PICKSCORE_VOCAB") != std::string::npos);
    // ... found through options.tokenizer or PICKSCORE_VOCAB
    ScorerOptions o;
    o.tokenizer = tiny().model() / "vocab.json";
    Scorer with_explicit(bare / "model.safetensors", o);  // a single file (config.json beside it)
    CHECK(with_explicit.embed_dim() == 8);
    ::setenv("PICKSCORE_VOCAB", (tiny().model() / "vocab.json").c_str(), 1);
    Scorer with_env(bare);
    ::unsetenv("PICKSCORE_VOCAB");
    CHECK(with_env.config().text.context_length == 16);
    // bad options
    ScorerOptions b;
    b.batch = 0;
    CHECK_THROWS_AS(Scorer(tiny().model(), b), Error);
    b.batch = 1;
    b.dtype = DType::f16;
    CHECK(error_of<Error>([&] { Scorer s(tiny().model(), b); }).find("f32 or bf16") != std::string::npos);
    CHECK_THROWS_AS(parse_preset("pickscore2"), Error);
#if !PICKSCORE_CUDA_ENABLED
    ScorerOptions g;
    g.device = DeviceKind::cuda;
    CHECK(error_of<Error>([&] { Scorer s(tiny().model(), g); }).find("without a CUDA backend") != std::string::npos);
#endif
}

#if PICKSCORE_CUDA_ENABLED
TEST_CASE("the CUDA backend (emulated on the host in CI) gives the CPU's scores") {
    const auto& imgs = some_images();
    for (DType dt : {DType::f32, DType::bf16}) {
        CAPTURE(dtype_name(dt));
        ScorerOptions o = opts(Preset::pickscore, 2);
        o.dtype = dt;
        ScorerOptions c = o;
        c.device = DeviceKind::cuda;
        Scorer cpu(tiny().model(), o), gpu(tiny().model(), c);
        CHECK(gpu.device() == DeviceKind::cuda);
        const ScoreResult a = cpu.score("a red dog", imgs), b = gpu.score("a red dog", imgs);
        for (std::size_t i = 0; i < imgs.size(); ++i) {
            // f32: different kernels' summation orders (1e-5); bf16: both round activations to 8
            // mantissa bits at different points (a few 1e-2 of a cosine at most)
            const double tol = dt == DType::f32 ? 1e-5 : 0.05;
            CHECK(b.images[i].cosine == doctest::Approx(a.images[i].cosine).epsilon(tol).scale(1.0));
        }
    }
}
#endif

// ---- the command-line tool -------------------------------------------------------------------------
#ifdef PICKSCORE_CLI_PATH
namespace {

using Run = test::ProgramRun;
using test::lines_of;

Run run_cli(const std::vector<std::string>& args) { return test::run_program(PICKSCORE_CLI_PATH, args, tiny().dir); }

std::vector<std::string> common() {
    return {"--model", tiny().model().string(), "--threads", "2", "--batch", "2"};
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

}  // namespace

TEST_CASE("pickscore score: table, --json and --csv, and the exit status when an image fails") {
    const auto& imgs = some_images();
    Scorer s(tiny().model(), opts());
    const ScoreResult want = s.score("a red cat", std::vector<fs::path>{imgs[0], imgs[1], imgs[2]});
    const std::vector<std::string> files = {imgs[0].string(), imgs[1].string(), imgs[2].string()};

    const Run table = run_cli(std::vector<std::string>{"score"} + common() + std::vector<std::string>{"--prompt", "a red cat"} + files);
    CHECK(table.status == 0);
    CHECK(table.err.empty());  // no progress bar when stderr is not a terminal
    for (std::size_t i = 0; i < 3; ++i) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.4f", want.images[i].score);
        CHECK_MESSAGE(table.out.find(buf) != std::string::npos, table.out);
        CHECK(table.out.find(files[i]) != std::string::npos);
    }

    const Run json = run_cli(std::vector<std::string>{"score", "--json"} + common() + std::vector<std::string>{"--prompt", "a red cat"} + files);
    CHECK(json.status == 0);
    const io::Json j = io::json::parse(json.out);
    CHECK(j["prompt"].as_string() == "a red cat");
    CHECK(j["preset"].as_string() == "pickscore");
    REQUIRE(j["images"].size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        const io::Json& e = j["images"][i];
        CHECK(e["image"].as_string() == files[i]);
        // JSON carries the shortest round-trip form of each double: equal to the API's numbers
        CHECK(e["score"].as_double() == want.images[i].score);
        CHECK(e["probability"].as_double() == want.images[i].probability);
        CHECK(e["cosine"].as_double() == want.images[i].cosine);
        CHECK(e["scaled"].as_double() == want.images[i].scaled);
    }

    const Run csv = run_cli(std::vector<std::string>{"score", "--csv"} + common() + std::vector<std::string>{"--prompt", "a red cat"} + files);
    CHECK(csv.status == 0);
    const auto rows = lines_of(csv.out);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0] == "prompt,image,rank,score,probability,cosine,scaled,error");
    CHECK(rows[1].starts_with("a red cat," + files[0] + ","));

    // a failing image: reported, the others printed, exit status 3
    const fs::path bad = tiny().dir / "cli_bad.jpg";
    write_text(bad, "this is not a jpeg");
    const Run partial = run_cli(std::vector<std::string>{"score", "--json"} + common() +
                                std::vector<std::string>{"--prompt", "a red cat", files[0], bad.string(), files[1]});
    CHECK(partial.status == 3);
    const io::Json p = io::json::parse(partial.out);
    REQUIRE(p["images"].size() == 3);
    CHECK(p["images"][1]["error"].as_string().find("cli_bad.jpg") != std::string::npos);
    CHECK(p["images"][0]["score"].is_number());
    CHECK(partial.err.find("cli_bad.jpg") != std::string::npos);
    CHECK(partial.err.find("1 of 3 images failed") != std::string::npos);

    // usage errors and a missing model
    CHECK(run_cli({"score", "--model", tiny().model().string(), files[0]}).status == 2);  // no --prompt
    const Run nomodel = run_cli({"score", "--model", (tiny().dir / "nothing").string(), "--prompt", "x", files[0]});
    CHECK(nomodel.status == 1);
    CHECK(nomodel.err.find((tiny().dir / "nothing").string()) != std::string::npos);
    // --progress forces the progress bar on a non-terminal
    const Run prog = run_cli(std::vector<std::string>{"score", "--progress"} + common() + std::vector<std::string>{"--prompt", "a red cat"} + files);
    CHECK(prog.status == 0);
    CHECK(prog.err.find("3/3 images") != std::string::npos);
}

TEST_CASE("pickscore rank: best first, --top, --copy-to, --manifest") {
    const auto& imgs = some_images();
    Scorer s(tiny().model(), opts());
    std::vector<std::string> files;
    for (const auto& p : imgs) files.push_back(p.string());
    const ScoreResult want = s.score("a dog", imgs);
    const auto order = want.ranking();

    const fs::path out = tiny().dir / "best";
    const Run r = run_cli(std::vector<std::string>{"rank", "--csv", "--top", "2", "--copy-to", out.string()} + common() +
                          std::vector<std::string>{"--prompt", "a dog"} + files);
    CHECK(r.status == 0);
    const auto rows = lines_of(r.out);
    REQUIRE(rows.size() == 3);  // header + top 2
    CHECK(rows[1].starts_with("a dog," + files[order[0]] + ",1,"));
    CHECK(rows[2].starts_with("a dog," + files[order[1]] + ",2,"));
    CHECK(fs::exists(out / ("1_" + imgs[order[0]].filename().string())));
    CHECK(fs::exists(out / ("2_" + imgs[order[1]].filename().string())));
    CHECK(!fs::exists(out / ("3_" + imgs[order[2]].filename().string())));

    // the manifest: JSON lines, relative paths from the manifest's folder
    const fs::path mdir = tiny().dir / "manifest";
    fs::create_directories(mdir);
    fs::copy_file(imgs[0], mdir / "a.png", fs::copy_options::overwrite_existing);
    fs::copy_file(imgs[1], mdir / "b.jpg", fs::copy_options::overwrite_existing);
    write_text(mdir / "m.jsonl", "{\"prompt\": \"a cat\", \"images\": [\"a.png\", \"b.jpg\"]}\n\n"
                                 "{\"prompt\": \"a red dog\", \"images\": [\"b.jpg\", \"" + files[2] + "\", \"a.png\"]}\n");
    const Run m = run_cli(std::vector<std::string>{"rank", "--json", "--manifest", (mdir / "m.jsonl").string()} + common());
    CHECK(m.status == 0);
    const auto ls = lines_of(m.out);
    REQUIRE(ls.size() == 2);
    const io::Json j0 = io::json::parse(ls[0]), j1 = io::json::parse(ls[1]);
    CHECK(j0["prompt"].as_string() == "a cat");
    CHECK(j1["images"].size() == 3);
    const ScoreResult w1 = s.score("a red dog", std::vector<fs::path>{imgs[1], imgs[2], imgs[0]});
    const auto o1 = w1.ranking();
    for (std::size_t k = 0; k < 3; ++k) {
        CHECK(j1["images"][k]["rank"].as_int64() == std::int64_t(k + 1));
        CHECK(j1["images"][k]["score"].as_double() == doctest::Approx(w1.images[o1[k]].score).epsilon(1e-5));
    }
    // a broken manifest line names the file and line
    write_text(mdir / "bad.jsonl", "{\"prompt\": \"a cat\", \"images\": [\"a.png\"]}\n{\"images\": 3}\n");
    const Run bad = run_cli(std::vector<std::string>{"rank", "--manifest", (mdir / "bad.jsonl").string()} + common());
    CHECK(bad.status == 1);
    CHECK(bad.err.find("bad.jsonl:2") != std::string::npos);
}

TEST_CASE("pickscore embed: .npy and .safetensors") {
    const auto& imgs = some_images();
    Scorer s(tiny().model(), opts());
    const Tensor<float, Cpu> t = s.embed_text(std::vector<std::string>{"a cat", "a dog"});
    const ImageEmbeddings e = s.embed_images(std::vector<ImageInput>{imgs[0], imgs[1]});

    const fs::path npy = tiny().dir / "img.npy";
    Run r = run_cli(std::vector<std::string>{"embed", "--out", npy.string()} + common() +
                    std::vector<std::string>{imgs[0].string(), imgs[1].string()});
    CHECK(r.status == 0);
    const Tensor<float, Cpu> got = io::load_npy(npy);
    REQUIRE(got.shape() == Shape{2, 8});
    for (std::int64_t k = 0; k < 16; ++k) CHECK(got[k] == doctest::Approx(e.embeddings[k]).epsilon(1e-5));  // batch order

    const fs::path st = tiny().dir / "both.safetensors";
    r = run_cli(std::vector<std::string>{"embed", "--out", st.string(), "--prompt", "a cat", "--prompt", "a dog"} + common() +
                std::vector<std::string>{imgs[0].string(), imgs[1].string()});
    CHECK(r.status == 0);
    const io::SafetensorsSet set = io::SafetensorsSet::open(st);
    const Tensor<float, Cpu> tt = set.load<float>("text"), ii = set.load<float>("images");
    REQUIRE(tt.shape() == Shape{2, 8});
    REQUIRE(ii.shape() == Shape{2, 8});
    for (std::int64_t k = 0; k < 16; ++k) {
        CHECK(tt[k] == doctest::Approx(t[k]).epsilon(1e-5));
        CHECK(ii[k] == doctest::Approx(e.embeddings[k]).epsilon(1e-5));
    }
    CHECK(set.metadata().at("prompts").find("a dog") != std::string::npos);
    CHECK(set.metadata().at("images").find(imgs[1].filename().string()) != std::string::npos);
    // .npy holds one kind only
    CHECK(run_cli(std::vector<std::string>{"embed", "--out", npy.string(), "--prompt", "x"} + common() +
                  std::vector<std::string>{imgs[0].string()})
              .status == 2);
    // a failed image: a zero row, exit status 3
    const fs::path bad = tiny().dir / "embed_bad.png";
    write_text(bad, "\x89PNG broken");
    r = run_cli(std::vector<std::string>{"embed", "--out", npy.string()} + common() +
                std::vector<std::string>{imgs[0].string(), bad.string()});
    CHECK(r.status == 3);
    const Tensor<float, Cpu> g2 = io::load_npy(npy);
    for (std::int64_t k = 0; k < 8; ++k) CHECK(g2.at(1, k) == 0.0f);
}

// The demo itself takes about a minute (scripts/run.sh runs it); here only its argument checks.
TEST_CASE("pickscore demo: usage errors and a missing vocabulary") {
    Run r = run_cli({"demo", "--steps", "0"});
    CHECK(r.status == 2);
    CHECK(r.err.find("--steps") != std::string::npos);
    r = run_cli({"demo", "--bogus"});
    CHECK(r.status == 2);
    CHECK(r.err.find("unknown argument '--bogus'") != std::string::npos);
    r = run_cli({"demo", "--help"});
    CHECK(r.status == 0);
    CHECK(r.out.find("--steps N") != std::string::npos);
    const fs::path missing = tiny().dir / "no-such-vocab.txt.gz";
    r = run_cli({"demo", "--vocab", missing.string()});
    CHECK(r.status == 1);
    CHECK(r.err.find(missing.string()) != std::string::npos);
}
#else
TEST_CASE("pickscore command-line tests") {
    MESSAGE("skipped: this build does not pass PICKSCORE_CLI_PATH (the examples are not built)");
}
#endif
