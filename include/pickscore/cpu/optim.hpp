// pickscore/cpu/optim.hpp — AdamW and gradient-norm clipping on the CPU (reference loops).
//
// One AdamW step on one tensor, in the order PyTorch's torch.optim.AdamW applies it (the
// single-tensor and foreach paths agree on it):
//     p ← p · (1 - lr·wd)
//     m ← m + (1 - β1)(g - m)            (= β1 m + (1 - β1) g, written as PyTorch's lerp)
//     v ← β2 v + (1 - β2) g²
//     p ← p - (lr / (1 - β1^t)) · m / (sqrt(v) / sqrt(1 - β2^t) + ε)
// The bias corrections and the step size are formed in double (Python floats in PyTorch) and the
// element arithmetic in acc_t<T>; m and v are stored in acc_t<T>. adamw_update_flat is the same
// step over raw buffers with the extras of ops::adamw_step_flat (a bf16 working copy written in the
// same pass, clipping by a norm stored as f32); the CUDA kernel uses the same constants
// (detail::adamw_factors) and the same order of operations.
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

// The per-step constants of an AdamW update: formed in double (Python floats in PyTorch), then
// rounded to the element arithmetic's type Acc. The CUDA backend uses these very values.
template <class Acc>
struct AdamWFactors {
    Acc decay, step_size, bc2_sqrt, beta2, one_minus_beta1, one_minus_beta2, eps;
};

template <class Acc>
AdamWFactors<Acc> adamw_factors(std::int64_t step, double lr, double beta1, double beta2, double eps,
                                double weight_decay) {
    const double bias_correction1 = 1.0 - std::pow(beta1, double(step));
    const double bias_correction2 = 1.0 - std::pow(beta2, double(step));
    return {Acc(1.0 - lr * weight_decay),
            Acc(lr / bias_correction1),
            Acc(std::sqrt(bias_correction2)),
            Acc(beta2),
            Acc(1.0 - beta1),
            Acc(1.0 - beta2),
            Acc(eps)};
}

// clip_grad_norm's rule applied to a norm stored as f32 (the device-buffer variants of
// ops/optim.hpp): `finite` is false for an inf/NaN norm; otherwise `scale` says whether
// coef = max_norm / (norm + 1e-6) is below 1, i.e. whether to multiply by it.
struct ClipRule {
    bool finite = true, scale = false;
    double coef = 1.0;
};

inline ClipRule clip_rule(float norm, double max_norm) {
    ClipRule r;
    if (!std::isfinite(norm)) {
        r.finite = false;
        return r;
    }
    const double c = max_norm / (double(norm) + 1e-6);
    if (c < 1.0) {
        r.scale = true;
        r.coef = c;
    }
    return r;
}

}  // namespace detail

// One AdamW step over n elements of flat buffers (ops::adamw_step_flat): param of type P (the f32
// master weights; any type here), m and v in acc_t<P>, grad of type G. param_bf16 (may be null)
// receives bf16(updated param) in the same pass. grad_norm (may be null; one f32): the gradient is
// clipped on the fly, g·coef in acc_t<P> (not rounded back to G), by clip_grad_norm's rule; a
// non-finite grad_norm[0] skips the update (param, m, v unchanged; param_bf16 still written).
template <class P, class G>
void adamw_update_flat(P* param, bf16* param_bf16, acc_t<P>* m, acc_t<P>* v, const G* grad, const float* grad_norm,
                       double max_norm, std::int64_t n, std::int64_t step, double lr, double beta1, double beta2,
                       double eps, double weight_decay) {
    using Acc = acc_t<P>;
    const detail::AdamWFactors<Acc> f = detail::adamw_factors<Acc>(step, lr, beta1, beta2, eps, weight_decay);
    const detail::ClipRule clip = grad_norm ? detail::clip_rule(grad_norm[0], max_norm) : detail::ClipRule{};
    // g·1 is g exactly, so an unclipped step multiplies by 1 instead of branching per element.
    const Acc coef = clip.scale ? Acc(clip.coef) : Acc(1);
    parallel_for(detail::optim_blocks(n), [&](std::int64_t blk) {
        const std::int64_t lo = blk * detail::kOptimBlock, len = std::min(n, lo + detail::kOptimBlock) - lo;
        // The buffers do not overlap (restrict), the branches and the constants are outside the loop
        // (about twice as fast as testing them per element and reloading them through the capture).
        // Same operations in the same order as before and as the CUDA kernel.
        P* __restrict pp = param + lo;
        Acc* __restrict mm = m + lo;
        Acc* __restrict vv = v + lo;
        const G* __restrict gg = grad + lo;
        const Acc c = coef, decay = f.decay, b1c = f.one_minus_beta1, b2 = f.beta2, b2c = f.one_minus_beta2,
                  bc2 = f.bc2_sqrt, e = f.eps, step_size = f.step_size;  // locals: no reloads through the capture
        if (clip.finite) {
            for (std::int64_t i = 0; i < len; ++i) {
                const Acc g = cast<Acc>(gg[i]) * c;
                Acc p = cast<Acc>(pp[i]) * decay;
                const Acc mi = mm[i] + b1c * (g - mm[i]);
                const Acc vi = b2 * vv[i] + b2c * g * g;
                mm[i] = mi;
                vv[i] = vi;
                const Acc denom = std::sqrt(vi) / bc2 + e;
                p -= step_size * mi / denom;
                pp[i] = cast<P>(p);
            }
        }
        if (param_bf16) {
            bf16* __restrict wb = param_bf16 + lo;
            for (std::int64_t i = 0; i < len; ++i) wb[i] = cast<bf16>(pp[i]);
        }
    });
}

template <class T>
void adamw_update(TensorView<T, Cpu> param, TensorView<const T, Cpu> grad, TensorView<acc_t<T>, Cpu> m,
                  TensorView<acc_t<T>, Cpu> v, std::int64_t step, double lr, double beta1, double beta2, double eps,
                  double weight_decay) {
    adamw_update_flat<T, T>(param.data(), nullptr, m.data(), v.data(), grad.data(), nullptr, 0.0, param.numel(), step,
                            lr, beta1, beta2, eps, weight_decay);
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
