// tests/support/gradcheck.hpp — backward against central finite differences, in double.
//
// A test builds the op's inputs as double tensors, a loss that recomputes the forward pass from
// their current values and reduces it to a scalar (usually <g, out> for a fixed random g), and the
// analytic gradient of that loss for every input. check_gradients then compares, for every input,
//   - the directional derivative along several random unit directions (catches any wrong element:
//     a random direction sees all of them at once), and
//   - a few single coordinates (catches errors that happen to cancel in a sum),
// each as (L(x + h v) - L(x - h v)) / 2h against <grad, v>.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <pickscore/core/random.hpp>
#include <pickscore/core/tensor.hpp>

namespace pickscore::test {

using T64 = Tensor<double, Cpu>;
using V64 = TensorView<double, Cpu>;
using C64 = TensorView<const double, Cpu>;

inline T64 randn(Shape shape, Rng& rng, double stddev = 1.0, double mean = 0.0) {
    T64 t(shape);
    fill_normal(t.view(), rng, mean, stddev);
    return t;
}

inline T64 zeros(Shape shape) { return T64::zeros(shape); }

inline double dot(C64 a, C64 b) {
    REQUIRE(a.shape() == b.shape());
    double s = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) s += a[i] * b[i];
    return s;
}

struct GradInput {
    std::string name;
    V64 value;      // perturbed in place, restored afterwards
    C64 gradient;   // the analytic dL/dvalue
};

struct GradCheckOptions {
    int directions = 3;
    int coordinates = 4;
    double step = 1e-5;
    double rtol = 1e-6;
};

// Compares analytic gradients with central differences of `loss`; reports every mismatch.
inline void check_gradients(const std::string& what, const std::vector<GradInput>& inputs,
                            const std::function<double()>& loss, Rng& rng, GradCheckOptions opt = {}) {
    const double l0 = loss();
    REQUIRE(std::isfinite(l0));
    for (const GradInput& in : inputs) {
        REQUIRE_MESSAGE(in.value.shape() == in.gradient.shape(),
                        what << ": gradient of " << in.name << " has shape " << in.gradient.shape()
                             << ", expected " << in.value.shape());
        const std::int64_t n = in.value.numel();
        if (n == 0) continue;
        std::vector<double> v(static_cast<std::size_t>(n));
        const int total = opt.directions + std::min<int>(opt.coordinates, int(n));
        for (int trial = 0; trial < total; ++trial) {
            std::string kind;
            if (trial < opt.directions) {
                double norm = 0;
                for (auto& x : v) {
                    x = rng.normal();
                    norm += x * x;
                }
                for (auto& x : v) x /= std::sqrt(norm);
                kind = "random direction " + std::to_string(trial);
            } else {
                std::fill(v.begin(), v.end(), 0.0);
                const std::int64_t k = std::int64_t(rng.below(std::uint64_t(n)));
                v[std::size_t(k)] = 1.0;
                kind = "element " + std::to_string(k);
            }
            std::vector<double> saved(in.value.begin(), in.value.end());
            for (std::int64_t i = 0; i < n; ++i) in.value[i] = saved[std::size_t(i)] + opt.step * v[std::size_t(i)];
            const double lp = loss();
            for (std::int64_t i = 0; i < n; ++i) in.value[i] = saved[std::size_t(i)] - opt.step * v[std::size_t(i)];
            const double lm = loss();
            for (std::int64_t i = 0; i < n; ++i) in.value[i] = saved[std::size_t(i)];
            const double fd = (lp - lm) / (2 * opt.step);
            double an = 0;
            for (std::int64_t i = 0; i < n; ++i) an += in.gradient[i] * v[std::size_t(i)];
            // Rounding in the difference is about eps·|L|/h; truncation is O(h²).
            const double noise = 1e-9 * (1.0 + std::abs(l0));
            const double tol = opt.rtol * std::max(std::abs(fd), std::abs(an)) + noise;
            CHECK_MESSAGE(std::abs(fd - an) <= tol, what << ": d/d" << in.name << " along " << kind
                                                         << ": finite difference " << fd << ", backward " << an
                                                         << " (|diff| " << std::abs(fd - an) << " > tol " << tol
                                                         << ")");
        }
    }
}

// Largest |a - b| / (atol + rtol·|b|) over all elements: <= 1 means within tolerance.
template <class A, class B>
double max_scaled_error(const TensorView<A, Cpu>& a, const TensorView<B, Cpu>& b, double atol, double rtol) {
    REQUIRE(a.shape() == b.shape());
    double worst = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        const double x = cast<double>(a[i]), y = cast<double>(b[i]);
        const double e = std::abs(x - y) / (atol + rtol * std::abs(y));
        if (std::isnan(e)) return INFINITY;  // a NaN on either side is a failure
        worst = std::max(worst, e);
    }
    return worst;
}

}  // namespace pickscore::test
