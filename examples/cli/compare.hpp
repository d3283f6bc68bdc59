// examples/cli/compare.hpp — `pickscore compare`: judge generators by one or more scorers.
//
//     pickscore compare --manifest FILE.jsonl --scorer NAME[,NAME...] --model PATH[,PATH...] [--json]
//
// The manifest (JSON lines, one image per line; relative paths from the manifest's folder):
//     {"prompt": "a red cat", "generator": "sdxl", "image": "sdxl/0001.png"}
// ("images": [...] instead of "image" gives several images of that generator for the prompt).
// Images of the same prompt are compared with each other. Printed per scorer: each generator's mean
// score with a 95% bootstrap interval (prompts resampled), the pairwise win rates (probability-
// weighted preference on shared prompts), and, with several scorers, Spearman's rho between their
// rankings of the generators (include/pickscore/compare.hpp defines each number). --json writes one
// object that tools/plot_compare.py draws. Needs pickscore::io.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <pickscore/compare.hpp>
#include <pickscore/io/json.hpp>
#include <pickscore/scorers.hpp>

#include "scoring.hpp"

inline constexpr const char* compare_usage =
    "usage: pickscore compare --manifest FILE.jsonl --scorer NAME[,NAME...] --model PATH[,PATH...] [--json]\n"
    "                         [--bootstrap N] [--seed S] [model flags]\n"
    "  per generator and scorer: the mean score with a 95% bootstrap interval over prompts, the pairwise\n"
    "  win rates (row beats column: mean over shared prompts of the scorer's preference probability),\n"
    "  and Spearman's rho between the scorers' rankings of the generators\n"
    "  --manifest FILE   JSON lines {\"prompt\": ..., \"generator\": ..., \"image\": PATH} (or \"images\": [...]);\n"
    "                    relative paths from the manifest's folder\n"
    "  --bootstrap N     bootstrap resamples (default 1000; 0: no interval)\n"
    "  --seed S          the bootstrap's seed (default 0)\n"
    "  --json            one JSON object (tools/plot_compare.py draws it)\n";

