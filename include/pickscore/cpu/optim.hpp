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
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
        // The buffers do not overlap (restrict), the branches and the constants are outside the loop.
        // Same operations in the same order as the CUDA kernel.
        P* __restrict pp = param + lo;
        Acc* __restrict mm = m + lo;
        Acc* __restrict vv = v + lo;
        const G* __restrict gg = grad + lo;
        const Acc c = coef, decay = f.decay, b1c = f.one_minus_beta1, b2 = f.beta2, b2c = f.one_minus_beta2,
                  bc2 = f.bc2_sqrt, e = f.eps, step_size = f.step_size;  // locals: no reloads through the capture
        if (clip.finite) {
            std::int64_t i = 0;
#if defined(__SSE2__)
            // Four lanes at a time for f32 master weights (GCC does not vectorise the loop below:
            // std::sqrt may set errno). SSE's add, mul, div and sqrt round exactly as the scalar
            // ones do, and the operations are the same in the same order: the same bits.
            if constexpr (std::is_same_v<P, float> && (std::is_same_v<G, float> || std::is_same_v<G, bf16>)) {
                const __m128 vc = _mm_set1_ps(c), vdecay = _mm_set1_ps(decay), vb1c = _mm_set1_ps(b1c),
                             vb2 = _mm_set1_ps(b2), vb2c = _mm_set1_ps(b2c), vbc2 = _mm_set1_ps(bc2),
                             ve = _mm_set1_ps(e), vstep = _mm_set1_ps(step_size);
                for (; i + 4 <= len; i += 4) {
                    __m128 g;
                    if constexpr (std::is_same_v<G, float>) {
                        g = _mm_loadu_ps(gg + i);
                    } else {  // bf16: the 16 bits are the top half of the f32
                        const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(gg + i));
                        g = _mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h));
                    }
                    g = _mm_mul_ps(g, vc);
                    __m128 p = _mm_mul_ps(_mm_loadu_ps(pp + i), vdecay);
                    const __m128 m0 = _mm_loadu_ps(mm + i);
                    const __m128 mi = _mm_add_ps(m0, _mm_mul_ps(vb1c, _mm_sub_ps(g, m0)));
                    const __m128 vi =
                        _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(vv + i)), _mm_mul_ps(_mm_mul_ps(vb2c, g), g));
                    _mm_storeu_ps(mm + i, mi);
                    _mm_storeu_ps(vv + i, vi);
                    const __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), vbc2), ve);
                    p = _mm_sub_ps(p, _mm_div_ps(_mm_mul_ps(vstep, mi), denom));
                    _mm_storeu_ps(pp + i, p);
                }
            }
#endif
            for (; i < len; ++i) {
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
