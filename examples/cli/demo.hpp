// examples/cli/demo.hpp — the `pickscore demo` command: the offline end-to-end demonstration.
//
//     pickscore demo [--steps N] [--batch N] [--seed S] [--out DIR] [--threads N] [--vocab PATH]
//
// No download, no GPU: it builds a small CLIP, fine-tunes it with PickScore's recipe
// (train::Trainer: the preference loss, AdamW, warmup and decay, validation) on a preference set it
// draws itself (data/synthetic.hpp: coloured shapes, prompts that describe them, the matching image
// preferred), saves the model the way the trainer exports every model (model.safetensors +
// config.json, with the tokenizer vocabulary beside them), loads that folder with pickscore::Scorer —
// the class and code path that score the real PickScore_v1 — and scores held-out images: a ranking
// table for a few prompts and the accuracy on held-out preference pairs, before and after.
// With --out DIR the model and the ranked images stay in DIR, so `pickscore score` and
// `pickscore rank --model DIR/model ...` can be tried on them. Needs the pickscore::io target.
//
// Exit status: 0 when the run finished with a held-out accuracy well above chance (>= 0.75; the
// default run reaches about 0.94), 1 on an error (no vocabulary, an unwritable --out, ...) or when
// the model did not learn, 2 on a usage error.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <pickscore/core/random.hpp>
#include <pickscore/core/threads.hpp>
#include <pickscore/data/dataset.hpp>
#include <pickscore/data/loader.hpp>
#include <pickscore/data/png.hpp>
#include <pickscore/data/synthetic.hpp>
#include <pickscore/io/tokenizer.hpp>
#include <pickscore/model/clip.hpp>
#include <pickscore/pickscore.hpp>
#include <pickscore/train/comm.hpp>
#include <pickscore/train/trainer.hpp>

#include "tokenize.hpp"  // pickscore_cli::default_vocab_path

inline constexpr const char* demo_usage =
    "usage: pickscore demo [--steps N] [--batch N] [--seed S] [--out DIR] [--threads N] [--vocab PATH]\n"
    "  the offline end-to-end demonstration: fine-tune a small CLIP on a preference set the program draws\n"
    "  (coloured shapes, prompts that describe them), then score and rank held-out images with\n"
    "  pickscore::Scorer and print the held-out accuracy. About a minute on 2 cores; no download.\n"
    "  --steps N      optimizer steps (default 480)\n"
    "  --batch N      preference pairs per step (default 32)\n"
    "  --seed S       seed of the data, the initial weights and the data order (default 1)\n"
    "  --out DIR      keep the fine-tuned model (DIR/model) and the ranked images (DIR/images) there\n"
    "                 (default: a temporary folder, removed at the end)\n"
    "  --threads N    CPU threads (default: all cores)\n"
    "  --vocab PATH   CLIP's bpe_simple_vocab_16e6.txt.gz (or tokenizer.json). Default: $PICKSCORE_VOCAB,\n"
    "                 else beside the pickscore executable or in ../share/pickscore/ relative to it,\n"
    "                 else shared/data/ in a folder above the executable or ../shared/data/ from the\n"
    "                 current folder. scripts/run.sh fetches it when none is found.\n";

namespace pickscore_cli {

// The demonstration's vocabulary: tokenize's search (--vocab, $PICKSCORE_VOCAB, beside the
// executable, ../share/pickscore), then shared/data/ above the executable and ../shared/data/ from
// the current folder (a checkout beside the project's shared data).
inline std::filesystem::path demo_vocab_path(std::string& tried) {
    namespace fs = std::filesystem;
    fs::path p = default_vocab_path(tried);
    if (!p.empty()) return p;
    std::error_code ec;
    std::vector<fs::path> dirs;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        fs::path a = exe.parent_path();
        for (int up = 0; up < 4 && a.has_relative_path(); ++up, a = a.parent_path()) dirs.push_back(a / "shared" / "data");
    }
    dirs.push_back(fs::current_path(ec) / ".." / "shared" / "data");
    for (const fs::path& d : dirs) {
        const fs::path f = (d / "bpe_simple_vocab_16e6.txt.gz").lexically_normal();
        tried += "  " + f.string() + "\n";
        if (fs::exists(f, ec)) return f;
    }
    return {};
}

