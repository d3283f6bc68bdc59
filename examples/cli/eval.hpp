// examples/cli/eval.hpp — `pickscore eval`: the Pick-a-Pic paper's table for any scorer.
//
//     pickscore eval --scorer NAME[,NAME...] --model PATH[,PATH...] --split FILE [--val FILE] [--json]
//
// For each scorer: each example's two images are scored with the prompt, p0/p1 = the scorer's
// probabilities (softmax over the two); the tie threshold t in {0, 0.1, ..., 1} is chosen on the
// validation set (--val; without it on the test set itself, and the output says so) and the tie-aware
// accuracy at t is reported on the test set (train/metrics.hpp has the protocol). FILE is what the
// data layer reads (data/dataset.hpp): a shard, a folder of shards / manifests, or a JSONL manifest
// with labels; only labelled examples count. An example whose image cannot be read is skipped and
// counted. Needs pickscore::io.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pickscore/data/dataset.hpp>
#include <pickscore/io/json.hpp>
#include <pickscore/scorers.hpp>
#include <pickscore/train/metrics.hpp>

#include "scoring.hpp"

inline constexpr const char* eval_usage =
    "usage: pickscore eval --scorer NAME[,NAME...] --model PATH[,PATH...] --split FILE [--val FILE] [--json] [model flags]\n"
    "  the Pick-a-Pic paper's evaluation for each scorer: tie-aware accuracy on --split with the tie\n"
    "  threshold (0, 0.1, ..., 1) chosen on --val (without --val: on --split itself)\n"
    "  --split FILE   the test examples: a pickscore shard, a folder of shards / JSONL manifests, or a JSONL\n"
    "                 manifest ({\"prompt\", \"images\": [a, b], \"label\": 0 | 1 | \"tie\"} per line)\n"
    "  --val FILE     the validation examples, same formats\n"
    "  --limit N      only the first N examples of each set\n"
    "  --json         one JSON object instead of the table\n"
    "  output: scorer, accuracy (test), threshold, accuracy on validation at it, examples scored\n";

