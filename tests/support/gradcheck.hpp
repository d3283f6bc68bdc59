// tests/support/gradcheck.hpp — test helpers: random tensors, dot products, and the doctest face of
// pickscore/check/gradcheck.hpp (backward against central finite differences, in double).
//
// A test builds the op's inputs as double tensors, a loss that recomputes the forward pass from
// their current values and reduces it to a scalar (usually <g, out> for a fixed random g), and the
// analytic gradient of that loss for every input, then calls check_gradients.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <pickscore/check/gradcheck.hpp>
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

using check::GradCheckOptions;
using check::GradInput;

// Compares analytic gradients with central differences of `loss`; every mismatch is a failed
// doctest assertion naming the op, the input, the probe and both values.
inline void check_gradients(const std::string& what, const std::vector<GradInput>& inputs,
                            const std::function<double()>& loss, Rng& rng, GradCheckOptions opt = {}) {
    for (const auto& c : check::compare_gradients(inputs, loss, rng, opt)) {
        CHECK_MESSAGE(c.ok(), what << ": d/d" << c.input << " along " << c.probe << ": finite difference "
                                   << c.finite_difference << ", backward " << c.analytic << " (|diff| "
                                   << std::abs(c.finite_difference - c.analytic) << " > tol " << c.tolerance << ")");
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
