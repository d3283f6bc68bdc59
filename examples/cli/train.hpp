// examples/cli/train.hpp — the `pickscore train` command: PickScore's fine-tuning recipe.
//
//     pickscore train --data PATH [--val PATH] --out DIR [--config FILE] [--model PATH | --config-name NAME]
//                     [--steps N] [--batch N] [--micro-batch N] [--lr X] [--warmup N] [--seed N]
//                     [--device cpu|cuda] [--dtype f32|bf16] [--eval-every N] [--save-every N]
//                     [--resume] [--threads N] [more: see train_usage]
//
// A thin layer over the library: data::Dataset (shards, folders of shards, JSONL manifests such as
// `pickscore collect export` writes), data::DataLoader, model::ClipModel and train::Trainer, which
// does the steps, validation, checkpoints, the progress line and DIR/metrics.jsonl. The defaults
// are the paper's recipe (docs: pickscore-reference.md, "Training objective and recipe"): batch
// 128, AdamW (0.9, 0.999, 1e-8) with weight decay 0.3 on every parameter, lr 3e-6 with 500 log
// warmup steps then linear decay to 0 at step 4000, clipping at 1.0, validation every 100 steps.
//
// --config FILE is a JSON object of the same keys as the flags (without the dashes; "micro_batch"
// or "micro-batch"); flags given on the command line win over the file. The effective settings are
// written to DIR/train_config.json (usable as --config) and recorded in every checkpoint.
//
// Exit status: 0 when the run reached --steps; 1 on an error (bad data path, corrupt data past the
// limit, a checkpoint of another run in DIR, ...); 2 on a usage error.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <pickscore/core/random.hpp>
#include <pickscore/core/threads.hpp>
#include <pickscore/data/dataset.hpp>
#include <pickscore/data/loader.hpp>
#include <pickscore/io/checkpoint.hpp>
#include <pickscore/io/json.hpp>
#include <pickscore/io/tokenizer.hpp>
#include <pickscore/model/clip.hpp>
#include <pickscore/train/checkpoint.hpp>
#include <pickscore/train/comm.hpp>
#include <pickscore/train/trainer.hpp>
#if defined(PICKSCORE_WITH_NCCL)  // the pickscore::nccl target: several processes, one GPU each
#include <pickscore/train/nccl.hpp>
#endif

#include "scoring.hpp"   // pickscore_cli::UsageProblem
#include "tokenize.hpp"  // pickscore_cli::default_vocab_path

