// Every scorer behind one interface (pickscore/scorers.hpp), the generator comparison arithmetic
// (pickscore/compare.hpp), and the `pickscore score --scorer A,B,...`, `eval` and `compare` commands
// as subprocesses (when the build passes PICKSCORE_CLI_PATH). Models: a tiny random CLIP written
// here, and the random-weight aesthetic and ImageReward parity fixtures of tests/data/scorers (with
// the WordPiece vocabulary of tests/data/tokenizer/wordpiece beside the ImageReward weights).
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "support/cli.hpp"
#include "support/tiny_vocab.hpp"
#include <pickscore/compare.hpp>
#include <pickscore/cuda/enabled.hpp>
#include <pickscore/io/checkpoint.hpp>
#include <pickscore/io/json.hpp>
#include <pickscore/io/safetensors.hpp>
#include <pickscore/scorers.hpp>

using namespace pickscore;
namespace fs = std::filesystem;

#ifndef PICKSCORE_TEST_DATA_DIR
#error "the build defines PICKSCORE_TEST_DATA_DIR (tests/data)"
#endif

namespace {

const fs::path kData = PICKSCORE_TEST_DATA_DIR;
const fs::path kImages = kData / "images";

using test::read_text;
using test::write_text;
using test::write_tiny_vocab;


// A temporary folder with three models: clip/ (tiny random CLIP), ae/ (the aesthetic fixture),
// ir/ (the ImageReward fixture + vocab.txt). Removed at the end of the program.
struct Models {
    fs::path dir;
    Models() {
        dir = fs::temp_directory_path() / ("pickscore_test_scorers_" + std::to_string(::getpid()));
        fs::remove_all(dir);
        fs::create_directories(dir / "clip");
        fs::create_directories(dir / "ae");
        fs::create_directories(dir / "ir");
        model::ClipConfig c = model::ClipConfig::tiny();
        const int vocab = write_tiny_vocab(dir / "clip");
        c.text.vocab_size = vocab;
        c.text.eos_token_id = vocab - 1;
        c.text.context_length = 16;
        model::ClipModel<float> m(c, {.batch = 1, .training = false});
        Rng rng(2025);
        m.init_weights(rng);
        for (const auto& p : m.parameters())
            if (p.name.find("patch_embedding") != std::string::npos || p.name.find("projection") != std::string::npos)
                for (float& v : p.view) v *= 8.0f;
        m.logit_scale()[0] = float(std::log(30.0));
        io::save_clip_checkpoint(dir / "clip", c, m.parameters());
        fs::copy_file(kData / "scorers" / "aesthetic" / "model.safetensors", dir / "ae" / "model.safetensors");
        for (const char* f : {"model.safetensors", "med_config.json", "imagereward_config.json"})
            fs::copy_file(kData / "scorers" / "imagereward" / f, dir / "ir" / f);
        fs::copy_file(kData / "tokenizer" / "wordpiece" / "vocab.txt", dir / "ir" / "vocab.txt");
    }
    ~Models() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    fs::path clip() const { return dir / "clip"; }
    fs::path ae() const { return dir / "ae"; }
    fs::path ir() const { return dir / "ir"; }
};

const Models& models() {
    static const Models m;
    return m;
}

const std::vector<fs::path>& some_images() {
    static const std::vector<fs::path> v = test::sample_images(kImages);
    return v;
}

ScorerOptions opts(std::int64_t batch = 2) {
    ScorerOptions o;
    o.batch = batch;
    o.threads = 2;
    return o;
}

// The aesthetic scores of images computed without the registry: the model loaded on its own,
// the torchvision preprocessing, the model's scores().
std::vector<double> aesthetic_direct(const std::vector<fs::path>& images) {
    auto m = io::load_aesthetic_model<float>(models().ae(), {}, {.batch = 1});
    io::PreprocessOptions o;
    o.mode = io::ResizeMode::torchvision;
    o.size = m->config().clip.vision.image_size;
    std::vector<double> out;
    for (const auto& p : images) {
        Tensor<float, Cpu> px(Shape{1, 3, o.size, o.size});
        io::preprocess_image(px.select(0), io::load_image(p), o);
        Tensor<float, Cpu> s(Shape{1});
        m->scores(s, px);
        out.push_back(double(s[0]));
    }
    return out;
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

TEST_CASE("scorer names parse, and unknown ones are an error naming the choices") {
    CHECK(parse_scorer_kind("aesthetic") == ScorerKind::aesthetic);
    CHECK(parse_scorer_kind("imagereward") == ScorerKind::imagereward);
    CHECK(parse_scorer_kind("hpsv2") == ScorerKind::hpsv2);
    CHECK(preset_of(ScorerKind::clip) == Preset::clip);
    CHECK_THROWS_WITH_AS(parse_scorer_kind("dalle"), doctest::Contains("expected pickscore, clip, hpsv2"), Error);
    CHECK_THROWS_AS(preset_of(ScorerKind::aesthetic), Error);
    const double p[] = {1.0, std::nan(""), 3.0};
    const auto s = softmax_of_finite(p);
    CHECK(std::isnan(s[1]));
    CHECK(s[0] + s[2] == doctest::Approx(1.0).epsilon(1e-15));
    CHECK(s[2] / s[0] == doctest::Approx(std::exp(2.0)).epsilon(1e-12));
}

TEST_CASE("aesthetic through load_scorer equals the model on torchvision pixels; a bad image is its own failure") {
    const auto& imgs = some_images();
    auto s = load_scorer("aesthetic", models().ae(), opts(2));
    CHECK(s->kind() == ScorerKind::aesthetic);
    CHECK(std::isnan(s->logit_scale()));
    const std::vector<fs::path> files = {imgs[0], imgs[1], models().dir / "missing.png", imgs[2]};
    const ScoreResult r = s->score("ignored prompt", std::vector<ImageInput>(files.begin(), files.end()));
    const std::vector<double> want = aesthetic_direct({imgs[0], imgs[1], imgs[2]});
    REQUIRE(r.images.size() == 4);
    CHECK_FALSE(r.images[2].ok());
    CHECK(r.images[2].error.find("missing.png") != std::string::npos);
    CHECK(std::isnan(r.images[2].score));
    const std::size_t ok[] = {0, 1, 3};
    double psum = 0;
    for (std::size_t k = 0; k < 3; ++k) {
        const ImageScore& x = r.images[ok[k]];
        REQUIRE(x.ok());
        // Same model, same pixels, batches of 2 vs 1: float32 summation order only.
        CHECK(x.score == doctest::Approx(want[k]).epsilon(1e-5));
        CHECK(x.scaled == x.score);
        CHECK(std::isnan(x.cosine));
        psum += x.probability;
    }
    CHECK(psum == doctest::Approx(1.0).epsilon(1e-12));
    // probability = softmax of the scores over the prompt's images.
    CHECK(r.images[0].probability / r.images[1].probability ==
          doctest::Approx(std::exp(r.images[0].score - r.images[1].score)).epsilon(1e-9));
    // bf16 follows f32 (bf16 keeps 8 bits: a few 1e-2 relative on scores of order 0.1).
    ScorerOptions o = opts(3);
    o.dtype = DType::bf16;
    auto h = load_scorer(ScorerKind::aesthetic, models().ae(), o);
    const ScoreResult rh = h->score("x", std::vector<ImageInput>{imgs[0], imgs[1]});
    for (std::size_t i = 0; i < 2; ++i) CHECK(std::abs(rh.images[i].score - want[i]) < 0.05 * std::abs(want[i]) + 0.01);
#if !PICKSCORE_CUDA_ENABLED
    o.device = DeviceKind::cuda;
    CHECK_THROWS_WITH_AS(load_scorer(ScorerKind::aesthetic, models().ae(), o), doctest::Contains("without a CUDA backend"),
                         Error);
#endif
}

#if PICKSCORE_CUDA_ENABLED
TEST_CASE("aesthetic and imagereward on the CUDA backend (emulated on the host in CI) give the CPU's scores") {
    const auto& imgs = some_images();
    const std::vector<ImageInput> in(imgs.begin(), imgs.end());
    for (ScorerKind k : {ScorerKind::aesthetic, ScorerKind::imagereward})
        for (DType dt : {DType::f32, DType::bf16}) {
            CAPTURE(to_string(k));
            CAPTURE(dtype_name(dt));
            const fs::path path = k == ScorerKind::aesthetic ? models().ae() : models().ir();
            ScorerOptions o = opts(2);
            o.dtype = dt;
            ScorerOptions c = o;
            c.device = DeviceKind::cuda;
            const ScoreResult a = load_scorer(k, path, o)->score("a red cat on a mat", in);
            const ScoreResult b = load_scorer(k, path, c)->score("a red cat on a mat", in);
            for (std::size_t i = 0; i < in.size(); ++i) {
                REQUIRE(b.images[i].ok());
                // f32: the kernels' summation orders differ (1e-5 relative); bf16: both round
                // activations to 8 mantissa bits at different points (a few 1e-2 of scores ~0.1-2).
                const double tol = dt == DType::f32 ? 1e-5 : 0.05;
                CHECK(b.images[i].score == doctest::Approx(a.images[i].score).epsilon(tol).scale(1.0));
            }
        }
}
#endif

TEST_CASE("imagereward through load_scorer reproduces the image-reward package's float32 rewards") {
    // The parity fixture's prompts and images, tokenized and preprocessed here by the scorer (the
    // package's inference_rank did the same in Python).
    const io::SafetensorsFile fio = io::SafetensorsFile::open(kData / "scorers" / "imagereward" / "io.safetensors");
    const io::Json meta = io::json::parse(fio.metadata().at("fixture"));
    const auto want = fio.load<float>("rewards_f32");
    std::vector<std::string> prompts, images;
    std::vector<std::int64_t> groups;
    for (const auto& p : meta["prompts"].as_array()) prompts.push_back(p.as_string());
    for (const auto& p : meta["images"].as_array()) images.push_back(p.as_string());
    for (const auto& g : meta["groups"].as_array()) groups.push_back(g.as_int64());
    std::vector<Query> queries(prompts.size());
    std::vector<std::pair<std::size_t, std::size_t>> where;  // fixture row → (query, image)
    for (std::size_t i = 0; i < images.size(); ++i) {
        auto& q = queries[std::size_t(groups[i])];
        q.prompt = prompts[std::size_t(groups[i])];
        where.emplace_back(std::size_t(groups[i]), q.images.size());
        q.images.emplace_back(kImages / images[i]);
    }
    auto s = load_scorer(ScorerKind::imagereward, models().ir(), opts(4));
    const auto res = s->score(queries);
    int compared = 0;
    for (std::size_t i = 0; i < images.size(); ++i) {
        CAPTURE(images[i]);
        const ImageScore& x = res[where[i].first].images[where[i].second];
        REQUIRE(x.ok());
        // f32 against the package's f32: 1e-4 relative, the CLIP issue's tolerance.
        CHECK(x.score == doctest::Approx(double(want[std::int64_t(i)])).epsilon(1e-4));
        ++compared;
    }
    CHECK(compared == std::int64_t(images.size()));
    // A tokenizer file that does not exist: an IoError naming it.
    ScorerOptions o = opts();
    o.tokenizer = kData / "tokenizer" / "wordpiece" / "missing_vocab.txt";
    CHECK_THROWS_AS(load_scorer(ScorerKind::imagereward, models().ir(), o), IoError);
}

TEST_CASE("compare::summarize: means, bootstrap intervals, win rates, agreement") {
    // Hand-checkable: one prompt, logits 2 and 0: win = sigmoid(2).
    compare::Table one(1, 2);
    one.add(0, 0, 2.0, 2.0);
    one.add(0, 1, 0.0, 0.0);
    const auto s1 = compare::summarize(one, {.bootstrap = 50, .seed = 1});
    CHECK(s1.win[0][1] == doctest::Approx(sigmoid(2.0)).epsilon(1e-15));
    CHECK(s1.win[1][0] == doctest::Approx(sigmoid(-2.0)).epsilon(1e-15));
    CHECK(std::isnan(s1.win[0][0]));
    // A single prompt: every resample is that prompt, so the interval is the mean itself.
    CHECK(s1.generators[0].low == 2.0);
    CHECK(s1.generators[0].high == 2.0);

    // 30 prompts, three generators: A better than B by 1 on average, C only on even prompts.
    const std::int64_t P = 30;
    compare::Table t(P, 3);
    Rng rng(7);
    std::vector<double> sum(3, 0.0);
    std::vector<int> n(3, 0);
    double win_ab = 0;
    for (std::int64_t p = 0; p < P; ++p) {
        const double a = 1.0 + rng.normal(), b = rng.normal();
        t.add(p, 0, a, 2 * a);  // logits need not equal scores (hpsv2: cosine vs scaled)
        t.add(p, 1, b, 2 * b);
        sum[0] += a;
        sum[1] += b;
        n[0]++;
        n[1]++;
        win_ab += sigmoid(2 * a - 2 * b);
        if (p % 2 == 0) {
            const double c1 = rng.normal(), c2 = rng.normal();
            t.add(p, 2, c1, c1);
            t.add(p, 2, c2, c2);
            sum[2] += c1 + c2;
            n[2] += 2;
        }
    }
    const auto s = compare::summarize(t, {.bootstrap = 2000, .seed = 3});
    for (int g = 0; g < 3; ++g) {
        CAPTURE(g);
        CHECK(s.generators[std::size_t(g)].images == n[std::size_t(g)]);
        CHECK(s.generators[std::size_t(g)].mean == doctest::Approx(sum[std::size_t(g)] / n[std::size_t(g)]).epsilon(1e-12));
        CHECK(s.generators[std::size_t(g)].low < s.generators[std::size_t(g)].mean);
        CHECK(s.generators[std::size_t(g)].high > s.generators[std::size_t(g)].mean);
        // The standard error of a mean of ~30 unit-variance values is ~0.18: the 95% interval is
        // about ±0.36 wide on each side; far from 0 and far from the whole range.
        CHECK(s.generators[std::size_t(g)].high - s.generators[std::size_t(g)].low > 0.2);
        CHECK(s.generators[std::size_t(g)].high - s.generators[std::size_t(g)].low < 2.0);
    }
    CHECK(s.generators[2].prompts == 15);
    CHECK(s.win[0][1] == doctest::Approx(win_ab / double(P)).epsilon(1e-12));
    for (std::size_t a = 0; a < 3; ++a)
        for (std::size_t b = 0; b < 3; ++b)
            if (a != b) CHECK(s.win[a][b] + s.win[b][a] == doctest::Approx(1.0).epsilon(1e-12));
    CHECK(s.win[0][1] > 0.6);
    CHECK(s.win_prompts[0][2] == 15);
    // Same seed, same intervals; another seed, other intervals.
    const auto again = compare::summarize(t, {.bootstrap = 2000, .seed = 3});
    CHECK(again.generators[0].low == s.generators[0].low);
    const auto other = compare::summarize(t, {.bootstrap = 2000, .seed = 4});
    CHECK(other.generators[0].low != s.generators[0].low);
    // Agreement: a summary with itself 1, with its generators' means reversed -1.
    CHECK(compare::ranking_agreement(s, s) == doctest::Approx(1.0));
    compare::Summary rev = s;
    for (auto& g : rev.generators) g.mean = -g.mean;
    CHECK(compare::ranking_agreement(s, rev) == doctest::Approx(-1.0));
    CHECK_THROWS_AS(t.add(0, 3, 0.0, 0.0), Error);
}

#ifdef PICKSCORE_CLI_PATH
namespace {

using Run = test::ProgramRun;
using test::lines_of;

Run run_cli(const std::vector<std::string>& args) { return test::run_program(PICKSCORE_CLI_PATH, args, models().dir); }

std::vector<std::string> split_csv_simple(const std::string& line) {  // no quoted fields here
    std::vector<std::string> v;
    std::string cur;
    for (char c : line) {
        if (c == ',') {
            v.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    v.push_back(cur);
    return v;
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

const std::vector<std::string> kThree = {"--scorer", "pickscore,aesthetic,imagereward", "--threads", "2", "--batch", "2"};

std::string three_models() {
    return models().clip().string() + "," + models().ae().string() + "," + models().ir().string();
}

}  // namespace

TEST_CASE("pickscore score --scorer A,B,C: one column per scorer, equal to each scorer alone") {
    const auto& imgs = some_images();
    const std::vector<std::string> files = {imgs[0].string(), imgs[1].string(), imgs[3].string()};
    const Run r = run_cli(std::vector<std::string>{"score", "--csv", "--prompt", "a red cat", "--model", three_models()} +
                          kThree + files);
    INFO(r.err);
    REQUIRE(r.status == 0);
    const auto lines = lines_of(r.out);
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == "prompt,image,pickscore,aesthetic,imagereward,error");
    std::vector<ImageInput> in(files.begin(), files.end());
    const ScoreResult ps = load_scorer(ScorerKind::pickscore, models().clip(), opts())->score("a red cat", in);
    const ScoreResult ae = load_scorer(ScorerKind::aesthetic, models().ae(), opts())->score("a red cat", in);
    const ScoreResult ir = load_scorer(ScorerKind::imagereward, models().ir(), opts())->score("a red cat", in);
    for (std::size_t i = 0; i < files.size(); ++i) {
        const auto f = split_csv_simple(lines[i + 1]);
        REQUIRE(f.size() == 6);
        CHECK(f[1] == files[i]);
        // %.9g printing: 1e-8 relative.
        CHECK(std::stod(f[2]) == doctest::Approx(ps.images[i].score).epsilon(1e-7));
        CHECK(std::stod(f[3]) == doctest::Approx(ae.images[i].score).epsilon(1e-7));
        CHECK(std::stod(f[4]) == doctest::Approx(ir.images[i].score).epsilon(1e-7));
        CHECK(f[5].empty());
    }
    // NAME=PATH pairs in any order give the same; --json has the scores by name.
    const Run j = run_cli(std::vector<std::string>{"score", "--json", "--prompt", "a red cat", "--model",
                                                   "imagereward=" + models().ir().string(), "--model",
                                                   "aesthetic=" + models().ae().string() + ",pickscore=" + models().clip().string()} +
                          kThree + files);
    INFO(j.err);
    REQUIRE(j.status == 0);
    const io::Json doc = io::json::parse(lines_of(j.out).at(0));
    CHECK(doc["scorers"].size() == 3);
    const auto& first = doc["images"].as_array().at(0);
    CHECK(first["scores"]["aesthetic"].as_double() == doctest::Approx(ae.images[0].score).epsilon(1e-12));
    CHECK(first["scores"]["imagereward"].as_double() == doctest::Approx(ir.images[0].score).epsilon(1e-12));
    CHECK(first["probabilities"]["pickscore"].as_double() == doctest::Approx(ps.images[0].probability).epsilon(1e-12));
    // A failed image: exit 3, no numbers, the error in its row.
    const Run part = run_cli(std::vector<std::string>{"score", "--csv", "--prompt", "x", "--model", three_models()} + kThree +
                             std::vector<std::string>{files[0], (models().dir / "nope.png").string()});
    CHECK(part.status == 3);
    CHECK(lines_of(part.out).at(2).find("nope.png") != std::string::npos);
    // All five presets of the paper's table from one command (clip and hpsv2 read the tiny CLIP too:
    // hpsv2's column is a cosine of letterboxed images, clip's equals pickscore's on the same model).
    const Run five = run_cli({"score", "--csv", "--scorer", "pickscore,clip,hpsv2,aesthetic,imagereward", "--model",
                              models().clip().string() + "," + models().clip().string() + "," + models().clip().string() +
                                  "," + models().ae().string() + "," + models().ir().string(),
                              "--prompt", "a red cat", files[0], files[1]});
    INFO(five.err);
    REQUIRE(five.status == 0);
    const auto fl = lines_of(five.out);
    REQUIRE(fl.size() == 3);
    CHECK(fl[0] == "prompt,image,pickscore,clip,hpsv2,aesthetic,imagereward,error");
    const ScoreResult hp = load_scorer(ScorerKind::hpsv2, models().clip(), opts())->score("a red cat", in);
    for (std::size_t i = 0; i < 2; ++i) {
        const auto f = split_csv_simple(fl[i + 1]);
        REQUIRE(f.size() == 8);
        CHECK(std::stod(f[3]) == doctest::Approx(ps.images[i].score).epsilon(1e-7));
        CHECK(std::stod(f[4]) == doctest::Approx(hp.images[i].score).epsilon(1e-7));
        CHECK(std::abs(std::stod(f[4])) <= 1.0);  // a cosine
        CHECK(std::stod(f[6]) == doctest::Approx(ir.images[i].score).epsilon(1e-7));
    }
    // One scorer with its model named: --model aesthetic=PATH.
    const Run named = run_cli({"score", "--csv", "--scorer", "aesthetic", "--model", "aesthetic=" + models().ae().string(),
                               "--prompt", "x", files[0]});
    REQUIRE(named.status == 0);
    CHECK(std::stod(split_csv_simple(lines_of(named.out).at(1)).at(3)) == doctest::Approx(ae.images[0].score).epsilon(1e-7));
    // Table: a header naming the scorers.
    const Run t = run_cli(std::vector<std::string>{"score", "--prompt", "a dog", "--model", three_models()} + kThree + files);
    CHECK(t.status == 0);
    CHECK(t.out.find("pickscore    aesthetic  imagereward") != std::string::npos);
    // Usage errors: paths and scorers that do not pair up; rank with several scorers.
    CHECK(run_cli(std::vector<std::string>{"score", "--prompt", "x", "--model", models().clip().string()} + kThree + files)
              .status == 2);
    CHECK(run_cli(std::vector<std::string>{"rank", "--prompt", "x", "--model", three_models()} + kThree + files).status == 2);
    CHECK(run_cli({"score", "--scorer", "nosuch", "--model", "x", "--prompt", "x", files[0]}).status == 2);
}

TEST_CASE("pickscore rank --scorer aesthetic: sorted by the aesthetic score") {
    const auto& imgs = some_images();
    std::vector<std::string> files;
    for (const auto& p : imgs) files.push_back(p.string());
    const Run r = run_cli(std::vector<std::string>{"rank", "--csv", "--scorer", "aesthetic", "--model", models().ae().string(),
                                                   "--prompt", "x"} + files);
    INFO(r.err);
    REQUIRE(r.status == 0);
    const auto lines = lines_of(r.out);
    REQUIRE(lines.size() == files.size() + 1);
    const std::vector<double> want = aesthetic_direct(imgs);
    double prev = INFINITY;
    for (std::size_t k = 1; k < lines.size(); ++k) {
        const auto f = split_csv_simple(lines[k]);
        const double s = std::stod(f[3]);
        CHECK(s <= prev);
        prev = s;
        const std::size_t i = std::size_t(std::find(files.begin(), files.end(), f[1]) - files.begin());
        REQUIRE(i < files.size());
        CHECK(s == doctest::Approx(want[i]).epsilon(1e-5));
    }
}

TEST_CASE("pickscore eval: threshold chosen on --val, accuracy on --split, for each scorer") {
    // Pairs of the five images labelled by the aesthetic scorer's own preference (plus one tie):
    // at threshold 0 the aesthetic scorer is right on every non-tie and earns 0.5 on the tie.
    const auto& imgs = some_images();
    const std::vector<double> s = aesthetic_direct(imgs);
    const fs::path d = models().dir / "eval";
    fs::create_directories(d);
    std::string direct, inverted;
    int n = 0;
    for (std::size_t i = 0; i < imgs.size(); ++i)
        for (std::size_t j = i + 1; j < imgs.size(); ++j) {
            const int winner = s[i] > s[j] ? 0 : 1;
            const std::string pair = "\"prompt\": \"p" + std::to_string(n) + "\", \"images\": [\"" + imgs[i].string() +
                                     "\", \"" + imgs[j].string() + "\"]";
            direct += "{" + pair + ", \"label\": " + std::to_string(winner) + "}\n";
            inverted += "{" + pair + ", \"label\": " + std::to_string(1 - winner) + "}\n";
            ++n;
        }
    direct += "{\"prompt\": \"tie\", \"images\": [\"" + imgs[0].string() + "\", \"" + imgs[1].string() + "\"], \"label\": \"tie\"}\n";
    write_text(d / "direct.jsonl", direct);
    write_text(d / "inverted.jsonl", inverted);
    const double N = double(n + 1);

    // No --val: the threshold is chosen on the test set itself: 0, and (n + 0.5) / (n + 1).
    Run r = run_cli({"eval", "--json", "--scorer", "aesthetic", "--model", models().ae().string(), "--split",
                     (d / "direct.jsonl").string(), "--threads", "2"});
    INFO(r.err);
    REQUIRE(r.status == 0);
    io::Json j = io::json::parse(r.out);
    const io::Json& row = j["scorers"].as_array().at(0);
    CHECK(row["scorer"].as_string() == "aesthetic");
    CHECK(row["examples"].as_int64() == n + 1);
    CHECK(row["threshold"].as_double() == 0.0);
    CHECK(row["accuracy"].as_double() == doctest::Approx((double(n) + 0.5) / N).epsilon(1e-12));

    // --val with every label inverted: any decided prediction is wrong there, so the chosen
    // threshold makes every prediction a tie (accuracy 0.5 on val); on the test set all ties earn
    // 0.5 each except the tie example, which earns 1.
    r = run_cli({"eval", "--json", "--scorer", "aesthetic,imagereward", "--model",
                 models().ae().string() + "," + models().ir().string(), "--split", (d / "direct.jsonl").string(), "--val",
                 (d / "inverted.jsonl").string(), "--threads", "2"});
    INFO(r.err);
    REQUIRE(r.status == 0);
    j = io::json::parse(r.out);
    REQUIRE(j["scorers"].size() == 2);
    const io::Json& ae = j["scorers"].as_array().at(0);
    CHECK(ae["val_accuracy"].as_double() == doctest::Approx(0.5).epsilon(1e-12));
    CHECK(ae["threshold"].as_double() > 0.0);
    CHECK(ae["val_examples"].as_int64() == n);
    CHECK(ae["accuracy"].as_double() == doctest::Approx((0.5 * double(n) + 1.0) / N).epsilon(1e-12));
    const io::Json& ir = j["scorers"].as_array().at(1);
    CHECK(ir["scorer"].as_string() == "imagereward");
    CHECK(ir["examples"].as_int64() == n + 1);
    CHECK(ir["accuracy"].as_double() >= 0.0);
    CHECK(ir["accuracy"].as_double() <= 1.0);
    // The table names the split and where the threshold came from.
    r = run_cli({"eval", "--scorer", "aesthetic", "--model", models().ae().string(), "--split", (d / "direct.jsonl").string(),
                 "--val", (d / "inverted.jsonl").string()});
    CHECK(r.status == 0);
    CHECK(r.out.find("tie threshold chosen on: " + (d / "inverted.jsonl").string()) != std::string::npos);
    CHECK(r.out.find("aesthetic") != std::string::npos);
    CHECK(run_cli({"eval", "--scorer", "aesthetic", "--model", models().ae().string()}).status == 2);  // no --split
}

TEST_CASE("pickscore compare: a generator that always has the better image wins, with intervals around the means") {
    const auto& imgs = some_images();
    const std::vector<double> s = aesthetic_direct(imgs);
    std::vector<std::size_t> order(imgs.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s[a] < s[b]; });
    // Per prompt: "good" gets a better image than "bad"; "mid" is on the first two prompts only.
    const std::vector<std::pair<std::size_t, std::size_t>> picks = {{4, 0}, {3, 1}, {2, 0}, {4, 1}, {3, 2}};
    const fs::path d = models().dir / "compare";
    fs::create_directories(d);
    std::string m;
    double good_sum = 0, bad_sum = 0, win = 0;
    for (std::size_t p = 0; p < picks.size(); ++p) {
        const std::size_t g = order[picks[p].first], b = order[picks[p].second];
        const std::string prompt = "\"prompt\": \"prompt " + std::to_string(p) + "\"";
        m += "{" + prompt + ", \"generator\": \"good\", \"image\": \"" + imgs[g].string() + "\"}\n";
        m += "{" + prompt + ", \"generator\": \"bad\", \"image\": \"" + imgs[b].string() + "\"}\n";
        if (p < 2) m += "{" + prompt + ", \"generator\": \"mid\", \"images\": [\"" + imgs[order[2]].string() + "\"]}\n";
        good_sum += s[g];
        bad_sum += s[b];
        win += sigmoid(s[g] - s[b]);
    }
    write_text(d / "m.jsonl", m);
    const Run r = run_cli({"compare", "--json", "--manifest", (d / "m.jsonl").string(), "--scorer", "aesthetic,imagereward",
                           "--model", models().ae().string() + "," + models().ir().string(), "--bootstrap", "500",
                           "--threads", "2"});
    INFO(r.err);
    REQUIRE(r.status == 0);
    const io::Json j = io::json::parse(r.out);
    CHECK(j["prompts"].as_int64() == 5);
    CHECK(j["images"].as_int64() == 12);
    const auto& gens = j["generators"].as_array();
    REQUIRE(gens.size() == 3);
    CHECK(gens[0].as_string() == "good");
    CHECK(gens[1].as_string() == "bad");
    const io::Json& ae = j["scorers"].as_array().at(0);
    CHECK(ae["scorer"].as_string() == "aesthetic");
    const auto& g = ae["generators"].as_array();
    // Means equal the direct scores' means (f32 model, batches differ: 1e-5).
    CHECK(g[0]["mean"].as_double() == doctest::Approx(good_sum / 5).epsilon(1e-5));
    CHECK(g[1]["mean"].as_double() == doctest::Approx(bad_sum / 5).epsilon(1e-5));
    CHECK(g[2]["images"].as_int64() == 2);
    for (const auto& x : g) {
        CHECK(x["ci_low"].as_double() <= x["mean"].as_double());
        CHECK(x["ci_high"].as_double() >= x["mean"].as_double());
    }
    CHECK(g[0]["ci_low"].as_double() < g[0]["ci_high"].as_double());  // 5 different prompts: a real interval
    const auto& w = ae["win_rates"].as_array();
    CHECK(w[0].as_array()[0].is_null());
    CHECK(w[0].as_array()[1].as_double() == doctest::Approx(win / 5).epsilon(1e-5));
    CHECK(w[0].as_array()[1].as_double() > 0.5);
    for (std::size_t a = 0; a < 3; ++a)
        for (std::size_t b = 0; b < 3; ++b)
            if (a != b)
                CHECK(w[a].as_array()[b].as_double() + w[b].as_array()[a].as_double() == doctest::Approx(1.0).epsilon(1e-12));
    const auto& rho = j["spearman"].as_array();
    REQUIRE(rho.size() == 2);
    CHECK(rho[0].as_array()[0].as_double() == doctest::Approx(1.0));
    CHECK(std::abs(rho[0].as_array()[1].as_double()) <= 1.0 + 1e-12);
    CHECK(rho[0].as_array()[1].as_double() == doctest::Approx(rho[1].as_array()[0].as_double()));
    // The table, and a bad manifest line named by file and line.
    const Run t = run_cli({"compare", "--manifest", (d / "m.jsonl").string(), "--scorer", "aesthetic", "--model",
                           models().ae().string(), "--bootstrap", "100"});
    CHECK(t.status == 0);
    CHECK(t.out.find("win rates (row beats column)") != std::string::npos);
    CHECK(t.out.find("good") != std::string::npos);
    write_text(d / "bad.jsonl", "{\"prompt\": \"x\", \"image\": \"a.png\"}\n");
    const Run bad = run_cli({"compare", "--manifest", (d / "bad.jsonl").string(), "--scorer", "aesthetic", "--model",
                             models().ae().string()});
    CHECK(bad.status == 1);
    CHECK(bad.err.find("bad.jsonl:1") != std::string::npos);
}
#else
TEST_CASE("pickscore eval/compare command-line tests") {
    MESSAGE("skipped: this build does not pass PICKSCORE_CLI_PATH (the examples are not built)");
}
#endif
