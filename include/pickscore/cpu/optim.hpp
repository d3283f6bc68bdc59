// pickscore/cpu/optim.hpp — AdamW and gradient-norm clipping on the CPU (reference loops).
//
// One AdamW step on one tensor, in the order PyTorch's torch.optim.AdamW applies it (the
// single-tensor and foreach paths agree on it):
//     p ← p · (1 - lr·wd)
//     m ← m + (1 - β1)(g - m)            (= β1 m + (1 - β1) g, written as PyTorch's lerp)
//     v ← β2 v + (1 - β2) g²
//     p ← p - (lr / (1 - β1^t)) · m / (sqrt(v) / sqrt(1 - β2^t) + ε)
// The bias corrections and the step size are formed in double (Python floats in PyTorch) and the
// element arithmetic in acc_t<T>; m and v are stored in acc_t<T>.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"

namespace pickscore::cpu {

namespace detail {
inline constexpr std::int64_t kOptimBlock = std::int64_t(1) << 15;  // elements per task

inline std::int64_t optim_blocks(std::int64_t n) { return (n + kOptimBlock - 1) / kOptimBlock; }
}  // namespace detail

template <class T>
void adamw_update(TensorView<T, Cpu> param, TensorView<const T, Cpu> grad, TensorView<acc_t<T>, Cpu> m,
                  TensorView<acc_t<T>, Cpu> v, std::int64_t step, double lr, double beta1, double beta2, double eps,
                  double weight_decay) {
    using Acc = acc_t<T>;
    const double bias_correction1 = 1.0 - std::pow(beta1, double(step));
    const double bias_correction2 = 1.0 - std::pow(beta2, double(step));
    const Acc decay = Acc(1.0 - lr * weight_decay);
    const Acc step_size = Acc(lr / bias_correction1);
    const Acc bc2_sqrt = Acc(std::sqrt(bias_correction2));
    const Acc b2 = Acc(beta2), one_minus_b1 = Acc(1.0 - beta1), one_minus_b2 = Acc(1.0 - beta2), e = Acc(eps);
    const std::int64_t n = param.numel();
    parallel_for(detail::optim_blocks(n), [&](std::int64_t blk) {
        const std::int64_t end = std::min(n, (blk + 1) * detail::kOptimBlock);
        for (std::int64_t i = blk * detail::kOptimBlock; i < end; ++i) {
            const Acc g = cast<Acc>(grad[i]);
            Acc p = cast<Acc>(param[i]) * decay;
            m[i] += one_minus_b1 * (g - m[i]);
            v[i] = b2 * v[i] + one_minus_b2 * g * g;
            const Acc denom = std::sqrt(v[i]) / bc2_sqrt + e;
            p -= step_size * m[i] / denom;
            param[i] = cast<T>(p);
        }
    });
}

// Σ g², accumulated in double; the same result for any thread count (fixed blocks, summed in order).
template <class T>
double grad_sum_of_squares(TensorView<const T, Cpu> g) {
    const std::int64_t n = g.numel();
    std::vector<double> partial(static_cast<std::size_t>(detail::optim_blocks(n)));
    parallel_for(std::int64_t(partial.size()), [&](std::int64_t blk) {
        const std::int64_t end = std::min(n, (blk + 1) * detail::kOptimBlock);
        double s = 0;
        for (std::int64_t i = blk * detail::kOptimBlock; i < end; ++i) {
            const double x = cast<double>(g[i]);
            s += x * x;
        }
        partial[std::size_t(blk)] = s;
    });
    double s = 0;
    for (double x : partial) s += x;
    return s;
}

// g ← g · factor, in acc_t<T>.
template <class T>
void scale_gradients(TensorView<T, Cpu> g, double factor) {
    using Acc = acc_t<T>;
    const Acc f = Acc(factor);
    const std::int64_t n = g.numel();
    parallel_for(detail::optim_blocks(n), [&](std::int64_t blk) {
        const std::int64_t end = std::min(n, (blk + 1) * detail::kOptimBlock);
        for (std::int64_t i = blk * detail::kOptimBlock; i < end; ++i) g[i] = cast<T>(cast<Acc>(g[i]) * f);
    });
}

}  // namespace pickscore::cpu