inline constexpr const char* train_usage =
    "usage: pickscore train --data PATH [--val PATH] --out DIR [--config FILE] [--model PATH | --config-name NAME]\n"
    "                       [--steps N] [--batch N] [--micro-batch N] [--lr X] [--warmup N] [--seed N]\n"
    "                       [--device cpu|cuda] [--dtype f32|bf16] [--eval-every N] [--save-every N] [--resume]\n"
    "                       [--threads N] [more options below]\n"
    "  fine-tune a CLIP on preference pairs with PickScore's recipe (defaults: the paper's).\n"
    "  PATH is a pickscore shard (.pshard, tools/convert_pickapic.py writes them), a folder of shards and\n"
    "  JSONL manifests, or a JSONL manifest (what `pickscore collect export` writes).\n"
    "  --data PATH           training pairs: the records of split train (--split), or all when none has it\n"
    "  --val PATH            validation pairs (with labels): split validation_unique (--val-split), or all\n"
    "  --out DIR             checkpoints (DIR/checkpoints), metrics (DIR/metrics.jsonl), the best model\n"
    "                        (DIR/best) and the final one (DIR/final), in Hugging Face's layout\n"
    "  --config FILE         a JSON object of these settings (keys without dashes); flags win over it\n"
    "  --model PATH          the checkpoint to fine-tune (folder or .safetensors; Hugging Face or open_clip names)\n"
    "  --config-name NAME    or a randomly initialised model: vit-h14, vit-b32, vit-b16, vit-l14, vit-bigg14,\n"
    "                        small (a 2-layer model with CLIP's vocabulary, for trying things out)\n"
    "  --vocab PATH          the tokenizer (default: beside --model, else $PICKSCORE_VOCAB, else beside the program)\n"
    "  --steps N             optimizer steps (default 4000)\n"
    "  --batch N             pairs per optimizer step, all processes together (default 128)\n"
    "  --micro-batch N       pairs per forward/backward; gradients are accumulated (default: the whole batch)\n"
    "  --lr X                peak learning rate (default 3e-6)\n"
    "  --warmup N            log-shaped warmup steps (default 500); --warmup-type linear for a linear one\n"
    "  --decay-steps N       the learning rate reaches 0 at this step (default: --steps)\n"
    "  --weight-decay X      AdamW weight decay on every parameter (default 0.3)\n"
    "  --clip X              gradient clipping by global norm (default 1.0)\n"
    "  --seed N              weights of a --config-name model, data order (default 42)\n"
    "  --device cpu|cuda     where to train (cuda needs a build linked with pickscore::cuda)\n"
    "  --dtype f32|bf16      compute type; bf16 keeps f32 master weights (default: bf16 on cuda, f32 on cpu)\n"
    "  --eval-every N        validate every N steps, 0 never (default 100)\n"
    "  --save-every N        checkpoint every N steps, 0 only at the end (default 100)\n"
    "  --keep N              checkpoints kept (default 2)\n"
    "  --resume              continue the run in DIR from its latest checkpoint (exactly: same batches, same losses)\n"
    "  --split NAME          the split of --data to train on (default: train when present, else all records)\n"
    "  --val-split NAME      the split of --val (default: validation_unique when present, else all records)\n"
    "  --no-recompute        keep all activations (default: per-block recomputation, as the recipe)\n"
    "  --shard-optimizer     several processes: each keeps the f32 master weights and AdamW moments of\n"
    "                        1/N of the parameters only (ZeRO stage 1; 12 bytes per parameter saved on the rest)\n"
    "  --bucket-mb X         several processes: gradients are summed in buckets of about X MiB (default 64)\n"
    "  --no-overlap          several processes: sum the gradients after the backward instead of during it\n"
    "  --no-eval-on-start    skip the validation at step 0\n"
    "  --workers N           data loading threads (default 4)\n"
    "  --max-corrupt N       corrupt records skipped before giving up (default 100; -1 no limit)\n"
    "  --log-every N         progress line every N steps (default 1)\n"
    "  --threads N           CPU threads for the model (default: all cores)\n"
    "  --nccl-id-file PATH   several processes (mpirun, or PICKSCORE_RANK/PICKSCORE_WORLD_SIZE): the file\n"
    "                        through which they agree on the NCCL id, in a folder all see (default: DIR/nccl_id;\n"
    "                        also $PICKSCORE_NCCL_ID_FILE). Needs --device cuda and a build with NCCL; the\n"
    "                        batch is split over the processes, one GPU each (the local rank's)\n"
    "exit status: 0 done; 1 error; 2 usage error\n";

namespace pickscore_cli {

struct TrainSettings {
    std::string data, val, out, model, config_name, vocab;
    std::string split, val_split;  // empty: automatic (see the usage)
    std::int64_t steps = 4000, batch = 128, micro_batch = 0, warmup = 500, decay_steps = 0, seed = 42;
    std::int64_t eval_every = 100, save_every = 100, keep = 2, workers = 4, max_corrupt = 100, log_every = 1;
    std::int64_t threads = 0;
    std::string nccl_id_file;  // a launch detail, not recorded in train_config.json
    double lr = 3e-6, weight_decay = 0.3, clip = 1.0;
    std::string warmup_type = "log", device = "cpu", dtype;  // dtype empty: bf16 on cuda, f32 on cpu
    bool resume = false, recompute = true, eval_on_start = true;
    bool shard_optimizer = false, overlap = true;
    double bucket_mb = 64;

