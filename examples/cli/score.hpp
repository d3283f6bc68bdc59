// examples/cli/score.hpp — the `pickscore score` and `pickscore rank` commands:
//
//     pickscore score --model PATH --prompt TEXT IMAGE... [--json | --csv] [model flags]
//     pickscore rank  --model PATH --prompt TEXT IMAGE... [--top K] [--copy-to DIR] [--json | --csv]
//     pickscore rank  --model PATH --manifest FILE.jsonl ...
//
// `score` prints each image's numbers in the order given; `rank` sorts them best first (for
// reranking a generator's outputs), keeps the best K, and can copy them to a folder. Both take a
// manifest of many prompts. Output: a table (default), JSON lines (one object per prompt), or CSV.
// Exit status: see examples/cli/scoring.hpp (3 when some images failed). Needs pickscore::io.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <pickscore/io/json.hpp>
#include <pickscore/pickscore.hpp>

#include "scoring.hpp"

inline constexpr const char* score_usage =
    "usage: pickscore score --model PATH --prompt TEXT IMAGE... [--json | --csv] [model flags]\n"
    "       pickscore score --model PATH --manifest FILE.jsonl [--json | --csv] [model flags]\n"
    "  print each image's PickScore for the prompt, in the order given:\n"
    "    score        the preset's score: exp(logit_scale)*cosine (pickscore, clip) or the cosine (hpsv2)\n"
    "    probability  softmax of exp(logit_scale)*cosine over this prompt's images\n"
    "    cosine       cosine of the text and image embeddings\n"
    "  --prompt TEXT        the prompt (with IMAGE... the image files: PNG, JPEG or WebP)\n"
    "  --manifest FILE      JSON lines, one {\"prompt\": \"...\", \"images\": [\"a.png\", ...]} per line (relative\n"
    "                       paths from the manifest's folder)\n"
    "  --json               one JSON object per prompt and line\n"
    "  --csv                prompt,image,rank,score,probability,cosine,scaled,error\n"
    "  --scorer A,B,...     several scorers at once (--model PATH_A,PATH_B,... or NAME=PATH): one score column\n"
    "                       per scorer (table), {\"scores\": {NAME: score}} per image (--json), or\n"
    "                       prompt,image,NAME...,error (--csv); aesthetic and imagereward also alone\n";

inline constexpr const char* rank_usage =
    "usage: pickscore rank --model PATH --prompt TEXT IMAGE... [--top K] [--copy-to DIR] [--json | --csv] [model flags]\n"
    "       pickscore rank --model PATH --manifest FILE.jsonl [--top K] [--copy-to DIR] ...\n"
    "  sort each prompt's images best first (by the preset's score)\n"
    "  --top K              keep the best K of each prompt\n"
    "  --copy-to DIR        copy the kept images to DIR as <rank>_<file name> (with a manifest: into\n"
    "                       DIR/<id>/, the id from the manifest's \"id\" or the prompt's number)\n"
    "  --manifest, --json, --csv   as for `pickscore score`\n";