namespace pickscore_cli {

struct EvalSet {
    std::string path;
    std::vector<pickscore::train::PairScore> scores;
    std::int64_t examples = 0, skipped = 0;
};

// Scores every labelled example of `path` with `scorer`; p0, p1 from the scorer's probabilities.
inline EvalSet score_eval_set(pickscore::AnyScorer& scorer, const std::string& path, std::int64_t limit,
                              bool progress) {
    namespace data = pickscore::data;
    EvalSet out;
    out.path = path;
    data::DatasetFilter f;
    f.keep_only_with_label = true;
    data::Dataset ds = data::Dataset::open(path).filter(f);
    std::int64_t n = ds.size();
    if (limit > 0) n = std::min(n, limit);
    ProgressBar bar(progress);
    constexpr std::int64_t chunk = 64;  // examples held in memory at once
    for (std::int64_t at = 0; at < n; at += chunk) {
        const std::int64_t m = std::min(chunk, n - at);
        std::vector<data::Record> recs;
        std::vector<pickscore::Query> queries;
        for (std::int64_t i = 0; i < m; ++i) recs.push_back(ds.get(at + i));
        for (const data::Record& r : recs) {
            pickscore::Query q;
            q.prompt = r.caption;
            for (std::size_t k = 0; k < 2; ++k) q.images.push_back(pickscore::ImageInput::encoded(r.image[k], r.image_name[k]));
            queries.push_back(std::move(q));
        }
        const std::vector<pickscore::ScoreResult> res = scorer.score(queries);
        for (std::size_t i = 0; i < res.size(); ++i) {
            const auto& im = res[i].images;
            if (!im[0].ok() || !im[1].ok()) {
                ++out.skipped;
                std::fprintf(stderr, "pickscore eval: %s: example %lld skipped: %s\n", path.c_str(),
                             (long long)(at + std::int64_t(i)), (!im[0].ok() ? im[0] : im[1]).error.c_str());
                continue;
            }
            pickscore::train::PairScore p;
            p.p0 = im[0].probability;
            p.p1 = im[1].probability;
            p.y0 = recs[i].label[0];
            p.y1 = recs[i].label[1];
            out.scores.push_back(p);
        }
        bar(pickscore::Progress{at + m, n, "examples"});
    }
    out.examples = std::int64_t(out.scores.size());
    return out;
}

struct EvalRow {
    std::string scorer;
    double accuracy = 0, threshold = 0, val_accuracy = 0;
    std::int64_t examples = 0, skipped = 0, val_examples = 0;
};

inline int cmd_eval(int argc, char** argv) {
    ScorerFlags flags;
    std::string split, val;
    std::int64_t limit = 0;
    bool json = false;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw UsageProblem{std::string(a) + " needs a value"};
                return argv[++i];
            };
            if (a == "--help" || a == "-h") {
                std::printf("%s%s", eval_usage, scorer_flags_usage);
                return 0;
            } else if (flags.parse(argc, argv, i)) {
            } else if (a == "--split" || a == "--test") {
                split = value();
            } else if (a == "--val") {
                val = value();
            } else if (a == "--limit") {
                const std::string v = value();
                char* end = nullptr;
                limit = std::strtoll(v.c_str(), &end, 10);
                if (v.empty() || *end || limit < 1) throw UsageProblem{"--limit must be a positive number, got '" + v + "'"};
            } else if (a == "--json") {
                json = true;
            } else {
                throw UsageProblem{"unknown argument '" + std::string(a) + "'"};
            }
        }
        if (split.empty()) throw UsageProblem{"missing --split FILE (the test examples)"};
        const auto which = flags.scorers();
        std::vector<EvalRow> rows;
        for (const auto& [kind, path] : which) {
            std::unique_ptr<pickscore::AnyScorer> s = flags.load_any(kind, path);
            const EvalSet test = score_eval_set(*s, split, limit, flags.show_progress());
            pickscore::require(test.examples > 0, "eval: no labelled example of '", split, "' could be scored");
            EvalRow r;
            r.scorer = pickscore::to_string(kind);
            r.examples = test.examples;
            r.skipped = test.skipped;
            if (!val.empty()) {
                const EvalSet v = score_eval_set(*s, val, limit, flags.show_progress());
                pickscore::require(v.examples > 0, "eval: no labelled example of '", val, "' could be scored");
                const auto choice = pickscore::train::choose_threshold(v.scores);
                r.threshold = choice.threshold;
                r.val_accuracy = choice.accuracy;
                r.val_examples = v.examples;
            } else {
                const auto choice = pickscore::train::choose_threshold(test.scores);
                r.threshold = choice.threshold;
                r.val_accuracy = choice.accuracy;
                r.val_examples = test.examples;
            }
            r.accuracy = pickscore::train::tie_accuracy(test.scores, r.threshold);
            rows.push_back(r);
        }
        if (json) {
            using pickscore::io::Json;
            Json j = Json::Object{};
            j.set("split", split);
            j.set("threshold_chosen_on", val.empty() ? split : val);
            Json arr = Json::Array{};
            for (const EvalRow& r : rows) {
                Json e = Json::Object{};
                e.set("scorer", r.scorer);
                e.set("accuracy", r.accuracy);
                e.set("threshold", r.threshold);
                e.set("val_accuracy", r.val_accuracy);
                e.set("examples", r.examples);
                e.set("skipped", r.skipped);
                e.set("val_examples", r.val_examples);
                arr.push_back(std::move(e));
            }
            j.set("scorers", std::move(arr));
            std::printf("%s\n", pickscore::io::json::dump(j).c_str());
        } else {
            std::printf("test: %s\n", split.c_str());
            if (val.empty()) std::printf("tie threshold chosen on: the test set itself (no --val given)\n");
            else std::printf("tie threshold chosen on: %s\n", val.c_str());
            std::printf("%-12s %9s %10s %13s %9s %8s\n", "scorer", "accuracy", "threshold", "val accuracy", "examples",
                        "skipped");
            for (const EvalRow& r : rows)
                std::printf("%-12s %8.2f%% %10.1f %12.2f%% %9lld %8lld\n", r.scorer.c_str(), 100.0 * r.accuracy,
                            r.threshold, 100.0 * r.val_accuracy, (long long)r.examples, (long long)r.skipped);
        }
        return std::fflush(stdout) == 0 ? 0 : 1;
    } catch (const UsageProblem& u) {
        std::fprintf(stderr, "pickscore eval: %s\n%s%s", u.message.c_str(), eval_usage, scorer_flags_usage);
        return 2;
    }
}

}  // namespace pickscore_cli

inline int cmd_eval(int argc, char** argv) { return pickscore_cli::cmd_eval(argc, argv); }