    // The effective settings as JSON (DIR/train_config.json, the checkpoints' record).
    pickscore::io::Json to_json() const {
        using pickscore::io::Json;
        Json j = Json::Object{};
        j.set("data", data);
        if (!val.empty()) j.set("val", val);
        j.set("out", out);
        if (!model.empty()) j.set("model", model);
        if (!config_name.empty()) j.set("config_name", config_name);
        if (!vocab.empty()) j.set("vocab", vocab);
        if (!split.empty()) j.set("split", split);
        if (!val_split.empty()) j.set("val_split", val_split);
        j.set("steps", Json(steps));
        j.set("batch", Json(batch));
        j.set("micro_batch", Json(micro_batch));
        j.set("lr", Json(lr));
        j.set("warmup", Json(warmup));
        j.set("warmup_type", warmup_type);
        j.set("decay_steps", Json(decay_steps));
        j.set("weight_decay", Json(weight_decay));
        j.set("clip", Json(clip));
        j.set("seed", Json(seed));
        j.set("device", device);
        j.set("dtype", dtype);
        j.set("eval_every", Json(eval_every));
        j.set("save_every", Json(save_every));
        j.set("keep", Json(keep));
        j.set("recompute", recompute);
        j.set("shard_optimizer", shard_optimizer);
        j.set("overlap", overlap);
        j.set("bucket_mb", Json(bucket_mb));
        j.set("eval_on_start", eval_on_start);
        j.set("workers", Json(workers));
        j.set("max_corrupt", Json(max_corrupt));
        j.set("log_every", Json(log_every));
        if (threads > 0) j.set("threads", Json(threads));
        return j;
    }
};

// "micro-batch" and "micro_batch" are the same key.
inline std::string train_key(std::string_view k) {
    std::string s(k);
    std::replace(s.begin(), s.end(), '-', '_');
    return s;
}

// Sets one setting from its text; `where` names the source in errors ("--lr", "config.json: lr").
inline void set_train_setting(TrainSettings& s, const std::string& key, const std::string& v, const std::string& where) {
    auto integer = [&](std::int64_t lo, std::int64_t hi) {
        char* end = nullptr;
        errno = 0;
        const long long n = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || !end || *end || errno || n < lo || n > hi)
            throw UsageProblem{where + " must be a whole number from " + std::to_string(lo) + " to " +
                               std::to_string(hi) + ", got '" + v + "'"};
        return std::int64_t(n);
    };
    auto real = [&](double lo, double hi) {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (v.empty() || !end || *end || !(x >= lo && x <= hi)) {
            std::ostringstream m;
            m << where << " must be a number from " << lo << " to " << hi << ", got '" << v << "'";
            throw UsageProblem{m.str()};
        }
        return x;
    };
    auto boolean = [&]() {
        if (v == "true" || v == "1") return true;
        if (v == "false" || v == "0") return false;
        throw UsageProblem{where + " must be true or false, got '" + v + "'"};
    };
    auto one_of = [&](std::initializer_list<const char*> choices) {
        std::string list;
        for (const char* c : choices) {
            if (v == c) return v;
            list += (list.empty() ? "" : ", ") + std::string(c);
        }
        throw UsageProblem{where + " must be one of " + list + ", got '" + v + "'"};
    };
    constexpr std::int64_t big = std::int64_t(1) << 40;
    if (key == "data") s.data = v;
    else if (key == "val") s.val = v;
    else if (key == "out") s.out = v;
    else if (key == "model") s.model = v;
    else if (key == "config_name") s.config_name = one_of({"vit-h14", "vit-b32", "vit-b16", "vit-l14", "vit-bigg14", "small"});
    else if (key == "vocab" || key == "tokenizer") s.vocab = v;
    else if (key == "split") s.split = v;
    else if (key == "val_split") s.val_split = v;
    else if (key == "steps") s.steps = integer(1, big);
    else if (key == "batch") s.batch = integer(1, 1 << 24);
    else if (key == "micro_batch") s.micro_batch = integer(0, 1 << 24);
    else if (key == "lr") s.lr = real(0, 1);
    else if (key == "warmup") s.warmup = integer(0, big);
    else if (key == "warmup_type") s.warmup_type = one_of({"log", "linear"});
    else if (key == "decay_steps") s.decay_steps = integer(0, big);
    else if (key == "weight_decay") s.weight_decay = real(0, 1e3);
    else if (key == "clip") s.clip = real(0, 1e30);
    else if (key == "seed") s.seed = integer(0, std::int64_t(1) << 62);
    else if (key == "device") s.device = one_of({"cpu", "cuda"});
    else if (key == "dtype") s.dtype = v.empty() ? v : one_of({"f32", "bf16"});
    else if (key == "eval_every") s.eval_every = integer(0, big);
    else if (key == "save_every") s.save_every = integer(0, big);
    else if (key == "keep") s.keep = integer(1, 1 << 20);
    else if (key == "resume") s.resume = boolean();
    else if (key == "recompute") s.recompute = boolean();
    else if (key == "shard_optimizer") s.shard_optimizer = boolean();
    else if (key == "overlap") s.overlap = boolean();
    else if (key == "bucket_mb") s.bucket_mb = real(0.001, 1 << 20);
    else if (key == "eval_on_start") s.eval_on_start = boolean();
    else if (key == "workers") s.workers = integer(1, 256);
    else if (key == "max_corrupt") s.max_corrupt = integer(-1, big);
    else if (key == "log_every") s.log_every = integer(0, big);
    else if (key == "threads") s.threads = integer(0, 1024);
    else if (key == "nccl_id_file") s.nccl_id_file = v;
    else throw UsageProblem{"unknown setting " + where};
}

