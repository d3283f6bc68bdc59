// pickscore/compare.hpp — judging generators by scorers: per generator the mean score with a
// bootstrap interval, pairwise win rates, and how scorers agree on the ranking of generators.
// (`pickscore compare` is this over a manifest; the arithmetic here works on scores already computed.)
//
//   compare::Table t;                                         // prompts x generators → scores
//   t.add(prompt_index, generator_index, score, logit);       // one per scored image
//   auto s = compare::summarize(t, {.bootstrap = 1000, .seed = 0});
//   s.generators[g].mean, .low, .high;  s.win[a][b]
//
// Definitions:
//   mean       the mean score of a generator's images (every scored image counts once).
//   interval   percentile bootstrap over prompts: `bootstrap` times, P prompts are drawn with
//              replacement (the same draw for every generator, so the images of a prompt stay
//              together) and each generator's mean over the drawn prompts' images is taken; the
//              2.5th and 97.5th percentiles (linear interpolation between order statistics) are
//              the 95% interval. Draws in which a generator has no image are left out for it.
//   win rate   win[a][b]: over the prompts where both a and b have scored images, the mean over
//              those prompts of the mean over image pairs (i of a, j of b) of
//              sigmoid(logit_i - logit_j) — the probability, under the scorer, that a person prefers
//              a's image (the Bradley-Terry / softmax reading PickScore is trained with). So
//              win[a][b] + win[b][a] = 1. NaN when no prompt has both.
//   agreement  Spearman's rho between two scorers' generator means (train/metrics.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "core/error.hpp"
#include "core/random.hpp"
#include "train/metrics.hpp"

namespace pickscore::compare {

struct Entry {
    std::int64_t prompt = 0, generator = 0;
    double score = 0, logit = 0;
};

// The scored images of one scorer.
struct Table {
    std::int64_t prompts = 0, generators = 0;
    std::vector<Entry> entries;