// The demonstration's model: a CLIP of a few million parameters for 32 px images of 8 px patches
// and prompts of up to 16 tokens, with CLIP's real vocabulary (49408 ids) and end-of-text id.
inline pickscore::model::ClipConfig demo_config(std::int64_t width, std::int64_t layers) {
    pickscore::model::ClipConfig c;
    c.name = "pickscore-demo";
    c.vision = {.image_size = 32, .patch_size = 8, .width = width, .layers = layers, .heads = 4, .mlp_width = 4 * width};
    c.text = {.vocab_size = 49408, .context_length = 16, .width = width, .layers = layers, .heads = 4,
              .mlp_width = 4 * width, .eos_token_id = 49407};
    c.embed_dim = 64;
    return c;
}

// What a demonstration run does: the command's flags, and the recipe's knobs.
struct DemoSettings {
    long long steps = 480, batch = 32, seed = 1, threads = 0;
    std::filesystem::path out, vocab;
    std::int64_t width = 96, layers = 3;
    double lr = 2e-3;
    std::int64_t train_pairs = 2000;
    // How a training pair's other image differs: shape colour, shape, background, colours swapped
    // (all four, so that the ranking tables, which show one of each, are learned).
    std::array<double, 4> mismatch_weights = {1.0, 1.0, 1.0, 1.0};
};

// A prompt and a few candidate images for the ranking table: the image that matches, then one that
// differs in the shape's colour, the shape, the background, and the two colours swapped — in a
// shuffled order.
struct DemoCandidates {
    std::string prompt;
    std::vector<pickscore::data::SyntheticScene> scenes;
    std::vector<pickscore::io::RgbImage> images;
    std::size_t match = 0;  // which one matches the prompt
};

inline DemoCandidates demo_candidates(const pickscore::data::SyntheticScene& want, std::int64_t size,
                                      pickscore::Rng& rng) {
    namespace data = pickscore::data;
    DemoCandidates c;
    c.prompt = data::describe(want);
    std::vector<data::SyntheticScene> s{data::place_scene(want.shape, want.color, want.background, rng)};
    for (int kind = 0; kind < 4; ++kind) s.push_back(data::mismatch(want, kind, rng));
    std::vector<std::size_t> order(s.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (std::size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[std::size_t(rng.below(i + 1))]);
    for (std::size_t i = 0; i < order.size(); ++i) {
        if (order[i] == 0) c.match = i;
        c.scenes.push_back(s[order[i]]);
        c.images.push_back(data::draw_scene(s[order[i]], size, rng));
    }
    return c;
}

// Accuracy of a scorer on preference pairs with a preferred image: the fraction where the preferred
// image gets the higher score (ties in the labels are not counted; the demo's test pairs have none).
inline double demo_pair_accuracy(pickscore::Scorer& scorer, const std::vector<pickscore::data::Example>& pairs,
                                 std::int64_t& counted) {
    std::vector<pickscore::Query> queries;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
        const auto& e = pairs[i];
        if (e.label0 == e.label1) continue;
        queries.push_back({e.caption,
                           {pickscore::ImageInput::encoded(e.image0, "test " + std::to_string(i) + " image 0"),
                            pickscore::ImageInput::encoded(e.image1, "test " + std::to_string(i) + " image 1")}});
    }
    const std::vector<pickscore::ScoreResult> r = scorer.score(queries);
    std::int64_t right = 0, n = 0;
    std::size_t q = 0;
    for (const auto& e : pairs) {
        if (e.label0 == e.label1) continue;
        const auto& im = r[q++].images;
        if (!im[0].ok() || !im[1].ok()) continue;
        ++n;
        if ((im[0].score > im[1].score) == (e.label0 > e.label1)) ++right;
    }
    counted = n;
    return n ? double(right) / double(n) : 0.0;
}

inline std::string demo_slug(const std::string& prompt) {
    std::string s;
    for (char ch : prompt) s += (ch == ' ') ? '-' : ch;
    return s;
}

inline double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace pickscore_cli

inline int run_demo(pickscore_cli::DemoSettings d);