// Applies a --config file: a JSON object of settings.
inline void apply_train_config_file(TrainSettings& s, const std::filesystem::path& path) {
    using pickscore::io::Json;
    std::ifstream f(path, std::ios::binary);
    if (!f) pickscore::fail<pickscore::IoError>("--config: cannot read '", path.string(), "'");
    std::stringstream ss;
    ss << f.rdbuf();
    Json j;
    try {
        j = pickscore::io::json::parse(ss.str());
    } catch (const pickscore::Error& e) {
        pickscore::fail<pickscore::FormatError>("--config '", path.string(), "': ", e.what());
    }
    if (!j.is_object()) pickscore::fail<pickscore::FormatError>("--config '", path.string(), "': expected a JSON object");
    for (const auto& [k, v] : j.items()) {
        const std::string key = train_key(k);
        const std::string where = path.string() + ": " + k;
        if (key == "config") throw UsageProblem{where + ": a config file cannot name another"};
        std::string text;
        if (v.is_null()) continue;
        if (v.is_string()) text = v.as_string();
        else if (v.is_bool()) text = v.as_bool() ? "true" : "false";
        else if (v.is_integer()) text = std::to_string(v.as_int64());
        else if (v.is_number()) text = pickscore::io::json::dump(v);
        else throw UsageProblem{where + " must be a string, a number or true/false"};
        set_train_setting(s, key, text, where);
    }
}

// Parses the command line (argv[0] is the command's name). Returns false for --help.
inline bool parse_train_args(TrainSettings& s, int argc, char** argv) {
    // The config file first, so that the flags win whatever their order.
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help" || a == "-h") return false;
        if (a == "--config") {
            if (i + 1 >= argc) throw UsageProblem{"--config needs a value"};
            apply_train_config_file(s, argv[++i]);
        }
    }
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a.size() < 3 || a.substr(0, 2) != "--") throw UsageProblem{"unexpected argument '" + std::string(a) + "'"};
        const std::string name(a.substr(2));
        if (name == "config") {
            ++i;
            continue;
        }
        if (name == "resume" || name == "recompute" || name == "eval-on-start" || name == "shard-optimizer" ||
            name == "overlap") {
            set_train_setting(s, train_key(name), "true", std::string(a));
        } else if (name == "no-recompute" || name == "no-eval-on-start" || name == "no-overlap") {
            set_train_setting(s, train_key(name.substr(3)), "false", std::string(a));
        } else {
            if (i + 1 >= argc) throw UsageProblem{std::string(a) + " needs a value"};
            set_train_setting(s, train_key(name), argv[++i], std::string(a));
        }
    }
    if (s.data.empty()) throw UsageProblem{"missing --data PATH (a shard, a folder of shards, or a JSONL manifest)"};
    if (s.out.empty()) throw UsageProblem{"missing --out DIR"};
    if (s.model.empty() == s.config_name.empty())
        throw UsageProblem{"give one of --model PATH (a CLIP checkpoint to fine-tune) or --config-name NAME (a fresh model)"};
    if (s.dtype.empty()) s.dtype = s.device == "cuda" ? "bf16" : "f32";
    return true;
}

