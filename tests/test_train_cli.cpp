// `pickscore train` as a subprocess (when the build passes PICKSCORE_CLI_PATH): a small converted
// sample built here with the C++ shard writer (the synthetic preference set, train and
// validation_unique shards in one folder, as tools/convert_pickapic.py lays Pick-a-Pic out), a few
// steps of the recipe on the small preset, then --resume: the step sequence continues where the
// checkpoint left it, and its losses equal a straight run's bit for bit. Also a JSONL manifest with
// a --config file, and the errors: a bad --data path, missing flags, a checkpoint without --resume,
// a launch as several processes.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/cli.hpp"
#include "support/files.hpp"
#include <pickscore/data/png.hpp>
#include <pickscore/data/shard.hpp>
#include <pickscore/data/synthetic.hpp>
#include <pickscore/io/json.hpp>

using namespace pickscore;
namespace fs = std::filesystem;

#ifdef PICKSCORE_CLI_PATH
namespace {

const test::TempDir& work() {
    static const test::TempDir d("train-cli");
    return d;
}

using test::read_text;
using Run = test::ProgramRun;

// Runs `pickscore train ARGS` (with `env` as VAR=value assignments before it).
Run train(const std::vector<std::string>& args, const std::string& env = "") {
    std::vector<std::string> all{"train"};
    all.insert(all.end(), args.begin(), args.end());
    return test::run_program(PICKSCORE_CLI_PATH, all, work().path, env);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string vocab() { return (fs::path(PICKSCORE_SHARED_DIR) / "data" / "bpe_simple_vocab_16e6.txt.gz").string(); }

// The sample: 24 training and 8 validation_unique pairs of 32 px images, in two shards of one folder.
const fs::path& sample() {
    static const fs::path dir = [] {
        const fs::path d = work().path / "sample";
        fs::create_directories(d);
        data::SyntheticOptions o;
        o.image_size = 32;
        o.seed = 4;
        data::write_shard(d / "train-00000-of-00001.pshard",
                          data::make_synthetic_preferences(24, data::Split::train, o));
        data::write_shard(d / "validation_unique-00000-of-00001.pshard",
                          data::make_synthetic_preferences(8, data::Split::validation_unique, o));
        return d;
    }();
    return dir;
}

// The flags of every run: the small preset, a schedule that does not depend on --steps.
std::vector<std::string> common(const fs::path& out) {
    return {"--data",   sample().string(), "--out",     out.string(), "--config-name", "small", "--vocab",   vocab(),
            "--batch",  "4",               "--lr",      "1e-3",       "--warmup",      "2",     "--decay-steps", "20",
            "--threads", "2",              "--workers", "1",          "--seed",        "3"};
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

struct Metrics {
    std::vector<std::int64_t> steps;   // training lines, in file order
    std::vector<double> losses;
    std::vector<std::int64_t> evals;   // steps of the validation lines
};

Metrics read_metrics(const fs::path& run) {
    Metrics m;
    std::ifstream f(run / "metrics.jsonl");
    for (std::string line; std::getline(f, line);) {
        const io::Json j = io::json::parse(line);
        if (j.find("split")) {
            m.evals.push_back(j["step"].as_int64());
        } else {
            m.steps.push_back(j["step"].as_int64());
            m.losses.push_back(j["loss"].as_double());
        }
    }
    return m;
}

}  // namespace

TEST_CASE("pickscore train: a few steps on a converted sample, then --resume continues the step sequence exactly") {
    const fs::path a = work().path / "run-a", b = work().path / "run-b";

    // 3 steps with validation every 2 steps and a checkpoint every 2.
    const Run first = train(common(a) + std::vector<std::string>{"--steps", "3", "--val", sample().string(),
                                                                  "--eval-every", "2", "--save-every", "2"});
    INFO(first.out << first.err);
    REQUIRE(first.status == 0);
    CHECK(contains(first.out, "data: 24 pairs of split train from "));
    CHECK(contains(first.out, "validation: 8 pairs of split validation_unique from "));
    CHECK(contains(first.out, "step 1/3 | loss "));
    CHECK(contains(first.out, "| acc "));
    CHECK(contains(first.out, "| lr "));
    CHECK(contains(first.out, "ex/s | ETA "));
    CHECK(contains(first.out, "step 3/3 | loss "));
    CHECK(contains(first.out, "validation (validation_unique, 8 examples) at step 0"));
    CHECK(contains(first.out, "validation (validation_unique, 8 examples) at step 2"));
    Metrics m = read_metrics(a);
    CHECK(m.steps == std::vector<std::int64_t>{1, 2, 3});
    CHECK(m.evals == std::vector<std::int64_t>{0, 2});
    CHECK(read_text(a / "checkpoints" / "latest") == "step-00000003\n");
    // The final and best models in Hugging Face's layout, with the tokenizer beside them.
    for (const char* dir : {"final", "best"}) {
        CAPTURE(dir);
        CHECK(fs::exists(a / dir / "model.safetensors"));
        CHECK(fs::exists(a / dir / "config.json"));
        CHECK(fs::exists(a / dir / "bpe_simple_vocab_16e6.txt.gz"));
    }
    const io::Json cfg = io::json::parse(read_text(a / "train_config.json"));
    CHECK(cfg["steps"].as_int64() == 3);
    CHECK(cfg["batch"].as_int64() == 4);

    // Resumed to step 5: steps 4 and 5 follow, nothing before them is repeated.
    const Run resumed = train(common(a) + std::vector<std::string>{"--steps", "5", "--val", sample().string(),
                                                                    "--eval-every", "2", "--save-every", "2",
                                                                    "--resume"});
    INFO(resumed.out << resumed.err);
    REQUIRE(resumed.status == 0);
    CHECK(contains(resumed.out, "resumed from "));
    CHECK(contains(resumed.out, "at step 3"));
    CHECK_FALSE(contains(resumed.out, "step 1/5"));
    CHECK_FALSE(contains(resumed.out, "step 3/5"));
    CHECK(contains(resumed.out, "step 4/5 | loss "));
    CHECK(contains(resumed.out, "step 5/5 | loss "));
    m = read_metrics(a);
    CHECK(m.steps == std::vector<std::int64_t>{1, 2, 3, 4, 5});
    CHECK(m.evals == std::vector<std::int64_t>{0, 2, 4});
    CHECK(read_text(a / "checkpoints" / "latest") == "step-00000005\n");

    // A straight run of 5 steps has the same losses, bit for bit (the JSON numbers round-trip).
    const Run straight = train(common(b) + std::vector<std::string>{"--steps", "5"});
    INFO(straight.out << straight.err);
    REQUIRE(straight.status == 0);
    const Metrics s = read_metrics(b);
    REQUIRE(s.losses.size() == 5);
    REQUIRE(m.losses.size() == 5);
    for (std::size_t i = 0; i < 5; ++i) {
        CAPTURE(i);
        CHECK(m.losses[i] == s.losses[i]);
    }
    CHECK(m.losses[0] != m.losses[4]);  // and the run is not standing still

    // A checkpoint in --out without --resume is an error, as is resuming with another batch.
    const Run again = train(common(b) + std::vector<std::string>{"--steps", "6"});
    CHECK(again.status == 1);
    CHECK(contains(again.err, "already holds a checkpoint"));
    CHECK(contains(again.err, "--resume"));
    std::vector<std::string> other_batch = common(b) + std::vector<std::string>{"--steps", "6", "--resume"};
    other_batch[9] = "2";  // --batch 2
    REQUIRE(other_batch[8] == "--batch");
    const Run rebatched = train(other_batch);
    CHECK(rebatched.status == 1);
    CHECK(contains(rebatched.err, "batch 4"));
}

TEST_CASE("pickscore train: a JSONL manifest and a --config file; flags win over the file") {
    // A manifest of 8 pairs with PNG files beside it (what `pickscore collect export` writes).
    const fs::path dir = work().path / "manifest";
    fs::create_directories(dir / "images");
    data::SyntheticOptions o;
    o.image_size = 32;
    o.seed = 9;
    const auto ex = data::make_synthetic_preferences(8, data::Split::train, o);
    {
        std::ofstream f(dir / "preferences.jsonl");
        for (std::size_t i = 0; i < ex.size(); ++i) {
            for (int k = 0; k < 2; ++k) {
                std::ofstream img(dir / "images" / (std::to_string(i) + "_" + std::to_string(k) + ".png"),
                                  std::ios::binary);
                const auto& bytes = k == 0 ? ex[i].image0 : ex[i].image1;
                img.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
            }
            io::Json j = io::Json::Object{};
            j.set("prompt", ex[i].caption);
            j.set("image_0", "images/" + std::to_string(i) + "_0.png");
            j.set("image_1", "images/" + std::to_string(i) + "_1.png");
            j.set("label_0", io::Json(double(ex[i].label0)));
            j.set("label_1", io::Json(double(ex[i].label1)));
            j.set("split", "train");
            f << io::json::dump(j) << "\n";
        }
    }
    const fs::path run = work().path / "run-manifest", config = work().path / "train.json";
    std::ofstream(config) << R"({"data": ")" << (dir / "preferences.jsonl").string() << R"(", "out": ")" << run.string()
                          << R"(", "config_name": "small", "vocab": ")" << vocab()
                          << R"(", "steps": 5, "batch": 4, "micro-batch": 2, "lr": 1e-3, "warmup": 1,
                                "threads": 2, "workers": 1, "recompute": false})";
    const Run r = train({"--config", config.string(), "--steps", "2", "--shard-optimizer", "--bucket-mb", "8",
                         "--no-overlap"});
    INFO(r.out << r.err);
    REQUIRE(r.status == 0);
    CHECK(contains(r.out, "data: 8 pairs of split train from "));
    CHECK(contains(r.out, "micro-batch 2"));
    CHECK(read_metrics(run).steps == std::vector<std::int64_t>{1, 2});  // --steps 2 won over the file's 5
    const io::Json cfg = io::json::parse(read_text(run / "train_config.json"));
    CHECK(cfg["steps"].as_int64() == 2);
    CHECK(cfg["micro_batch"].as_int64() == 2);
    CHECK(cfg["recompute"].as_bool() == false);
    // The data-parallel settings are recorded (one process here: nothing to shard or sum).
    CHECK(cfg["shard_optimizer"].as_bool() == true);
    CHECK(cfg["overlap"].as_bool() == false);
    CHECK(cfg["bucket_mb"].as_double() == 8.0);

    // A key the command does not know is a usage error naming it.
    std::ofstream(work().path / "bad.json") << R"({"stpes": 3})";
    const Run bad = train({"--config", (work().path / "bad.json").string()});
    CHECK(bad.status == 2);
    CHECK(contains(bad.err, "stpes"));
}