// argv[0] is the command's name ("demo"); the arguments follow.
inline int cmd_demo(int argc, char** argv) {
    namespace fs = std::filesystem;
    auto usage_error = [](const std::string& msg) {
        std::fprintf(stderr, "pickscore demo: %s\n%s", msg.c_str(), demo_usage);
        return 2;
    };
    auto number = [&](int& i, const char* flag, long long lo, long long hi, long long& out) {
        if (i + 1 >= argc) return false;
        char* end = nullptr;
        out = std::strtoll(argv[++i], &end, 10);
        (void)flag;
        return end && !*end && out >= lo && out <= hi;
    };
    pickscore_cli::DemoSettings d;
    long long& steps = d.steps;
    long long& batch = d.batch;
    long long& seed = d.seed;
    long long& threads = d.threads;
    fs::path& out_arg = d.out;
    fs::path& vocab = d.vocab;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            std::fputs(demo_usage, stdout);
            return 0;
        } else if (a == "--steps") {
            if (!number(i, "--steps", 1, 1000000, steps)) return usage_error("--steps needs a number >= 1");
        } else if (a == "--batch") {
            if (!number(i, "--batch", 2, 4096, batch)) return usage_error("--batch needs a number >= 2");
        } else if (a == "--seed") {
            if (!number(i, "--seed", 0, (1LL << 62), seed)) return usage_error("--seed needs a number >= 0");
        } else if (a == "--threads") {
            if (!number(i, "--threads", 1, 1024, threads)) return usage_error("--threads needs a number >= 1");
        } else if (a == "--out") {
            if (i + 1 >= argc) return usage_error("--out needs a folder");
            out_arg = argv[++i];
        } else if (a == "--vocab") {
            if (i + 1 >= argc) return usage_error("--vocab needs a path");
            vocab = argv[++i];
        } else {
            return usage_error("unknown argument '" + std::string(a) + "'");
        }
    }
    return run_demo(d);
}