namespace pickscore_cli {

struct CompareManifest {
    std::vector<std::string> prompts, generators;
    struct Item {
        std::int64_t prompt, generator;
        std::filesystem::path image;
    };
    std::vector<Item> items;
};

inline CompareManifest read_compare_manifest(const std::filesystem::path& path) {
    using pickscore::FormatError;
    using pickscore::io::Json;
    CompareManifest m;
    std::map<std::string, std::int64_t> prompt_id, gen_id;
    auto id_of = [](std::map<std::string, std::int64_t>& ids, std::vector<std::string>& names, const std::string& s) {
        const auto it = ids.find(s);
        if (it != ids.end()) return it->second;
        names.push_back(s);
        return ids[s] = std::int64_t(names.size() - 1);
    };
    for_each_json_line(path, "compare manifest", [&](const std::string& where, const Json& j) {
        pickscore::require<FormatError>(j.is_object(), where,
                                        "expected a JSON object {\"prompt\": ..., \"generator\": ..., \"image\": ...}");
        const Json* p = j.find("prompt");
        const Json* g = j.find("generator");
        pickscore::require<FormatError>(p && p->is_string(), where, "\"prompt\" must be a string");
        pickscore::require<FormatError>(g && g->is_string() && !g->as_string().empty(), where,
                                        "\"generator\" must be a non-empty string");
        std::vector<std::string> images;
        if (const Json* im = j.find("image")) {
            pickscore::require<FormatError>(im->is_string(), where, "\"image\" must be a path");
            images.push_back(im->as_string());
        }
        if (const Json* ims = j.find("images")) {
            pickscore::require<FormatError>(ims->is_array(), where, "\"images\" must be an array of paths");
            for (const Json& x : ims->as_array()) {
                pickscore::require<FormatError>(x.is_string(), where, "\"images\" must be an array of paths");
                images.push_back(x.as_string());
            }
        }
        pickscore::require<FormatError>(!images.empty(), where, "no \"image\" (or \"images\") given");
        const std::int64_t pi = id_of(prompt_id, m.prompts, p->as_string());
        const std::int64_t gi = id_of(gen_id, m.generators, g->as_string());
        for (const std::string& s : images) {
            std::filesystem::path ip = s;
            if (ip.is_relative()) ip = path.parent_path() / ip;
            m.items.push_back({pi, gi, ip});
        }
    });
    pickscore::require<FormatError>(!m.items.empty(), "compare manifest '", path.string(), "' holds no images");
    return m;
}

struct ScorerComparison {
    std::string scorer, meaning;
    pickscore::compare::Summary summary;
    std::int64_t failed = 0;
};

// Scores the manifest with one scorer (one query per prompt, all its generators' images).
inline ScorerComparison compare_with(pickscore::AnyScorer& s, const CompareManifest& m,
                                     const pickscore::compare::Options& o, bool progress) {
    std::vector<pickscore::Query> queries(m.prompts.size());
    std::vector<std::vector<std::int64_t>> gen_of(m.prompts.size());
    for (std::size_t p = 0; p < m.prompts.size(); ++p) queries[p].prompt = m.prompts[p];
    for (const auto& it : m.items) {
        queries[std::size_t(it.prompt)].images.emplace_back(it.image);
        gen_of[std::size_t(it.prompt)].push_back(it.generator);
    }
    std::vector<pickscore::ScoreResult> res;
    {
        ProgressBar bar(progress);
        s.set_progress([&](const pickscore::Progress& p) { bar(p); });
        res = s.score(queries);
        s.set_progress({});
    }
    pickscore::compare::Table t(std::int64_t(m.prompts.size()), std::int64_t(m.generators.size()));
    ScorerComparison c;
    c.scorer = s.name();
    c.meaning = s.score_meaning();
    for (std::size_t p = 0; p < res.size(); ++p)
        for (std::size_t i = 0; i < res[p].images.size(); ++i) {
            const pickscore::ImageScore& x = res[p].images[i];
            if (!x.ok()) {
                ++c.failed;
                std::fprintf(stderr, "pickscore compare: %s\n", x.error.c_str());
                continue;
            }
            t.add(std::int64_t(p), gen_of[p][i], x.score, x.scaled);
        }
    c.summary = pickscore::compare::summarize(t, o);
    return c;
}

inline pickscore::io::Json json_number_or_null(double v) {
    return std::isfinite(v) ? pickscore::io::Json(v) : pickscore::io::Json(nullptr);
}

inline int cmd_compare(int argc, char** argv) {
    ScorerFlags flags;
    std::string manifest;
    bool json = false;
    pickscore::compare::Options opt;
    try {
        for (int i = 1; i < argc; ++i) {
            const std::string_view a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw UsageProblem{std::string(a) + " needs a value"};
                return argv[++i];
            };
            auto number = [&](long long lo, long long hi) {
                const std::string v = value();
                char* end = nullptr;
                const long long x = std::strtoll(v.c_str(), &end, 10);
                if (v.empty() || *end || x < lo || x > hi)
                    throw UsageProblem{std::string(a) + " must be a number from " + std::to_string(lo) + " to " +
                                       std::to_string(hi) + ", got '" + v + "'"};
                return x;
            };
            if (a == "--help" || a == "-h") {
                std::printf("%s%s", compare_usage, scorer_flags_usage);
                return 0;
            } else if (flags.parse(argc, argv, i)) {
            } else if (a == "--manifest") {
                manifest = value();
            } else if (a == "--json") {
                json = true;
            } else if (a == "--bootstrap") {
                opt.bootstrap = number(0, 1000000);
            } else if (a == "--seed") {
                opt.seed = std::uint64_t(number(0, (1LL << 62)));
            } else {
                throw UsageProblem{"unknown argument '" + std::string(a) + "'"};
            }
        }
        if (manifest.empty()) throw UsageProblem{"missing --manifest FILE.jsonl"};
        const auto which = flags.scorers();
        const CompareManifest m = read_compare_manifest(manifest);
        std::vector<ScorerComparison> all;
        for (const auto& [kind, path] : which) {
            std::unique_ptr<pickscore::AnyScorer> s = flags.load_any(kind, path);
            all.push_back(compare_with(*s, m, opt, flags.show_progress()));
        }
        const std::size_t G = m.generators.size();
        std::vector<std::vector<double>> rho(all.size(), std::vector<double>(all.size()));
        for (std::size_t a = 0; a < all.size(); ++a)
            for (std::size_t b = 0; b < all.size(); ++b)
                rho[a][b] = pickscore::compare::ranking_agreement(all[a].summary, all[b].summary);
        std::int64_t failed = 0;
        for (const auto& c : all) failed = std::max(failed, c.failed);
        if (json) {
            using pickscore::io::Json;
            Json j = Json::Object{};
            j.set("manifest", manifest);
            j.set("prompts", std::int64_t(m.prompts.size()));
            j.set("images", std::int64_t(m.items.size()));
            Json gens = Json::Array{};
            for (const auto& g : m.generators) gens.push_back(g);
            j.set("generators", std::move(gens));
            j.set("bootstrap", opt.bootstrap);
            j.set("seed", std::int64_t(opt.seed));
            Json scorers = Json::Array{};
            for (const auto& c : all) {
                Json e = Json::Object{};
                e.set("scorer", c.scorer);
                e.set("score", c.meaning);
                e.set("failed", c.failed);
                Json gs = Json::Array{};
                for (std::size_t g = 0; g < G; ++g) {
                    const auto& x = c.summary.generators[g];
                    Json o = Json::Object{};
                    o.set("generator", m.generators[g]);
                    o.set("mean", json_number_or_null(x.mean));
                    o.set("ci_low", json_number_or_null(x.low));
                    o.set("ci_high", json_number_or_null(x.high));
                    o.set("images", x.images);
                    o.set("prompts", x.prompts);
                    gs.push_back(std::move(o));
                }
                e.set("generators", std::move(gs));
                Json win = Json::Array{};
                for (std::size_t a = 0; a < G; ++a) {
                    Json row = Json::Array{};
                    for (std::size_t b = 0; b < G; ++b) row.push_back(json_number_or_null(c.summary.win[a][b]));
                    win.push_back(std::move(row));
                }
                e.set("win_rates", std::move(win));
                scorers.push_back(std::move(e));
            }
            j.set("scorers", std::move(scorers));
            Json sp = Json::Array{};
            for (const auto& row : rho) {
                Json r = Json::Array{};
                for (double v : row) r.push_back(json_number_or_null(v));
                sp.push_back(std::move(r));
            }
            j.set("spearman", std::move(sp));
            std::printf("%s\n", pickscore::io::json::dump(j).c_str());
        } else {
            std::printf("%zu prompts, %zu generators, %zu images; 95%% intervals from %lld bootstrap resamples of the prompts\n",
                        m.prompts.size(), G, m.items.size(), (long long)opt.bootstrap);
            for (const auto& c : all) {
                std::printf("\nscorer: %s (%s)\n", c.scorer.c_str(), c.meaning.c_str());
                std::printf("%-20s %12s %25s %7s\n", "generator", "mean", "95% interval", "images");
                for (std::size_t g = 0; g < G; ++g) {
                    const auto& x = c.summary.generators[g];
                    std::printf("%-20s %12.4f   [%10.4f, %10.4f] %7lld\n", m.generators[g].c_str(), x.mean, x.low, x.high,
                                (long long)x.images);
                }
                if (G > 1) {
                    std::printf("win rates (row beats column):\n%-20s", "");
                    for (std::size_t b = 0; b < G; ++b) std::printf(" %10.10s", m.generators[b].c_str());
                    std::printf("\n");
                    for (std::size_t a = 0; a < G; ++a) {
                        std::printf("%-20s", m.generators[a].c_str());
                        for (std::size_t b = 0; b < G; ++b) {
                            if (a == b || !std::isfinite(c.summary.win[a][b])) std::printf(" %10s", "-");
                            else std::printf(" %10.3f", c.summary.win[a][b]);
                        }
                        std::printf("\n");
                    }
                }
            }
            if (all.size() > 1) {
                std::printf("\nagreement between scorers (Spearman's rho of the generator means):\n%-12s", "");
                for (const auto& c : all) std::printf(" %11s", c.scorer.c_str());
                std::printf("\n");
                for (std::size_t a = 0; a < all.size(); ++a) {
                    std::printf("%-12s", all[a].scorer.c_str());
                    for (std::size_t b = 0; b < all.size(); ++b) {
                        if (std::isfinite(rho[a][b])) std::printf(" %11.3f", rho[a][b]);
                        else std::printf(" %11s", "-");
                    }
                    std::printf("\n");
                }
            }
        }
        if (std::fflush(stdout) != 0) return 1;
        return failed ? exit_partial : 0;
    } catch (const UsageProblem& u) {
        std::fprintf(stderr, "pickscore compare: %s\n%s%s", u.message.c_str(), compare_usage, scorer_flags_usage);
        return 2;
    }
}

}  // namespace pickscore_cli

inline int cmd_compare(int argc, char** argv) { return pickscore_cli::cmd_compare(argc, argv); }
