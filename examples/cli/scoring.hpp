// examples/cli/scoring.hpp — what `pickscore score`, `rank` and `embed` share: the model flags, the
// progress bar, the manifest reader and the output helpers. Needs the pickscore::io target.
//
// Exit status of these commands: 0 when every image was scored; 1 on an error that stopped the
// command (a missing model file, a bad manifest, ...); 2 on a usage error; 3 when some images could
// not be read or decoded — the others were scored and printed, and each failure is reported on
// stderr.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <pickscore/io/json.hpp>
#include <pickscore/pickscore.hpp>
#include <pickscore/scorers.hpp>

#include "tokenize.hpp"  // pickscore_cli::default_vocab_path

namespace pickscore_cli {

inline constexpr int exit_partial = 3;  // some images failed, the rest were printed

inline constexpr const char* scorer_flags_usage =
    "model flags (score, rank, embed):\n"
    "  --model PATH          a folder with model.safetensors (or a sharded index) + config.json + tokenizer\n"
    "                        files, or a .safetensors file (default: $PICKSCORE_MODEL)\n"
    "  --tokenizer PATH      tokenizer.json, vocab.json (merges.txt beside it), bpe_simple_vocab_16e6.txt.gz or\n"
    "                        a folder (default: beside the model, else $PICKSCORE_VOCAB, else beside the program)\n"
    "  --preset NAME         pickscore (default), clip (zero-shot LAION ViT-H/14) or hpsv2 (raw cosine,\n"
    "                        letterbox, open_clip tokenizer)\n"
    "  --scorer LIST         one or more of pickscore, clip, hpsv2, aesthetic (LAION aesthetic predictor),\n"
    "                        imagereward, comma-separated (score, rank: one; score, eval, compare: several);\n"
    "                        then --model takes one path per scorer: PATH,PATH,... in the same order, or\n"
    "                        NAME=PATH pairs (--model pickscore=PS/ --model aesthetic=AE/)\n"
    "  --device cpu|cuda     where the model runs (cuda needs a build linked with pickscore::cuda)\n"
    "  --dtype f32|bf16      the model's element type (default f32)\n"
    "  --batch N             images (and prompts) per model call (default 8)\n"
    "  --threads N           CPU threads (default: all cores)\n"
    "  --progress            show the progress bar even when stderr is not a terminal\n"
    "  --no-progress         never show it (default: shown when stderr is a terminal)\n"
    "exit status: 0 all images scored; 1 error; 2 usage error; 3 some images failed (the others are printed)\n";

struct UsageProblem {
    std::string message;
};

// The flags every scoring command takes.
struct ScorerFlags {
    std::string model;                      // the last --model value, as given
    std::vector<std::string> model_values;  // every --model value, split at commas
    std::vector<std::string> scorer_names;  // every --scorer value, split at commas
    pickscore::ScorerOptions options;
    int progress = -1;  // -1: when stderr is a terminal; 0 never; 1 always

