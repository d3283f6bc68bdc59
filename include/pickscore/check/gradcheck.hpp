// pickscore/check/gradcheck.hpp — backward passes against central finite differences, in double.
//
// Used by the tests (through tests/support/gradcheck.hpp, which turns failures into doctest
// assertions) and by `pickscore selfcheck`. The caller provides, for every input of an op, the
// tensor (perturbed in place and restored) and the analytic gradient of a scalar loss, plus a
// function that recomputes that loss from the current inputs. For every input the check compares
//   - the directional derivative along several random unit directions (a random direction sees
//     every element at once, so any wrong element shows), and
//   - a few single coordinates (errors that cancel in a sum still show),
// each as (L(x + h·v) − L(x − h·v)) / 2h against <grad, v>.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/random.hpp"
#include "../core/tensor.hpp"

namespace pickscore::check {

struct GradInput {
    std::string name;
    TensorView<double, Cpu> value;           // perturbed in place, restored afterwards
    TensorView<const double, Cpu> gradient;  // the analytic dL/dvalue
};

struct GradCheckOptions {
    int directions = 3;
    int coordinates = 4;
    double step = 1e-5;
    double rtol = 1e-6;
};

// One comparison of a finite difference with the backward pass.
struct GradComparison {
    std::string input;
    std::string probe;  // "random direction k" or "element i"
    double finite_difference = 0;
    double analytic = 0;
    double tolerance = 0;
    bool ok() const { return std::abs(finite_difference - analytic) <= tolerance; }
    // |difference| relative to the tolerance: <= 1 passes.
    double score() const { return std::abs(finite_difference - analytic) / tolerance; }
};

// Runs every probe and returns all comparisons (the caller decides how to report them).
inline std::vector<GradComparison> compare_gradients(const std::vector<GradInput>& inputs,
                                                     const std::function<double()>& loss, Rng& rng,
                                                     const GradCheckOptions& opt = {}) {
    const double l0 = loss();
    require(std::isfinite(l0), "gradient check: the loss is not finite (", l0, ")");
    // Rounding in the difference is about eps·|L|/h; truncation is O(h²) and covered by rtol.
    const double noise = 1e-9 * (1.0 + std::abs(l0));
    std::vector<GradComparison> out;
    for (const GradInput& in : inputs) {
        require<ShapeError>(in.value.shape() == in.gradient.shape(), "gradient check: the gradient of ", in.name,
                            " has shape ", in.gradient.shape(), ", expected ", in.value.shape());
        const std::int64_t n = in.value.numel();
        if (n == 0) continue;
        std::vector<double> v(static_cast<std::size_t>(n));
        std::vector<double> saved(in.value.begin(), in.value.end());
        const int total = opt.directions + int(std::min<std::int64_t>(opt.coordinates, n));
        for (int trial = 0; trial < total; ++trial) {
            GradComparison c;
            c.input = in.name;
            if (trial < opt.directions) {
                double norm = 0;
                for (auto& x : v) {
                    x = rng.normal();
                    norm += x * x;
                }
                for (auto& x : v) x /= std::sqrt(norm);
                c.probe = "random direction " + std::to_string(trial);
            } else {
                std::fill(v.begin(), v.end(), 0.0);
                const std::int64_t k = std::int64_t(rng.below(std::uint64_t(n)));
                v[std::size_t(k)] = 1.0;
                c.probe = "element " + std::to_string(k);
            }
            for (std::int64_t i = 0; i < n; ++i) in.value[i] = saved[std::size_t(i)] + opt.step * v[std::size_t(i)];
            const double lp = loss();
            for (std::int64_t i = 0; i < n; ++i) in.value[i] = saved[std::size_t(i)] - opt.step * v[std::size_t(i)];
            const double lm = loss();
            for (std::int64_t i = 0; i < n; ++i) in.value[i] = saved[std::size_t(i)];
            c.finite_difference = (lp - lm) / (2 * opt.step);
            for (std::int64_t i = 0; i < n; ++i) c.analytic += in.gradient[i] * v[std::size_t(i)];
            c.tolerance = opt.rtol * std::max(std::abs(c.finite_difference), std::abs(c.analytic)) + noise;
            out.push_back(c);
        }
    }
    return out;
}

}  // namespace pickscore::check
