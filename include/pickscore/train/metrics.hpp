// pickscore/train/metrics.hpp — how preference predictors are scored: PickScore's tie-aware
// accuracy with a threshold chosen on validation, its training-time pairwise accuracy, and rank
// correlations (Spearman, Kendall) for comparing model rankings.
//
// The evaluation protocol of the Pick-a-Pic paper (trainer/scripts/eval_preference_predictor.py):
//   label      "tie" when label_0 == 0.5, "0" when label_0 == 1, else "1"
//   predict    "tie" when |p_1 - p_0| <= t, else the image with the larger probability
//   credit     1 when prediction == label, 0.5 when exactly one of them is a tie, else 0
//   threshold  t in {0, 0.1, ..., 1.0} maximising the mean credit on validation_unique (the first
//              such t on equal accuracy, as np.argmax), then applied to test_unique.
// PickScore's validation during training uses a simpler score: (p_0 > p_1)·y_0 + (p_0 < p_1)·y_1
// per example (a tie label earns 0.5 either way; equal probabilities earn 0): pairwise_accuracy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "../core/error.hpp"

namespace pickscore::train {

enum class Preference : std::uint8_t { first = 0, second = 1, tie = 2 };

// One scored example: the model's probabilities and the human labels.
struct PairScore {
    double p0 = 0.5, p1 = 0.5;
    double y0 = 0.5, y1 = 0.5;
};

inline Preference label_of(double y0) {
    if (y0 == 0.5) return Preference::tie;
    return y0 == 1.0 ? Preference::first : Preference::second;
}

inline Preference predict(double p0, double p1, double threshold) {
    if (std::abs(p1 - p0) <= threshold) return Preference::tie;
    return p0 > p1 ? Preference::first : Preference::second;
}

inline double credit(Preference label, Preference pred) {
    if (label == pred) return 1.0;
    if (label == Preference::tie || pred == Preference::tie) return 0.5;
    return 0.0;
}

// Mean credit at one threshold (0 for an empty set).
inline double tie_accuracy(std::span<const PairScore> s, double threshold) {
    if (s.empty()) return 0.0;
    double sum = 0;
    for (const PairScore& x : s) sum += credit(label_of(x.y0), predict(x.p0, x.p1, threshold));
    return sum / double(s.size());
}

// PickScore's training-time validation metric.
inline double pairwise_accuracy(std::span<const PairScore> s) {
    if (s.empty()) return 0.0;
    double sum = 0;
    for (const PairScore& x : s) sum += (x.p0 > x.p1 ? x.y0 : 0.0) + (x.p0 < x.p1 ? x.y1 : 0.0);
    return sum / double(s.size());
}

// The thresholds of the protocol: 0, 0.1, ..., 1.0 (i / 10 is the double nearest each literal).
inline std::vector<double> protocol_thresholds() {
    std::vector<double> t;
    for (int i = 0; i <= 10; ++i) t.push_back(double(i) / 10.0);
    return t;
}

struct ThresholdChoice {
    double threshold = 0.0;
    double accuracy = 0.0;               // at that threshold, on the set it was chosen on
    std::vector<double> accuracies;      // at every protocol threshold
};

// The protocol threshold with the best tie-aware accuracy (the first on equal accuracy).
inline ThresholdChoice choose_threshold(std::span<const PairScore> s) {
    ThresholdChoice c;
    const auto ts = protocol_thresholds();
    std::size_t best = 0;
    for (std::size_t i = 0; i < ts.size(); ++i) {
        c.accuracies.push_back(tie_accuracy(s, ts[i]));
        if (c.accuracies[i] > c.accuracies[best]) best = i;
    }
    c.threshold = ts[best];
    c.accuracy = c.accuracies[best];
    return c;
}

// The expected accuracy of a random predictor at threshold t (the paper script's baseline):
// ties earn t·1 + (1 - t)/2, the others 1/2.
inline double chance_accuracy(std::span<const PairScore> s, double threshold) {
    if (s.empty()) return 0.0;
    double ties = 0;
    for (const PairScore& x : s) ties += label_of(x.y0) == Preference::tie;
    const double n = double(s.size());
    return (threshold + (1.0 - threshold) / 2.0) * ties / n + (n - ties) / n * 0.5;
}

// ---- rank correlations ------------------------------------------------------------------------

// Ranks 1..n with ties given the mean of the ranks they span.
inline std::vector<double> average_ranks(std::span<const double> x) {
    const std::size_t n = x.size();
    std::vector<std::size_t> idx(n);
    std::iota(idx.begin(), idx.end(), std::size_t(0));
    std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
    std::vector<double> r(n);
    for (std::size_t i = 0; i < n;) {
        std::size_t j = i;
        while (j + 1 < n && x[idx[j + 1]] == x[idx[i]]) ++j;
        const double avg = (double(i) + double(j)) / 2.0 + 1.0;
        for (std::size_t k = i; k <= j; ++k) r[idx[k]] = avg;
        i = j + 1;
    }
    return r;
}

inline double pearson(std::span<const double> a, std::span<const double> b) {
    require(a.size() == b.size(), "pearson: ", a.size(), " and ", b.size(), " values");
    const std::size_t n = a.size();
    require(n >= 2, "pearson: at least two values needed");
    double ma = 0, mb = 0;
    for (std::size_t i = 0; i < n; ++i) {
        ma += a[i];
        mb += b[i];
    }
    ma /= double(n);
    mb /= double(n);
    double sab = 0, saa = 0, sbb = 0;
    for (std::size_t i = 0; i < n; ++i) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    require(saa > 0 && sbb > 0, "correlation: a sequence is constant");
    return sab / std::sqrt(saa * sbb);
}

// Spearman's rho: the Pearson correlation of the average ranks (scipy.stats.spearmanr).
inline double spearman(std::span<const double> x, std::span<const double> y) {
    require(x.size() == y.size(), "spearman: ", x.size(), " and ", y.size(), " values");
    const auto rx = average_ranks(x), ry = average_ranks(y);
    return pearson(rx, ry);
}

// Kendall's tau-b (scipy.stats.kendalltau's default): (C - D) / sqrt((n0 - n1)(n0 - n2)) with
// n0 = n(n-1)/2 and n1, n2 the pairs tied in x, in y. O(n²): for model rankings, not big data.
inline double kendall_tau_b(std::span<const double> x, std::span<const double> y) {
    require(x.size() == y.size(), "kendall_tau_b: ", x.size(), " and ", y.size(), " values");
    const std::size_t n = x.size();
    require(n >= 2, "kendall_tau_b: at least two values needed");
    double concordant = 0, discordant = 0, tied_x = 0, tied_y = 0;
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = i + 1; j < n; ++j) {
            const double dx = x[i] - x[j], dy = y[i] - y[j];
            if (dx == 0) tied_x += 1;
            if (dy == 0) tied_y += 1;
            if (dx == 0 || dy == 0) continue;
            if ((dx > 0) == (dy > 0)) concordant += 1;
            else discordant += 1;
        }
    const double n0 = double(n) * double(n - 1) / 2.0;
    const double denom = std::sqrt((n0 - tied_x) * (n0 - tied_y));
    require(denom > 0, "kendall_tau_b: a sequence is constant");
    return (concordant - discordant) / denom;
}

}  // namespace pickscore::train