    // Consumes argv[i] (and its value) when it is one of these flags; returns false otherwise.
    bool parse(int argc, char** argv, int& i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw UsageProblem{std::string(a) + " needs a value"};
            return argv[++i];
        };
        auto number = [&](long lo, long hi) {
            const std::string v = value();
            char* end = nullptr;
            const long n = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || !end || *end || n < lo || n > hi)
                throw UsageProblem{std::string(a) + " must be a number from " + std::to_string(lo) + " to " +
                                   std::to_string(hi) + ", got '" + v + "'"};
            return n;
        };
        try {
            if (a == "--model") {
                model = value();
                for (std::string& m : split_commas(model)) model_values.push_back(std::move(m));
            } else if (a == "--scorer" || a == "--scorers") {
                for (std::string& n : split_commas(value())) {
                    pickscore::parse_scorer_kind(n);  // a usage error when unknown
                    scorer_names.push_back(std::move(n));
                }
            }
            else if (a == "--tokenizer" || a == "--vocab") options.tokenizer = value();
            else if (a == "--preset") options.preset = pickscore::parse_preset(value());
            else if (a == "--device") options.device = pickscore::parse_device(value());
            else if (a == "--dtype") options.dtype = pickscore::parse_scorer_dtype(value());
            else if (a == "--batch") options.batch = number(1, 1 << 16);
            else if (a == "--threads") options.threads = int(number(1, 1024));
            else if (a == "--progress") progress = 1;
            else if (a == "--no-progress") progress = 0;
            else return false;
        } catch (const pickscore::Error& e) {
            throw UsageProblem{e.what()};
        }
        return true;
    }

    static std::vector<std::string> split_commas(const std::string& s) {
        std::vector<std::string> out;
        std::size_t at = 0;
        while (true) {
            const std::size_t c = s.find(',', at);
            std::string part = s.substr(at, c == std::string::npos ? std::string::npos : c - at);
            if (!part.empty()) out.push_back(std::move(part));
            if (c == std::string::npos) break;
            at = c + 1;
        }
        return out;
    }

    // The scorers asked for with their model paths: --scorer's names (default: --preset's) paired
    // with --model's values (NAME=PATH, else by position; one scorer without --model:
    // $PICKSCORE_MODEL).
    std::vector<std::pair<pickscore::ScorerKind, std::string>> scorers() const {
        using pickscore::ScorerKind;
        std::vector<ScorerKind> kinds;
        if (scorer_names.empty()) {
            kinds.push_back(options.preset == pickscore::Preset::clip    ? ScorerKind::clip
                            : options.preset == pickscore::Preset::hpsv2 ? ScorerKind::hpsv2
                                                                         : ScorerKind::pickscore);
        } else {
            for (const std::string& n : scorer_names) {
                const ScorerKind k = pickscore::parse_scorer_kind(n);
                if (std::find(kinds.begin(), kinds.end(), k) != kinds.end())
                    throw UsageProblem{"--scorer names " + std::string(pickscore::to_string(k)) + " twice"};
                kinds.push_back(k);
            }
        }
        std::vector<std::string> path(kinds.size());
        std::vector<std::string> positional;
        // A single scorer takes --model as given (a path may hold commas).
        const bool single = kinds.size() == 1 && model_values.size() <= 1;
        const std::vector<std::string> values = single ? (model.empty() ? std::vector<std::string>{}
                                                                        : std::vector<std::string>{model})
                                                       : model_values;
        for (const std::string& v : values) {
            const std::size_t eq = v.find('=');
            bool named = false;
            if (eq != std::string::npos && eq > 0) {
                try {
                    const ScorerKind k = pickscore::parse_scorer_kind(v.substr(0, eq));
                    const auto it = std::find(kinds.begin(), kinds.end(), k);
                    if (it == kinds.end())
                        throw UsageProblem{"--model " + v + ": " + pickscore::to_string(k) + " is not among --scorer's"};
                    path[std::size_t(it - kinds.begin())] = v.substr(eq + 1);
                    named = true;
                } catch (const pickscore::Error&) {
                }
            }
            if (!named) positional.push_back(v);
        }
        std::size_t next = 0;
        for (std::size_t i = 0; i < kinds.size(); ++i)
            if (path[i].empty() && next < positional.size()) path[i] = positional[next++];
        if (next < positional.size())
            throw UsageProblem{"--model: " + std::to_string(model_values.size()) + " paths for " +
                               std::to_string(kinds.size()) + " scorers"};
        if (kinds.size() == 1 && path[0].empty())
            if (const char* env = std::getenv("PICKSCORE_MODEL"); env && *env) path[0] = env;
        std::vector<std::pair<ScorerKind, std::string>> out;
        for (std::size_t i = 0; i < kinds.size(); ++i) {
            if (path[i].empty())
                throw UsageProblem{std::string("no model for scorer ") + pickscore::to_string(kinds[i]) +
                                   ": give --model PATH (several scorers: PATH,PATH,... or NAME=PATH)"};
            out.emplace_back(kinds[i], path[i]);
        }
        return out;
    }

    // Any scorer (pickscore.hpp's Scorer for the CLIP family, with load()'s tokenizer fallbacks).
    std::unique_ptr<pickscore::AnyScorer> load_any(pickscore::ScorerKind kind, const std::string& path) {
        if (pickscore::is_clip_family(kind)) {
            ScorerFlags f = *this;
            f.model = path;
            f.options.preset = pickscore::preset_of(kind);
            if (scorer_names.size() > 1) f.options.tokenizer.clear();  // --tokenizer belongs to one scorer only
            return std::make_unique<pickscore::detail::ClipFamilyScorer>(kind, f.load());
        }
        pickscore::ScorerOptions o = options;
        if (scorer_names.size() > 1) o.tokenizer.clear();  // --tokenizer belongs to one scorer only
        return pickscore::load_scorer(kind, path, o);
    }

    // The Scorer, with the model from $PICKSCORE_MODEL and the tokenizer beside the program as
    // fallbacks.
    pickscore::Scorer load() {
        namespace fs = std::filesystem;
        if (model.empty())
            if (const char* env = std::getenv("PICKSCORE_MODEL"); env && *env) model = env;
        if (model.empty()) throw UsageProblem{"no model: give --model PATH or set PICKSCORE_MODEL"};
        if (options.tokenizer.empty()) {
            std::error_code ec;
            const fs::path dir = fs::is_directory(model, ec) ? fs::path(model) : fs::path(model).parent_path();
            const bool beside = fs::exists(dir / "tokenizer.json", ec) || fs::exists(dir / "vocab.json", ec) ||
                                fs::exists(dir / "bpe_simple_vocab_16e6.txt.gz", ec);
            const char* env = std::getenv("PICKSCORE_VOCAB");
            if (!beside && !(env && *env)) {
                std::string tried;
                const fs::path p = default_vocab_path(tried);
                if (!p.empty()) options.tokenizer = p;
            }
        }
        return pickscore::Scorer(model, options);
    }

    bool show_progress() const { return progress == 1 || (progress == -1 && ::isatty(2)); }
};

// A one-line progress bar on stderr with the rate and the time left, redrawn at most 10 times a second.
class ProgressBar {
public:
    explicit ProgressBar(bool on) : on_(on), start_(Clock::now()), last_(start_) {}
    ~ProgressBar() { finish(); }
    ProgressBar(const ProgressBar&) = delete;
    ProgressBar& operator=(const ProgressBar&) = delete;