    Table(std::int64_t num_prompts, std::int64_t num_generators) : prompts(num_prompts), generators(num_generators) {
        require(num_prompts >= 0 && num_generators >= 0, "compare::Table: negative size");
    }
    void add(std::int64_t prompt, std::int64_t generator, double score, double logit) {
        require(prompt >= 0 && prompt < prompts, "compare::Table::add: prompt ", prompt, " outside [0, ", prompts, ")");
        require(generator >= 0 && generator < generators, "compare::Table::add: generator ", generator, " outside [0, ",
                generators, ")");
        require(std::isfinite(score) && std::isfinite(logit), "compare::Table::add: a score is not finite");
        entries.push_back({prompt, generator, score, logit});
    }
};

struct Options {
    std::int64_t bootstrap = 1000;  // resamples (0: no interval)
    std::uint64_t seed = 0;
    double level = 0.95;
};

struct GeneratorSummary {
    std::int64_t images = 0, prompts = 0;
    double mean = std::numeric_limits<double>::quiet_NaN();
    double low = std::numeric_limits<double>::quiet_NaN(), high = std::numeric_limits<double>::quiet_NaN();
};

struct Summary {
    std::vector<GeneratorSummary> generators;
    std::vector<std::vector<double>> win;                 // win[a][b], NaN on the diagonal
    std::vector<std::vector<std::int64_t>> win_prompts;   // prompts behind win[a][b]
};

// The q-quantile of sorted values, linear between order statistics (numpy's default).
inline double quantile_sorted(std::span<const double> v, double q) {
    require(!v.empty(), "quantile_sorted: no values");
    const double pos = q * double(v.size() - 1);
    const std::size_t lo = std::size_t(std::floor(pos)), hi = std::min(v.size() - 1, lo + 1);
    return v[lo] + (pos - double(lo)) * (v[hi] - v[lo]);
}

inline Summary summarize(const Table& t, const Options& o = {}) {
    require(o.bootstrap >= 0, "compare::summarize: bootstrap must not be negative");
    require(o.level > 0 && o.level < 1, "compare::summarize: level must be in (0, 1)");
    const std::size_t G = std::size_t(t.generators), P = std::size_t(t.prompts);
    Summary s;
    s.generators.resize(G);
    // Per prompt and generator: sum and count of scores, and the logits.
    std::vector<double> sum(P * G, 0.0);
    std::vector<std::int64_t> cnt(P * G, 0);
    std::vector<std::vector<double>> logits(P * G);
    for (const Entry& e : t.entries) {
        const std::size_t k = std::size_t(e.prompt) * G + std::size_t(e.generator);
        sum[k] += e.score;
        cnt[k] += 1;
        logits[k].push_back(e.logit);
    }
    for (std::size_t g = 0; g < G; ++g) {
        double total = 0;
        std::int64_t n = 0, np = 0;
        for (std::size_t p = 0; p < P; ++p) {
            total += sum[p * G + g];
            n += cnt[p * G + g];
            np += cnt[p * G + g] > 0;
        }
        s.generators[g].images = n;
        s.generators[g].prompts = np;
        if (n > 0) s.generators[g].mean = total / double(n);
    }
    // Bootstrap over prompts.
    if (o.bootstrap > 0 && P > 0) {
        Rng rng(o.seed);
        std::vector<std::vector<double>> means(G);
        std::vector<std::int64_t> times(P);
        for (std::int64_t b = 0; b < o.bootstrap; ++b) {
            std::fill(times.begin(), times.end(), 0);
            for (std::size_t i = 0; i < P; ++i) {
                std::size_t k = std::size_t(rng.uniform() * double(P));
                if (k >= P) k = P - 1;
                ++times[k];
            }
            for (std::size_t g = 0; g < G; ++g) {
                double total = 0;
                std::int64_t n = 0;
                for (std::size_t p = 0; p < P; ++p) {
                    total += double(times[p]) * sum[p * G + g];
                    n += times[p] * cnt[p * G + g];
                }
                if (n > 0) means[g].push_back(total / double(n));
            }
        }
        const double a = (1.0 - o.level) / 2.0;
        for (std::size_t g = 0; g < G; ++g) {
            if (means[g].empty()) continue;
            std::sort(means[g].begin(), means[g].end());
            s.generators[g].low = quantile_sorted(means[g], a);
            s.generators[g].high = quantile_sorted(means[g], 1.0 - a);
        }
    }
    // Win rates.
    s.win.assign(G, std::vector<double>(G, std::numeric_limits<double>::quiet_NaN()));
    s.win_prompts.assign(G, std::vector<std::int64_t>(G, 0));
    for (std::size_t a = 0; a < G; ++a)
        for (std::size_t b = 0; b < G; ++b) {
            if (a == b) continue;
            double total = 0;
            std::int64_t n = 0;
            for (std::size_t p = 0; p < P; ++p) {
                const auto& la = logits[p * G + a];
                const auto& lb = logits[p * G + b];
                if (la.empty() || lb.empty()) continue;
                double w = 0;
                for (double x : la)
                    for (double y : lb) w += 1.0 / (1.0 + std::exp(y - x));
                total += w / double(la.size() * lb.size());
                ++n;
            }
            s.win_prompts[a][b] = n;
            if (n > 0) s.win[a][b] = total / double(n);
        }
    return s;
}

// Spearman's rho between two scorers' generator means over the generators both scored; NaN when
// fewer than two such generators or when either ranking is constant.
inline double ranking_agreement(const Summary& x, const Summary& y) {
    require(x.generators.size() == y.generators.size(), "compare::ranking_agreement: ", x.generators.size(), " and ",
            y.generators.size(), " generators");
    std::vector<double> a, b;
    for (std::size_t g = 0; g < x.generators.size(); ++g)
        if (std::isfinite(x.generators[g].mean) && std::isfinite(y.generators[g].mean)) {
            a.push_back(x.generators[g].mean);
            b.push_back(y.generators[g].mean);
        }
    if (a.size() < 2) return std::numeric_limits<double>::quiet_NaN();
    const bool const_a = std::all_of(a.begin(), a.end(), [&](double v) { return v == a[0]; });
    const bool const_b = std::all_of(b.begin(), b.end(), [&](double v) { return v == b[0]; });
    if (const_a || const_b) return std::numeric_limits<double>::quiet_NaN();
    return train::spearman(a, b);
}

}  // namespace pickscore::compare