// The model presets of --config-name.
inline pickscore::model::ClipConfig train_preset(const std::string& name) {
    using pickscore::model::ClipConfig;
    if (name == "vit-h14") return ClipConfig::vit_h14();
    if (name == "vit-b32") return ClipConfig::vit_b32();
    if (name == "vit-b16") return ClipConfig::vit_b16();
    if (name == "vit-l14") return ClipConfig::vit_l14();
    if (name == "vit-bigg14") return ClipConfig::vit_bigg14();
    ClipConfig c;  // "small": CLIP's tokenizer and context, 32 px images in 8 px patches, 2 thin layers
    c.name = "small";
    c.vision = {32, 8, 64, 2, 4, 256};
    c.text = {49408, 77, 64, 2, 4, 256, 49407};
    c.embed_dim = 32;
    c.activation = pickscore::ops::Activation::gelu_erf;
    return c;
}

// The tokenizer and the files it came from (copied beside the exported models so that
// `pickscore score --model DIR/final` finds it).
struct TrainTokenizer {
    std::shared_ptr<const pickscore::io::Tokenizer> tok;
    std::vector<std::filesystem::path> files;
};

inline TrainTokenizer find_train_tokenizer(const TrainSettings& s) {
    namespace fs = std::filesystem;
    using pickscore::io::Tokenizer;
    std::error_code ec;
    TrainTokenizer t;
    auto from = [&](const fs::path& p) {
        if (!fs::exists(p, ec)) pickscore::fail<pickscore::IoError>("tokenizer '", p.string(), "' does not exist");
        if (fs::is_directory(p, ec)) {
            for (const char* n : {"tokenizer.json", "vocab.json", "merges.txt", "bpe_simple_vocab_16e6.txt.gz"})
                if (fs::exists(p / n, ec)) t.files.push_back(p / n);
        } else {
            t.files.push_back(p);
            if (p.filename() == "vocab.json" && fs::exists(p.parent_path() / "merges.txt", ec))
                t.files.push_back(p.parent_path() / "merges.txt");
        }
        t.tok = std::make_shared<const Tokenizer>(Tokenizer::from_file(p));
    };
    if (!s.vocab.empty()) {
        from(s.vocab);
        return t;
    }
    if (!s.model.empty()) {
        const fs::path dir = fs::is_directory(s.model, ec) ? fs::path(s.model) : fs::path(s.model).parent_path();
        for (const char* n : {"tokenizer.json", "vocab.json", "bpe_simple_vocab_16e6.txt.gz"})
            if (fs::exists(dir / n, ec)) {
                from(dir / n);
                return t;
            }
    }
    std::string tried;
    const fs::path p = default_vocab_path(tried);
    if (p.empty())
        pickscore::fail<pickscore::IoError>("no tokenizer: give --vocab PATH or set PICKSCORE_VOCAB (looked beside the "
                                            "model and in:\n", tried, ")");
    from(p);
    return t;
}

// The records of `path` in `split` ("": `automatic` when present, else all; "all": all). `used`
// names what was taken (the split, or the file name for all records).
inline pickscore::data::Dataset open_split(const std::string& path, const std::string& split, const char* automatic,
                                           bool with_label, std::string& described, std::string& used) {
    using namespace pickscore;
    const data::Dataset all = data::Dataset::open(std::filesystem::path(path));
    data::DatasetFilter f;
    f.keep_only_with_label = with_label;
    if (!split.empty() && split != "all") {
        f.split = data::parse_split(split);
        data::Dataset d = all.filter(f);
        require(!d.empty(), "'", path, "' holds no records of split '", split, "'", with_label ? " with labels" : "",
                " (", all.size(), " records in all)");
        described = std::to_string(d.size()) + " pairs of split " + split;
        used = split;
        return d;
    }
    if (split.empty()) {
        f.split = data::parse_split(automatic);
        data::Dataset d = all.filter(f);
        if (!d.empty()) {
            described = std::to_string(d.size()) + " pairs of split " + automatic;
            used = automatic;
            return d;
        }
        f.split.reset();
    }
    data::Dataset d = all.filter(f);
    require(!d.empty(), "'", path, "' holds no records", with_label ? " with labels" : "");
    described = std::to_string(d.size()) + " pairs (all splits)";
    used = std::filesystem::path(path).filename().string();
    return d;
}