namespace pickscore_cli {

struct ScoreCommand {
    bool rank = false;
    std::string prompt;
    bool has_prompt = false;
    std::vector<std::string> images;
    std::string manifest;
    enum class Format { table, json, csv } format = Format::table;
    long top = 0;
    std::string copy_to;
    ScorerFlags flags;
};

inline void print_table(const pickscore::ScoreResult& r, const std::vector<std::size_t>& order, bool rank,
                        bool first) {
    const bool has_cosine = std::any_of(r.images.begin(), r.images.end(),
                                        [](const pickscore::ImageScore& s) { return std::isfinite(s.cosine); });
    if (!first) std::printf("\n");
    std::printf("prompt: %s\n", r.prompt.c_str());
    std::printf("%s%10s %12s %10s  %s\n", rank ? "rank " : "", "score", "probability", "cosine", "image");
    const auto ranking = r.ranking();
    std::vector<std::size_t> rank_of(r.images.size(), 0);
    for (std::size_t k = 0; k < ranking.size(); ++k) rank_of[ranking[k]] = k + 1;
    for (std::size_t i : order) {
        const pickscore::ImageScore& s = r.images[i];
        if (rank) std::printf("%4zu ", rank_of[i]);
        if (s.ok() && has_cosine)
            std::printf("%10.4f %12.4f %10.6f  %s\n", s.score, s.probability, s.cosine, s.name.c_str());
        else if (s.ok()) std::printf("%10.4f %12.4f %10s  %s\n", s.score, s.probability, "-", s.name.c_str());
        else std::printf("%10s %12s %10s  %s  (failed)\n", "-", "-", "-", s.name.c_str());
    }
}

inline pickscore::io::Json result_json(const pickscore::ScoreResult& r, const std::vector<std::size_t>& order,
                                       const pickscore::AnyScorer& scorer, double logit_scale) {
    using pickscore::io::Json;
    const auto ranking = r.ranking();
    std::vector<std::size_t> rank_of(r.images.size(), 0);
    for (std::size_t k = 0; k < ranking.size(); ++k) rank_of[ranking[k]] = k + 1;
    Json j = Json::Object{};
    j.set("prompt", r.prompt);
    j.set("preset", scorer.name());
    if (std::isfinite(logit_scale)) j.set("logit_scale", logit_scale);
    Json images = Json::Array{};
    for (std::size_t i : order) {
        const pickscore::ImageScore& s = r.images[i];
        Json e = Json::Object{};
        e.set("image", s.name);
        if (s.ok()) {
            e.set("rank", std::int64_t(rank_of[i]));
            e.set("score", s.score);
            e.set("probability", s.probability);
            if (std::isfinite(s.cosine)) e.set("cosine", s.cosine);
            e.set("scaled", s.scaled);
        } else {
            e.set("error", s.error);
        }
        images.push_back(std::move(e));
    }
    j.set("images", std::move(images));
    return j;
}

// Copies the kept images of one prompt into dir as <rank>_<file name>.
inline void copy_ranked(const pickscore::ScoreResult& r, const std::vector<std::size_t>& kept,
                        const std::vector<pickscore::ImageInput>& inputs, const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) pickscore::fail<pickscore::IoError>("--copy-to: cannot create '", dir.string(), "': ", ec.message());
    const int digits = int(std::to_string(kept.size()).size());
    for (std::size_t k = 0; k < kept.size(); ++k) {
        const std::size_t i = kept[k];
        if (!r.images[i].ok()) continue;
        char prefix[32];
        std::snprintf(prefix, sizeof prefix, "%0*zu_", digits, k + 1);
        const fs::path dst = dir / (prefix + inputs[i].path().filename().string());
        fs::copy_file(inputs[i].path(), dst, fs::copy_options::overwrite_existing, ec);
        if (ec)
            pickscore::fail<pickscore::IoError>("--copy-to: cannot copy '", inputs[i].path().string(), "' to '",
                                                dst.string(), "': ", ec.message());
    }
}

// A folder name from a manifest id: letters, digits, '-', '_', '.' kept, the rest '_'.
inline std::string safe_folder_name(const std::string& id, std::size_t number, std::size_t count) {
    std::string s;
    for (char c : id) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
    if (s.empty() || s == "." || s == "..") {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%0*zu", int(std::to_string(count).size()), number);
        return buf;
    }
    return s;
}