// The demonstration itself (cmd_demo parses its flags into DemoSettings).
inline int run_demo(pickscore_cli::DemoSettings d) {
    namespace fs = std::filesystem;
    namespace ps = pickscore;
    namespace data = pickscore::data;
    using pickscore_cli::seconds_since;
    const long long steps = d.steps, batch = d.batch, seed = d.seed, threads = d.threads;
    const fs::path out_arg = d.out;
    fs::path vocab = d.vocab;
    const auto t_start = std::chrono::steady_clock::now();
    if (threads > 0) ps::set_num_threads(int(threads));

    // ---- the vocabulary ---------------------------------------------------------------------------
    if (vocab.empty()) {
        std::string tried;
        vocab = pickscore_cli::demo_vocab_path(tried);
        if (vocab.empty()) {
            std::fprintf(stderr,
                         "pickscore demo: CLIP's tokenizer vocabulary (bpe_simple_vocab_16e6.txt.gz) was not found; "
                         "looked in:\n%s"
                         "Get it with scripts/run.sh (which fetches it), or by hand from the open_clip_torch wheel:\n"
                         "  python3 -m pip download open_clip_torch==3.3.0 --no-deps -d /tmp/oc\n"
                         "  unzip -j /tmp/oc/open_clip_torch-3.3.0-*.whl open_clip/bpe_simple_vocab_16e6.txt.gz -d DIR\n"
                         "then pass --vocab DIR/bpe_simple_vocab_16e6.txt.gz or set PICKSCORE_VOCAB.\n",
                         tried.c_str());
            return 1;
        }
    }
    const auto tok = std::make_shared<const ps::io::Tokenizer>(ps::io::Tokenizer::from_file(vocab));

    // ---- the output folder ------------------------------------------------------------------------
    const bool keep = !out_arg.empty();
    const fs::path out = keep ? out_arg : fs::temp_directory_path() / ("pickscore-demo-" + std::to_string(::getpid()));
    struct Cleanup {
        fs::path dir;
        ~Cleanup() {
            std::error_code ec;
            if (!dir.empty()) fs::remove_all(dir, ec);
        }
    } cleanup{keep ? fs::path() : out};
    fs::create_directories(out);
    const fs::path model_dir = out / "model", image_dir = out / "images";

    // ---- the data: drawn, with separate seeds for training, validation and test ---------------------
    const ps::model::ClipConfig cfg = pickscore_cli::demo_config(d.width, d.layers);
    const std::int64_t S = cfg.vision.image_size;
    const auto t_data = std::chrono::steady_clock::now();
    data::SyntheticOptions so;
    so.image_size = S;
    so.seed = std::uint64_t(seed);
    so.mismatch_weights = d.mismatch_weights;
    const std::int64_t n_train = std::max<std::int64_t>(d.train_pairs, 4 * batch);
    const data::Dataset train_set = data::Dataset::from_examples(data::make_synthetic_preferences(n_train, data::Split::train, so));
    data::SyntheticOptions ho = so;  // held out: other draws, and no ties (every pair has a right answer)
    ho.tie_fraction = 0.0;
    ho.seed = std::uint64_t(seed) + 1000;
    const data::Dataset val_set = data::Dataset::from_examples(data::make_synthetic_preferences(200, data::Split::validation, ho));
    ho.seed = std::uint64_t(seed) + 2000;
    const std::vector<data::Example> test = data::make_synthetic_preferences(400, data::Split::test, ho);
    const double data_s = seconds_since(t_data);

    // ---- the model and the trainer --------------------------------------------------------------
    auto model = std::make_shared<ps::model::ClipModel<float>>(cfg, ps::model::ClipOptions{.batch = batch});
    {
        ps::Rng rng(std::uint64_t(seed) * 7919 + 13);
        model->init_weights(rng);
    }
    std::printf("pickscore demo: fine-tune a small CLIP on preferences it draws, then score held-out images\n");
    std::printf("vocabulary  %s\n", vocab.string().c_str());
    std::printf("model       CLIP, %.1f M parameters, f32 on the CPU, %d threads: images %lld px in %lld px patches, "
                "text up to %lld tokens, %lld layers of width %lld per tower\n",
                double(model->num_parameters()) * 1e-6, ps::num_threads(), (long long)S,
                (long long)cfg.vision.patch_size, (long long)cfg.text.context_length, (long long)cfg.vision.layers,
                (long long)cfg.vision.width);
    std::printf("data        %lld training pairs (10%% ties) and, held out (other draws, no ties), 200 validation and "
                "%zu test pairs, drawn in %.1f s; a prompt: \"%s\"\n",
                (long long)n_train, test.size(), data_s, test.front().caption.c_str());

    // Held-out accuracy before any training, through a Scorer over the model in memory.
    std::int64_t counted = 0;
    double acc_before = 0;
    {
        ps::ScorerOptions so_fresh;
        so_fresh.batch = 2 * batch;
        ps::Scorer fresh(model, ps::io::Tokenizer::from_file(vocab), so_fresh);
        acc_before = pickscore_cli::demo_pair_accuracy(fresh, test, counted);
    }

    data::LoaderOptions lo;
    lo.batch = batch;
    lo.seed = std::uint64_t(seed) + 5;
    lo.workers = 1;
    lo.preprocess.size = S;
    lo.context_length = int(cfg.text.context_length);
    data::DataLoader loader(train_set, tok, lo);
    ps::train::LocalCommunicator comm;
    ps::train::TrainOptions to;
    to.batch = batch;
    to.steps = steps;
    const std::int64_t warmup = std::max<std::int64_t>(2, steps / 10);
    to.schedule = {.peak = d.lr, .min = 0.0, .warmup = warmup, .total = steps,
                   .warmup_type = ps::train::WarmupType::linear};
    to.adam.weight_decay = 0.05;
    to.max_grad_norm = 1.0;
    to.eval_every = std::max<std::int64_t>(1, steps / 4);
    to.eval_batch = 64;
    to.save_every = 0;
    to.log_every = std::max<std::int64_t>(1, steps / 12);
    to.seed = std::uint64_t(seed);
    // out_dir stays empty: no resumable checkpoints; the model is exported below.
    ps::train::Trainer<float> trainer(*model, loader, comm, to, &val_set, tok);
    trainer.val_name = "held-out";
    std::printf("\ntraining    %lld steps of %lld pairs: PickScore's loss, AdamW (peak lr %.0e, linear warmup %lld "
                "steps, then linear decay), clipping at 1.0\n",
                steps, batch, to.schedule.peak, (long long)warmup);
    std::fflush(stdout);
    const auto t_train = std::chrono::steady_clock::now();
    trainer.run();
    const double train_s = seconds_since(t_train);
    trainer.export_model(model_dir);
    fs::copy_file(vocab, model_dir / vocab.filename(), fs::copy_options::overwrite_existing);
    std::printf("trained in %.1f s; saved %s (model.safetensors, config.json, %s)\n", train_s,
                model_dir.string().c_str(), vocab.filename().string().c_str());

    // ---- scoring: the saved folder through pickscore::Scorer, as for PickScore_v1 -----------------
    const auto t_score = std::chrono::steady_clock::now();
    ps::ScorerOptions so_saved;
    so_saved.batch = 32;
    ps::Scorer scorer(model_dir, so_saved);
    std::printf("\npickscore::Scorer(\"%s\"): logit_scale %.3f (exp: %.2f)\n", model_dir.string().c_str(),
                scorer.logit_scale(), scorer.scale());
    ps::Rng pick(std::uint64_t(seed) + 3000);
    const int tables = 3;
    std::string first_prompt;
    fs::path first_dir;
    for (int t = 0; t < tables; ++t) {
        const data::SyntheticScene want = data::random_scene(pick);
        pickscore_cli::DemoCandidates c = pickscore_cli::demo_candidates(want, S, pick);
        const fs::path dir = image_dir / pickscore_cli::demo_slug(c.prompt);
        fs::create_directories(dir);
        if (t == 0) first_prompt = c.prompt, first_dir = dir;
        std::vector<std::string> files;
        for (std::size_t i = 0; i < c.images.size(); ++i) {
            const fs::path f = dir / (std::to_string(i + 1) + ".png");
            const std::vector<std::uint8_t> png = data::encode_png(c.images[i], 6);
            std::ofstream file(f, std::ios::binary);
            file.write(reinterpret_cast<const char*>(png.data()), std::streamsize(png.size()));
            ps::require<ps::IoError>(bool(file.flush()), "pickscore demo: cannot write '", f.string(), "'");
            files.push_back(f.string());
        }
        const ps::ScoreResult r = scorer.score(c.prompt, files);
        std::printf("\nprompt \"%s\" (held-out images: %s/*.png)\n", c.prompt.c_str(),
                    keep ? dir.string().c_str() : "temporary");
        std::vector<std::string> what(c.scenes.size());
        int width = 5;
        for (std::size_t i = 0; i < what.size(); ++i) {
            what[i] = std::to_string(i + 1) + ".png  " + data::describe(c.scenes[i]);
            width = std::max(width, int(what[i].size()));
        }
        std::printf("  rank  %-*s  score  probability  cosine\n", width, "image");
        int rank = 0;
        for (std::size_t i : r.ranking())
            std::printf("  %4d  %-*s %6.2f  %11.3f  %6.3f%s\n", ++rank, width, what[i].c_str(), r.images[i].score,
                        r.images[i].probability, r.images[i].cosine, i == c.match ? "   <- matches the prompt" : "");
        for (std::size_t i = 0; i < r.images.size(); ++i)
            if (!r.images[i].ok()) std::printf("  %s failed: %s\n", r.images[i].name.c_str(), r.images[i].error.c_str());
    }
    const double acc_after = pickscore_cli::demo_pair_accuracy(scorer, test, counted);
    const double score_s = seconds_since(t_score);

    std::printf("\nheld-out accuracy: %.3f of %lld test pairs (the preferred image scored higher; chance 0.5); "
                "before fine-tuning %.3f\n",
                acc_after, (long long)counted, acc_before);
    std::printf("time: %.1f s in all (data %.1f s, training %.1f s, scoring %.1f s), %d threads\n",
                seconds_since(t_start), data_s, train_s, score_s, ps::num_threads());
    if (keep)
        std::printf("try: pickscore rank --model %s --prompt \"%s\" %s/*.png\n", model_dir.string().c_str(),
                    first_prompt.c_str(), first_dir.string().c_str());
    std::fflush(stdout);
    if (acc_after < 0.75) {
        std::fprintf(stderr, "pickscore demo: the held-out accuracy %.3f is not well above chance (0.75 expected)%s\n",
                     acc_after, steps < 100 ? "; give it more --steps" : "");
        return 1;
    }
    return 0;
}