// Keeps the lines of DIR/metrics.jsonl up to `step` (those of a run killed after its checkpoint
// would otherwise appear twice after a resume).
inline void trim_metrics(const std::filesystem::path& file, std::int64_t step) {
    std::ifstream in(file);
    if (!in) return;
    std::string kept, line;
    while (std::getline(in, line)) {
        try {
            const auto j = pickscore::io::json::parse(line);
            if (j.find("step") && j["step"].as_int64() <= step) kept += line + "\n";
        } catch (const pickscore::Error&) {  // a line cut by the kill
        }
    }
    in.close();
    const std::filesystem::path tmp = file.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << kept;
        if (!out) pickscore::fail<pickscore::IoError>("cannot write '", tmp.string(), "'");
    }
    std::filesystem::rename(tmp, file);
}

inline void copy_tokenizer_files(const TrainTokenizer& t, const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return;
    for (const fs::path& f : t.files) {
        fs::copy_file(f, dir / f.filename(), fs::copy_options::overwrite_existing, ec);
        if (ec)
            pickscore::fail<pickscore::IoError>("cannot copy the tokenizer '", f.string(), "' to '", dir.string(),
                                                "': ", ec.message());
    }
}

// comm: LocalCommunicator for one process, NcclCommunicator for several (this process's rank).
template <class T, class D>
int run_training(const TrainSettings& s, const TrainTokenizer& tok, const pickscore::data::Dataset& train_set,
                 const pickscore::data::Dataset* val_set, const std::string& val_name,
                 pickscore::train::Communicator& comm) {
    using namespace pickscore;
    namespace fs = std::filesystem;
    const bool lead = comm.rank() == 0;  // rank 0 prints and writes the run's files
    require(s.batch % comm.world() == 0, "--batch ", s.batch, " is not divisible by the ", comm.world(),
            " processes of this launch");
    const std::int64_t share = s.batch / comm.world();  // this process's part of each step
    const std::int64_t micro = s.micro_batch > 0 ? std::min(s.micro_batch, share) : share;
    model::ClipOptions mo;
    mo.batch = micro;
    mo.training = true;
    mo.recompute = s.recompute;
    std::unique_ptr<model::ClipModel<T, D>> m;
    if (!s.model.empty()) {
        m = io::load_clip_model<T, D>(s.model, mo);
    } else {
        m = std::make_unique<model::ClipModel<T, D>>(train_preset(s.config_name), mo);
        Rng rng(std::uint64_t(s.seed));
        m->init_weights(rng);
    }
    const model::ClipConfig& cfg = m->config();

    data::LoaderOptions lo;
    lo.batch = s.batch;
    lo.rank = comm.rank();
    lo.world = comm.world();
    lo.seed = std::uint64_t(s.seed);
    lo.workers = int(s.workers);
    lo.preprocess.size = cfg.vision.image_size;
    lo.context_length = int(cfg.text.context_length);
    lo.max_corrupt = s.max_corrupt;
    data::DataLoader loader(train_set, tok.tok, lo);

    train::TrainOptions o;
    o.batch = s.batch;
    o.micro_batch = micro;
    o.steps = s.steps;
    o.schedule.peak = s.lr;
    o.schedule.min = 0.0;
    o.schedule.warmup = s.warmup;
    o.schedule.total = s.decay_steps > 0 ? s.decay_steps : s.steps;
    o.schedule.warmup_type = train::parse_warmup_type(s.warmup_type);
    o.adam.weight_decay = s.weight_decay;
    o.max_grad_norm = s.clip;
    o.shard_optimizer = s.shard_optimizer;
    o.overlap_communication = s.overlap;
    // Buckets are counted in elements of the summed buffer, which is f32 for both dtypes (with several
    // ranks a bf16 model's gradients are summed in its f32 accumulator).
    o.bucket_elements = std::max<std::int64_t>(1, std::int64_t(s.bucket_mb * 1024.0 * 1024.0 / 4.0));
    o.eval_every = val_set ? s.eval_every : 0;
    o.eval_on_start = s.eval_on_start;
    o.eval_batch = micro;  // the model's arenas are planned for this many prompts (2x images)
    o.save_every = s.save_every;
    o.save_best = val_set != nullptr;
    o.checkpoint.keep = int(s.keep);
    o.out_dir = s.out;
    o.log_every = s.log_every;
    o.seed = std::uint64_t(s.seed);
    o.config_json = io::json::dump(s.to_json());

    train::Trainer<T, D> trainer(*m, loader, comm, o, val_set, tok.tok);
    trainer.val_name = val_name;

    if (lead) std::printf("model: %s (%s), %lld parameters, %s on %s%s\n", cfg.name.c_str(),
                s.model.empty() ? "random initialisation" : s.model.c_str(),
                static_cast<long long>(cfg.num_parameters()), s.dtype.c_str(), s.device.c_str(),
                s.recompute ? ", per-block recomputation" : "");
    if (comm.world() > 1 && lead)
        std::printf("data parallel: %d processes over NCCL, %lld pairs each per step; gradients summed in %g MiB "
                    "buckets %s the backward%s\n",
                    comm.world(), static_cast<long long>(share), s.bucket_mb, s.overlap ? "during" : "after",
                    s.shard_optimizer ? "; optimizer state sharded" : "");
    if (lead) std::printf("recipe: %lld steps of %lld pairs (micro-batch %lld), AdamW lr %g (%s warmup %lld, 0 at step %lld), "
                "weight decay %g, clip %g, seed %lld\n",
                static_cast<long long>(s.steps), static_cast<long long>(s.batch), static_cast<long long>(micro), s.lr,
                s.warmup_type.c_str(), static_cast<long long>(s.warmup), static_cast<long long>(o.schedule.total),
                s.weight_decay, s.clip, static_cast<long long>(s.seed));

    const auto latest = train::latest_checkpoint(s.out);
    if (latest) {
        const train::TrainState st = train::read_checkpoint_state(*latest);
        require(s.resume, "'", s.out, "' already holds a checkpoint of a run (step ", st.step,
                "): pass --resume to continue it, or choose another --out");
        // The data order depends on the batch and the seed: resuming with others would not continue the run.
        if (!st.config.empty()) {
            const io::Json was = io::json::parse(st.config);
            for (const char* k : {"batch", "seed"})
                if (const io::Json* v = was.find(k))
                    require(v->as_int64() == (std::string(k) == "batch" ? s.batch : s.seed), "--resume: the run in '",
                            s.out, "' used ", k, " ", v->as_int64(), "; give the same ", k, " to continue it");
        }
        trainer.resume_from(*latest);
        if (lead) trim_metrics(fs::path(s.out) / "metrics.jsonl", st.step);
    } else if (lead) {
        if (s.resume) std::printf("no checkpoint in %s: starting at step 0\n", s.out.c_str());
        fs::create_directories(s.out);
        std::error_code ec;
        fs::remove(fs::path(s.out) / "metrics.jsonl", ec);  // a fresh run: no stale lines
    }
    if (lead) {
        const fs::path cf = fs::path(s.out) / "train_config.json";
        std::ofstream f(cf, std::ios::binary | std::ios::trunc);
        f << io::json::dump(s.to_json(), 2) << "\n";
        require<IoError>(bool(f), "cannot write '", cf.string(), "'");
    }
    std::fflush(stdout);

    trainer.run();
    if (!lead) return 0;

    copy_tokenizer_files(tok, fs::path(s.out) / "final");
    copy_tokenizer_files(tok, fs::path(s.out) / "best");
    std::printf("done: step %lld; final model in %s", static_cast<long long>(trainer.step_count()),
                (fs::path(s.out) / "final").c_str());
    if (val_set && trainer.best_metric() >= 0)
        std::printf(", best (validation pairwise accuracy %.4f) in %s", trainer.best_metric(),
                    (fs::path(s.out) / "best").c_str());
    std::printf("\n");
    return 0;
}