// `pickscore score --scorer A,B,...`: every scorer over the same queries, one column each.
inline int run_multi_score(ScoreCommand& c, const std::vector<std::pair<pickscore::ScorerKind, std::string>>& which,
                           const std::vector<pickscore::Query>& queries, const char* name) {
    using pickscore::io::Json;
    std::vector<std::vector<pickscore::ScoreResult>> all;  // [scorer][query]
    for (const auto& [kind, path] : which) {
        std::unique_ptr<pickscore::AnyScorer> s = c.flags.load_any(kind, path);
        ProgressBar bar(c.flags.show_progress());
        s->set_progress([&](const pickscore::Progress& p) { bar(p); });
        all.push_back(s->score(queries));
    }
    // An image failed when any scorer could not read it (the first message is kept).
    auto error_of = [&](std::size_t q, std::size_t i) -> std::string {
        for (const auto& r : all)
            if (!r[q].images[i].ok()) return r[q].images[i].error;
        return {};
    };
    if (c.format == ScoreCommand::Format::csv) {
        std::printf("prompt,image");
        for (const auto& w : which) std::printf(",%s", pickscore::to_string(w.first));
        std::printf(",error\n");
    }
    std::size_t failed = 0, total = 0;
    for (std::size_t q = 0; q < queries.size(); ++q) {
        const pickscore::ScoreResult& first = all[0][q];
        if (c.format == ScoreCommand::Format::table) {
            if (q) std::printf("\n");
            std::printf("prompt: %s\n", first.prompt.c_str());
            for (const auto& w : which) std::printf("%12s ", pickscore::to_string(w.first));
            std::printf(" image\n");
        }
        Json images = Json::Array{};
        for (std::size_t i = 0; i < first.images.size(); ++i) {
            const std::string err = error_of(q, i);
            ++total;
            if (!err.empty()) {
                ++failed;
                std::fprintf(stderr, "pickscore %s: %s\n", name, err.c_str());
            }
            switch (c.format) {
                case ScoreCommand::Format::table:
                    for (const auto& r : all) {
                        const pickscore::ImageScore& s = r[q].images[i];
                        if (s.ok()) std::printf("%12.4f ", s.score);
                        else std::printf("%12s ", "-");
                    }
                    std::printf(" %s%s\n", first.images[i].name.c_str(), err.empty() ? "" : "  (failed)");
                    break;
                case ScoreCommand::Format::csv:
                    std::printf("%s,%s", csv_field(first.prompt).c_str(), csv_field(first.images[i].name).c_str());
                    for (const auto& r : all) std::printf(",%s", csv_number(r[q].images[i].score).c_str());
                    std::printf(",%s\n", csv_field(err).c_str());
                    break;
                case ScoreCommand::Format::json: {
                    Json e = Json::Object{};
                    e.set("image", first.images[i].name);
                    Json scores = Json::Object{}, probs = Json::Object{};
                    for (std::size_t k = 0; k < which.size(); ++k) {
                        const pickscore::ImageScore& s = all[k][q].images[i];
                        if (!s.ok()) continue;
                        scores.set(pickscore::to_string(which[k].first), s.score);
                        probs.set(pickscore::to_string(which[k].first), s.probability);
                    }
                    e.set("scores", std::move(scores));
                    e.set("probabilities", std::move(probs));
                    if (!err.empty()) e.set("error", err);
                    images.push_back(std::move(e));
                    break;
                }
            }
        }
        if (c.format == ScoreCommand::Format::json) {
            Json j = Json::Object{};
            j.set("prompt", first.prompt);
            Json names = Json::Array{};
            for (const auto& w : which) names.push_back(pickscore::to_string(w.first));
            j.set("scorers", std::move(names));
            j.set("images", std::move(images));
            std::printf("%s\n", pickscore::io::json::dump(j).c_str());
        }
    }
    if (std::fflush(stdout) != 0) return 1;
    if (!failed) return 0;
    std::fprintf(stderr, "pickscore %s: %zu of %zu images failed\n", name, failed, total);
    return exit_partial;
}