TEST_CASE("pickscore train: errors are clear, with exit status 1 (errors) or 2 (usage)") {
    const fs::path out = work().path / "run-errors";
    // A --data path that does not exist: exit 1, the message names it.
    auto args = common(out) + std::vector<std::string>{"--steps", "1"};
    args[1] = (work().path / "no-such-shards").string();
    Run r = train(args);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "pickscore train: "));
    CHECK(contains(r.err, "no-such-shards"));
    CHECK(contains(r.err, "does not exist"));
    CHECK_FALSE(fs::exists(out / "checkpoints"));

    // A file that is not a shard: exit 1, a FormatError naming the file.
    std::ofstream(work().path / "junk.pshard") << std::string(100, 'x');  // longer than a header, no magic
    args[1] = (work().path / "junk.pshard").string();
    r = train(args);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "junk.pshard"));
    CHECK(contains(r.err, "bad magic"));

    // Fewer pairs than one batch.
    args = common(out) + std::vector<std::string>{"--steps", "1", "--batch", "64"};
    r = train(args);
    CHECK(r.status == 1);
    CHECK(contains(r.err, "only 24 records"));

    // Usage errors: exit 2 with the usage.
    r = train({"--out", out.string(), "--config-name", "small"});
    CHECK(r.status == 2);
    CHECK(contains(r.err, "missing --data"));
    CHECK(contains(r.err, "usage: pickscore train"));
    r = train({"--data", sample().string(), "--out", out.string()});
    CHECK(r.status == 2);
    CHECK(contains(r.err, "--config-name"));
    r = train(common(out) + std::vector<std::string>{"--stepz", "1"});
    CHECK(r.status == 2);
    CHECK(contains(r.err, "--stepz"));
    r = train(common(out) + std::vector<std::string>{"--lr", "fast"});
    CHECK(r.status == 2);
    CHECK(contains(r.err, "--lr must be a number"));
    r = train(common(out) + std::vector<std::string>{"--bucket-mb", "0"});
    CHECK(r.status == 2);
    CHECK(contains(r.err, "--bucket-mb must be a number"));

    // Launched as one of several processes: this build has no multi-process communicator.
    r = train(common(out) + std::vector<std::string>{"--steps", "1"}, "PICKSCORE_RANK=0 PICKSCORE_WORLD_SIZE=2");
    CHECK(r.status == 1);
    CHECK(contains(r.err, "rank 0 of 2"));
    CHECK(contains(r.err, "multi-process"));
}
#else
TEST_CASE("pickscore train command-line tests") {
    MESSAGE("skipped: this build does not pass PICKSCORE_CLI_PATH (the examples are not built)");
}
#endif