inline int run_train_command(TrainSettings& s) {
    using namespace pickscore;
    const train::DistributedEnv env = train::distributed_env();
    train::LocalCommunicator local;
    train::Communicator* comm = &local;
#if defined(PICKSCORE_WITH_NCCL)
    std::unique_ptr<train::NcclCommunicator> nccl;
    if (env.world > 1) {
        require(s.device == "cuda", "launched as rank ", env.rank, " of ", env.world, " (", env.source,
                "): multi-process training runs on GPUs only (one per process, over NCCL): add --device cuda");
        // This process's GPU: the local rank's, or the only one the launcher left visible.
        int devices = 0;
        try {
            cuda::check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
        } catch (const Error& e) {
            fail<Error>("rank ", env.rank, " of ", env.world, ": no usable CUDA device (", e.what(), ")");
        }
        require(devices == 1 || env.local_rank < devices, "rank ", env.rank, " has local rank ", env.local_rank,
                " but this machine shows ", devices, " CUDA devices: start at most one process per GPU");
        cuda::check(cudaSetDevice(devices == 1 ? 0 : env.local_rank), "cudaSetDevice");
        train::NcclBootstrap b = train::nccl_bootstrap_from_env();
        if (!s.nccl_id_file.empty()) b.id_file = s.nccl_id_file;
        const char* comm_id = std::getenv("NCCL_COMM_ID");
        if (b.id_hex.empty() && b.id_file.empty() && !(comm_id && *comm_id))
            b.id_file = std::filesystem::path(s.out) / "nccl_id";  // --out is shared by all ranks anyway
        nccl = train::NcclCommunicator::create(env, b);
        comm = nccl.get();
    }
#else
    if (env.world > 1)
        fail<Error>("launched as rank ", env.rank, " of ", env.world, " (", env.source,
                    "): multi-process training needs a build with CUDA and NCCL (-DPICKSCORE_CUDA=ON, "
                    "NCCL found: see cmake/pickscoreCuda.cmake, NCCL_ROOT), and --device cuda; this program has ",
                    PICKSCORE_CUDA_ENABLED ? "no NCCL" : "neither CUDA nor NCCL", ". Run a single process");
#endif
    const bool lead = comm->rank() == 0;
    if (s.threads > 0) set_num_threads(int(s.threads));

    std::string train_desc, val_desc, train_name, val_name;
    const data::Dataset train_set = open_split(s.data, s.split, "train", false, train_desc, train_name);
    std::optional<data::Dataset> val_set;
    if (!s.val.empty()) val_set = open_split(s.val, s.val_split, "validation_unique", true, val_desc, val_name);
    const TrainTokenizer tok = find_train_tokenizer(s);
    if (lead) {
        std::printf("data: %s from %s", train_desc.c_str(), s.data.c_str());
        if (val_set) std::printf("; validation: %s from %s", val_desc.c_str(), s.val.c_str());
        std::printf("\n");
    }

    const data::Dataset* val = val_set ? &*val_set : nullptr;
    if (s.device == "cpu") {
        if (s.dtype == "bf16") return run_training<bf16, Cpu>(s, tok, train_set, val, val_name, *comm);
        return run_training<float, Cpu>(s, tok, train_set, val, val_name, *comm);
    }
#if PICKSCORE_CUDA_ENABLED
    if (s.dtype == "bf16") return run_training<bf16, Cuda>(s, tok, train_set, val, val_name, *comm);
    return run_training<float, Cuda>(s, tok, train_set, val, val_name, *comm);
#else
    fail<Error>("--device cuda: this program was built without a CUDA backend (build with -DPICKSCORE_CUDA=ON)");
#endif
}

}  // namespace pickscore_cli

// argv[0] is the command's name ("train"); the arguments follow.
inline int cmd_train(int argc, char** argv) {
    pickscore_cli::TrainSettings s;
    try {
        if (!pickscore_cli::parse_train_args(s, argc, argv)) {
            std::printf("%s", train_usage);
            return 0;
        }
        return pickscore_cli::run_train_command(s);
    } catch (const pickscore_cli::UsageProblem& u) {
        std::fprintf(stderr, "pickscore train: %s\n%s", u.message.c_str(), train_usage);
        return 2;
    }
}