inline int run_score_command(ScoreCommand& c, const char* name) {
    if (!c.manifest.empty() && (c.has_prompt || !c.images.empty()))
        throw UsageProblem{"give either --manifest FILE or --prompt TEXT IMAGE..., not both"};
    if (c.manifest.empty() && !c.has_prompt) throw UsageProblem{"missing --prompt TEXT (or --manifest FILE)"};
    if (c.manifest.empty() && c.images.empty()) throw UsageProblem{"no images given"};
    if (!c.rank && (c.top || !c.copy_to.empty())) throw UsageProblem{"--top and --copy-to belong to `pickscore rank`"};

    std::vector<ManifestEntry> entries;
    if (!c.manifest.empty()) {
        entries = read_manifest(c.manifest);
    } else {
        ManifestEntry e;
        e.query.prompt = c.prompt;
        for (const auto& p : c.images) e.query.images.emplace_back(std::filesystem::path(p));
        entries.push_back(std::move(e));
    }
    const auto which = c.flags.scorers();
    std::vector<pickscore::Query> queries;
    for (const auto& e : entries) queries.push_back(e.query);
    if (which.size() > 1) {
        if (c.rank) throw UsageProblem{"rank sorts by one scorer: give --scorer with one name"};
        return run_multi_score(c, which, queries, name);
    }
    std::unique_ptr<pickscore::AnyScorer> loaded = c.flags.load_any(which[0].first, which[0].second);
    pickscore::AnyScorer& scorer = *loaded;
    std::vector<pickscore::ScoreResult> results;
    {
        ProgressBar bar(c.flags.show_progress());
        scorer.set_progress([&](const pickscore::Progress& p) { bar(p); });
        results = scorer.score(queries);
        scorer.set_progress({});
    }
    const double ls = scorer.logit_scale();
    if (c.format == ScoreCommand::Format::csv)
        std::printf("prompt,image,rank,score,probability,cosine,scaled,error\n");
    for (std::size_t q = 0; q < results.size(); ++q) {
        const pickscore::ScoreResult& r = results[q];
        std::vector<std::size_t> order;
        if (c.rank) {
            order = r.ranking();
            if (c.top > 0 && order.size() > std::size_t(c.top)) order.resize(std::size_t(c.top));
            if (!c.copy_to.empty()) {
                std::filesystem::path dir = c.copy_to;
                if (!c.manifest.empty()) dir /= safe_folder_name(entries[q].id, q + 1, results.size());
                copy_ranked(r, order, queries[q].images, dir);
            }
            if (c.top <= 0)  // the failed images at the end (rank 0 / no numbers)
                for (std::size_t i = 0; i < r.images.size(); ++i)
                    if (!r.images[i].ok()) order.push_back(i);
        } else {
            for (std::size_t i = 0; i < r.images.size(); ++i) order.push_back(i);
        }
        switch (c.format) {
            case ScoreCommand::Format::table: print_table(r, order, c.rank, q == 0); break;
            case ScoreCommand::Format::json:
                std::printf("%s\n", pickscore::io::json::dump(result_json(r, order, scorer, ls)).c_str());
                break;
            case ScoreCommand::Format::csv: {
                const auto ranking = r.ranking();
                std::vector<std::size_t> rank_of(r.images.size(), 0);
                for (std::size_t k = 0; k < ranking.size(); ++k) rank_of[ranking[k]] = k + 1;
                for (std::size_t i : order) {
                    const pickscore::ImageScore& s = r.images[i];
                    std::printf("%s,%s,%s,%s,%s,%s,%s,%s\n", csv_field(r.prompt).c_str(), csv_field(s.name).c_str(),
                                s.ok() ? std::to_string(rank_of[i]).c_str() : "", csv_number(s.score).c_str(),
                                csv_number(s.probability).c_str(), csv_number(s.cosine).c_str(),
                                csv_number(s.scaled).c_str(), csv_field(s.error).c_str());
                }
                break;
            }
        }
    }
    if (std::fflush(stdout) != 0) return 1;
    return report_failures(name, results);
}

inline int cmd_score_or_rank(int argc, char** argv, bool rank) {
    const char* name = rank ? "rank" : "score";
    const char* usage = rank ? rank_usage : score_usage;
    ScoreCommand c;
    c.rank = rank;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw UsageProblem{std::string(a) + " needs a value"};
                return argv[++i];
            };
            if (a == "--help" || a == "-h") {
                std::printf("%s%s", usage, scorer_flags_usage);
                return 0;
            } else if (c.flags.parse(argc, argv, i)) {
            } else if (a == "--prompt") {
                c.prompt = value();
                c.has_prompt = true;
            } else if (a == "--manifest") {
                c.manifest = value();
            } else if (a == "--json") {
                c.format = ScoreCommand::Format::json;
            } else if (a == "--csv") {
                c.format = ScoreCommand::Format::csv;
            } else if (rank && a == "--top") {
                const std::string v = value();
                char* end = nullptr;
                c.top = std::strtol(v.c_str(), &end, 10);
                if (v.empty() || *end || c.top < 1) throw UsageProblem{"--top must be a positive number, got '" + v + "'"};
            } else if (rank && a == "--copy-to") {
                c.copy_to = value();
            } else if (a == "--") {
                for (++i; i < argc; ++i) c.images.emplace_back(argv[i]);
            } else if (a.size() > 1 && a[0] == '-') {
                throw UsageProblem{"unknown option '" + std::string(a) + "'"};
            } else {
                c.images.emplace_back(a);
            }
        }
        return run_score_command(c, name);
    } catch (const UsageProblem& u) {
        std::fprintf(stderr, "pickscore %s: %s\n%s%s", name, u.message.c_str(), usage, scorer_flags_usage);
        return 2;
    }
}

}  // namespace pickscore_cli

// argv[0] is the command's name; the arguments follow.
inline int cmd_score(int argc, char** argv) { return pickscore_cli::cmd_score_or_rank(argc, argv, false); }
inline int cmd_rank(int argc, char** argv) { return pickscore_cli::cmd_score_or_rank(argc, argv, true); }