    void operator()(const pickscore::Progress& p) {
        if (!on_ || p.total <= 0) return;
        const auto now = Clock::now();
        if (p.done < p.total && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
        last_ = now;
        const double secs = std::chrono::duration<double>(now - start_).count();
        const double rate = secs > 0 ? double(p.done) / secs : 0.0;
        constexpr int width = 24;
        const int filled = int(double(width) * double(p.done) / double(p.total));
        std::string bar(std::size_t(filled), '#');
        bar.append(std::size_t(width - filled), '.');
        char eta[32] = "--:--";
        if (rate > 0) {
            const long left = std::lround(double(p.total - p.done) / rate);
            if (left >= 3600) std::snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", left / 3600, left / 60 % 60, left % 60);
            else std::snprintf(eta, sizeof eta, "%ld:%02ld", left / 60, left % 60);
        }
        std::fprintf(stderr, "\r[%s] %lld/%lld %s  %.2f %s/s  ETA %s   ", bar.c_str(), (long long)p.done,
                     (long long)p.total, p.what, rate, p.what, eta);
        std::fflush(stderr);
        drawn_ = true;
    }
    void finish() {
        if (drawn_) std::fputc('\n', stderr);
        drawn_ = false;
    }

private:
    using Clock = std::chrono::steady_clock;
    bool on_;
    bool drawn_ = false;
    Clock::time_point start_, last_;
};

// The JSON-lines manifest: one object per line, {"prompt": "...", "images": ["a.png", ...]} and an
// optional "id" (a name for --copy-to's folder). Relative image paths are taken from the manifest's
// folder. Empty lines are skipped. Errors name the file and line.
struct ManifestEntry {
    std::string id;
    pickscore::Query query;
};

// Calls fn(where, object) for each non-empty line of a JSON-lines file, where = "FILE:LINE: " (for
// error messages). A line that is not JSON is a FormatError naming the file and line; what names the
// file in the error when it cannot be opened.
template <class Fn>
void for_each_json_line(const std::filesystem::path& path, std::string_view what, Fn&& fn) {
    using pickscore::FormatError;
    std::ifstream in(path);
    if (!in) pickscore::fail<pickscore::IoError>(what, ": cannot open '", path.string(), "'");
    std::string line;
    std::size_t n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        const std::string where = path.string() + ":" + std::to_string(n) + ": ";
        pickscore::io::Json j;
        try {
            j = pickscore::io::json::parse(line);
        } catch (const pickscore::Error& e) {
            pickscore::fail<FormatError>(where, e.what());
        }
        fn(where, j);
    }
}

inline std::vector<ManifestEntry> read_manifest(const std::filesystem::path& path) {
    using pickscore::FormatError;
    using pickscore::io::Json;
    const std::filesystem::path dir = path.parent_path();
    std::vector<ManifestEntry> out;
    for_each_json_line(path, "manifest", [&](const std::string& where, const Json& j) {
        pickscore::require<FormatError>(j.is_object(), where, "expected a JSON object {\"prompt\": ..., \"images\": [...]}");
        const Json* p = j.find("prompt");
        const Json* imgs = j.find("images");
        pickscore::require<FormatError>(p && p->is_string(), where, "\"prompt\" must be a string");
        pickscore::require<FormatError>(imgs && imgs->is_array(), where, "\"images\" must be an array of paths");
        ManifestEntry e;
        e.query.prompt = p->as_string();
        for (const Json& x : imgs->as_array()) {
            pickscore::require<FormatError>(x.is_string(), where, "\"images\" must be an array of paths");
            std::filesystem::path ip = x.as_string();
            if (ip.is_relative()) ip = dir / ip;
            e.query.images.emplace_back(ip);
        }
        if (const Json* id = j.find("id")) {
            pickscore::require<FormatError>(id->is_string() || id->is_integer(), where, "\"id\" must be a string or integer");
            e.id = id->is_string() ? id->as_string() : std::to_string(id->as_int64());
        }
        out.push_back(std::move(e));
    });
    return out;
}

// A CSV field (RFC 4180 quoting when needed).
inline std::string csv_field(std::string_view s) {
    if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
    std::string q = "\"";
    for (char c : s) {
        if (c == '"') q += '"';
        q += c;
    }
    return q + "\"";
}

inline std::string csv_number(double v) {
    if (!std::isfinite(v)) return "";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

// Reports failed images on stderr; returns the exit status (0 or exit_partial).
inline int report_failures(const char* command, const std::vector<pickscore::ScoreResult>& results) {
    std::size_t failed = 0, total = 0;
    for (const auto& r : results) {
        total += r.images.size();
        for (const auto& s : r.images)
            if (!s.ok()) {
                ++failed;
                std::fprintf(stderr, "pickscore %s: %s\n", command, s.error.c_str());
            }
    }
    if (!failed) return 0;
    std::fprintf(stderr, "pickscore %s: %zu of %zu images failed\n", command, failed, total);
    return exit_partial;
}

}  // namespace pickscore_cli
