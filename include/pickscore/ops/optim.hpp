// pickscore/ops/optim.hpp — the optimizer step and gradient clipping of PickScore's recipe.
//
// AdamW with PyTorch's semantics (torch.optim.AdamW, decoupled weight decay), for step t >= 1:
//     p ← p · (1 - lr·wd)
//     m ← β1 m + (1 - β1) g,   v ← β2 v + (1 - β2) g²
//     m̂ = m / (1 - β1^t),      v̂ = v / (1 - β2^t)
//     p ← p - lr · m̂ / (sqrt(v̂) + ε)
// `cfg.lr` is this step's learning rate: the caller applies the schedule. The moments m and v live
// in acc_t<T> (float for f32/bf16 parameters, double for double), start at zero and belong to the
// caller (they go into checkpoints). The defaults are PickScore's: lr 3e-6, betas (0.9, 0.999),
// eps 1e-8, weight decay 0.3 on every parameter.
//
// Gradient clipping is PyTorch's clip_grad_norm_ with the 2-norm over all gradients together:
//     norm = sqrt(Σ_tensors Σ g²)   (accumulated in double)
//     coef = max_norm / (norm + 1e-6);  if coef < 1, every g ← g · coef
// (coef < 1 is PyTorch's test; it also scales, by a hair, when norm sits within 1e-6 below
// max_norm). It returns the norm before clipping. Unlike PyTorch's default, a non-finite norm
// throws Error instead of filling every gradient with NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../cpu/optim.hpp"
#include "common.hpp"

namespace pickscore::ops {

struct AdamWConfig {
    double lr = 3e-6, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.3;
};

// One parameter tensor with its gradient and its two moment buffers (all the same shape).
template <class T, class D = Cpu>
struct AdamWSlot {
    TensorView<T, D> param;
    TensorView<const T, D> grad;
    TensorView<acc_t<T>, D> m;  // first moment, starts at zero
    TensorView<acc_t<T>, D> v;  // second moment, starts at zero
};

// One AdamW step (step is 1-based: the first call passes 1) over every slot.
template <class T, class D>
void adamw_step(std::span<const AdamWSlot<T, D>> slots, std::int64_t step, const AdamWConfig& cfg) {
    constexpr const char* op = "adamw_step";
    require(step >= 1, op, ": step is 1-based, got ", step);
    require(std::isfinite(cfg.lr) && cfg.lr >= 0, op, ": learning rate ", cfg.lr, " (finite and >= 0 expected)");
    require(cfg.beta1 >= 0 && cfg.beta1 < 1 && cfg.beta2 >= 0 && cfg.beta2 < 1, op, ": betas (", cfg.beta1, ", ",
            cfg.beta2, ") must lie in [0, 1)");
    require(cfg.eps >= 0 && std::isfinite(cfg.eps), op, ": eps ", cfg.eps, " (finite and >= 0 expected)");
    require(cfg.weight_decay >= 0 && std::isfinite(cfg.weight_decay), op, ": weight decay ", cfg.weight_decay,
            " (finite and >= 0 expected)");
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const AdamWSlot<T, D>& s = slots[i];
        const Shape& p = s.param.shape();
        require<ShapeError>(!s.param.empty() && !s.grad.empty() && !s.m.empty() && !s.v.empty(), op, ": slot ", i,
                            " (param ", p, ") lacks its param, grad, m or v");
        require<ShapeError>(s.grad.shape() == p && s.m.shape() == p && s.v.shape() == p, op, ": slot ", i,
                            " has param ", p, ", grad ", s.grad.shape(), ", m ", s.m.shape(), ", v ", s.v.shape(),
                            " (all must agree)");
    }
    for (const AdamWSlot<T, D>& s : slots) {
        if constexpr (is_cpu<D>) {
            cpu::adamw_update<T>(s.param, s.grad, s.m, s.v, step, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps,
                                 cfg.weight_decay);
        } else {
            static_assert(dependent_false<D>, "adamw_step: no backend for this device in this build");
        }
    }
}

template <class T, class D>
void adamw_step(const std::vector<AdamWSlot<T, D>>& slots, std::int64_t step, const AdamWConfig& cfg) {
    adamw_step(std::span<const AdamWSlot<T, D>>(slots), step, cfg);
}

template <class T, class D>
void adamw_step(const AdamWSlot<T, D>& slot, std::int64_t step, const AdamWConfig& cfg) {
    adamw_step(std::span<const AdamWSlot<T, D>>(&slot, 1), step, cfg);
}

// sqrt(Σ over every tensor of Σ g²), accumulated in double. T may be const.
template <class T, class D>
double global_grad_norm(std::span<const TensorView<T, D>> grads) {
    double sum = 0;
    for (const auto& g : grads) {
        if constexpr (is_cpu<D>) {
            sum += cpu::grad_sum_of_squares<std::remove_const_t<T>>(g);
        } else {
            static_assert(dependent_false<D>, "global_grad_norm: no backend for this device in this build");
        }
    }
    return std::sqrt(sum);
}

template <class T, class D>
double global_grad_norm(const std::vector<TensorView<T, D>>& grads) {
    return global_grad_norm(std::span<const TensorView<T, D>>(grads));
}

// Scales every gradient by max_norm / (norm + 1e-6) when that is below 1; returns the norm
// before clipping. A non-finite norm throws Error (and leaves the gradients untouched).
template <class T, class D>
double clip_grad_norm(std::span<const TensorView<T, D>> grads, double max_norm) {
    require(std::isfinite(max_norm) && max_norm >= 0, "clip_grad_norm: max_norm ", max_norm,
            " (finite and >= 0 expected)");
    const double norm = global_grad_norm(grads);
    require(std::isfinite(norm), "clip_grad_norm: the total gradient norm is ", norm, " over ", grads.size(),
            " tensors (a gradient holds inf or NaN)");
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        for (const auto& g : grads) {
            if constexpr (is_cpu<D>) {
                cpu::scale_gradients<T>(g, coef);
            } else {
                static_assert(dependent_false<D>, "clip_grad_norm: no backend for this device in this build");
            }
        }
    }
    return norm;
}

template <class T, class D>
double clip_grad_norm(const std::vector<TensorView<T, D>>& grads, double max_norm) {
    return clip_grad_norm(std::span<const TensorView<T, D>>(grads), max_norm);
}

}  // namespace pickscore::ops
