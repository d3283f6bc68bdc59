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
//
// The flat path (the model keeps every parameter in one buffer, model/params.hpp), for both
// backends, with nothing that waits for the device:
//   global_grad_norm(norm, grads)     norm[0] = f32(sqrt(Σ g²)) (double sums), left in a one-element
//                                     tensor on the gradients' device
//   clip_grad_norm(norm, grads, max)  the same, then the clipping by the rule above with the
//                                     coefficient formed from the stored norm on the device; a
//                                     non-finite norm leaves the gradients alone (no throw: the
//                                     caller reads norm when it next synchronises)
//   adamw_step_flat(param, param_bf16, m, v, grad, grad_norm, max_norm, step, cfg)
//                                     one AdamW step over f32 master weights in one pass (one
//                                     launch on CUDA), writing the optional bf16 working copy in
//                                     the same pass; with grad_norm it also clips on the fly (g·coef,
//                                     not rounded back to the gradient's type), and a non-finite
//                                     norm skips the step (param, m, v unchanged; the copy is still
//                                     written), so clipping costs no extra pass over the gradients.
// On CUDA the norm is a deterministic two-stage reduction in double (same bits on every run). The
// double-returning global_grad_norm / clip_grad_norm work on CUDA tensors too, but they copy the
// norm to the host, which synchronises the stream. CUDA supports f32 and bf16 gradients and
// parameters; the CPU any element type.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../cpu/optim.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/elementwise.hpp"
#include "../cuda/optim.hpp"
#endif

namespace pickscore::ops {

struct AdamWConfig {
    double lr = 3e-6, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.3;
};

namespace detail {
inline void check_adamw(const char* op, std::int64_t step, const AdamWConfig& cfg) {
    require(step >= 1, op, ": step is 1-based, got ", step);
    require(std::isfinite(cfg.lr) && cfg.lr >= 0, op, ": learning rate ", cfg.lr, " (finite and >= 0 expected)");
    require(cfg.beta1 >= 0 && cfg.beta1 < 1 && cfg.beta2 >= 0 && cfg.beta2 < 1, op, ": betas (", cfg.beta1, ", ",
            cfg.beta2, ") must lie in [0, 1)");
    require(cfg.eps >= 0 && std::isfinite(cfg.eps), op, ": eps ", cfg.eps, " (finite and >= 0 expected)");
    require(cfg.weight_decay >= 0 && std::isfinite(cfg.weight_decay), op, ": weight decay ", cfg.weight_decay,
            " (finite and >= 0 expected)");
}

inline void check_max_norm(const char* op, double max_norm) {
    require(std::isfinite(max_norm) && max_norm >= 0, op, ": max_norm ", max_norm, " (finite and >= 0 expected)");
}
}  // namespace detail

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
    detail::check_adamw(op, step, cfg);
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
#if PICKSCORE_CUDA_ENABLED
        } else if constexpr (is_cuda<D>) {
            static_assert(cuda::is_kernel_type<T>, "adamw_step: the CUDA backend supports f32 and bf16");
            cuda::adamw_update<T, T>(s.param.data(), nullptr, s.m.data(), s.v.data(), s.grad.data(), nullptr, 0.0,
                                     s.param.numel(), step, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
#endif
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

// sqrt(Σ over every tensor of Σ g²), accumulated in double. T may be const. (CUDA: synchronises.)
template <class T, class D>
double global_grad_norm(std::span<const TensorView<T, D>> grads) {
    using G = std::remove_const_t<T>;
    if constexpr (is_cpu<D>) {
        double sum = 0;
        for (const auto& g : grads) sum += cpu::grad_sum_of_squares<G>(g);
        return std::sqrt(sum);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<G>, "global_grad_norm: the CUDA backend supports f32 and bf16");
        if (grads.empty()) return 0.0;
        Tensor<double, Cuda> sum(Shape{1});
        for (std::size_t i = 0; i < grads.size(); ++i)
            cuda::grad_sum_of_squares<G>(sum.data(), nullptr, grads[i].data(), grads[i].numel(), i > 0);
        return std::sqrt(cuda::to_host(sum.cview())[0]);
#endif
    } else {
        static_assert(dependent_false<D>, "global_grad_norm: no backend for this device in this build");
    }
}

template <class T, class D>
double global_grad_norm(const std::vector<TensorView<T, D>>& grads) {
    return global_grad_norm(std::span<const TensorView<T, D>>(grads));
}

// Scales every gradient by max_norm / (norm + 1e-6) when that is below 1; returns the norm
// before clipping. A non-finite norm throws Error (and leaves the gradients untouched).
template <class T, class D>
double clip_grad_norm(std::span<const TensorView<T, D>> grads, double max_norm) {
    detail::check_max_norm("clip_grad_norm", max_norm);
    const double norm = global_grad_norm(grads);
    require(std::isfinite(norm), "clip_grad_norm: the total gradient norm is ", norm, " over ", grads.size(),
            " tensors (a gradient holds inf or NaN)");
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        for (const auto& g : grads) {
            if constexpr (is_cpu<D>) {
                cpu::scale_gradients<T>(g, coef);
#if PICKSCORE_CUDA_ENABLED
            } else if constexpr (is_cuda<D>) {
                static_assert(cuda::is_kernel_type<T>, "clip_grad_norm: the CUDA backend supports f32 and bf16");
                cuda::scale_inplace<T>(g.data(), coef, g.numel());
#endif
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

// ---- the flat path: no host synchronisation --------------------------------------------------

// norm[0] = f32(sqrt(Σ over every tensor of Σ g²)), the sums in double, written on the device that
// holds the gradients (CUDA: asynchronous, deterministic). T may be const.
template <class T, class D>
void global_grad_norm(TensorView<float, D> norm /*1*/, std::span<const TensorView<T, D>> grads) {
    using G = std::remove_const_t<T>;
    check_shape("global_grad_norm", "norm", norm.shape(), Shape{1});
    if constexpr (is_cpu<D>) {
        double sum = 0;
        for (const auto& g : grads) sum += cpu::grad_sum_of_squares<G>(g);
        norm[0] = float(std::sqrt(sum));
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<G>, "global_grad_norm: the CUDA backend supports f32 and bf16");
        Tensor<double, Cuda> sum(Shape{1});
        if (grads.empty()) cuda::grad_sum_of_squares<float>(sum.data(), norm.data(), nullptr, 0, false);
        for (std::size_t i = 0; i < grads.size(); ++i)
            cuda::grad_sum_of_squares<G>(sum.data(), i + 1 == grads.size() ? norm.data() : nullptr, grads[i].data(),
                                         grads[i].numel(), i > 0);
#endif
    } else {
        static_assert(dependent_false<D>, "global_grad_norm: no backend for this device in this build");
    }
}

template <class T, class D>
void global_grad_norm(TensorView<float, D> norm /*1*/, const std::vector<TensorView<T, D>>& grads) {
    global_grad_norm(norm, std::span<const TensorView<T, D>>(grads));
}

// The flat buffer: norm[0] = f32(‖grad‖₂).
template <class T, class D>
void global_grad_norm(TensorView<float, D> norm /*1*/, TensorView<T, D> grad /*n*/) {
    global_grad_norm(norm, std::span<const TensorView<T, D>>(&grad, 1));
}

// norm[0] as global_grad_norm(norm, grads); then every gradient is scaled by
// f32(max_norm / (norm[0] + 1e-6)) when that is below 1, the coefficient formed from the stored
// norm where it lives (no synchronisation). A non-finite norm leaves the gradients untouched and
// throws nothing: it stays in norm for the caller to check.
template <class T, class D>
void clip_grad_norm(TensorView<float, D> norm /*1*/, std::span<const TensorView<T, D>> grads, double max_norm) {
    detail::check_max_norm("clip_grad_norm", max_norm);
    global_grad_norm(norm, grads);
    if constexpr (is_cpu<D>) {
        const cpu::detail::ClipRule rule = cpu::detail::clip_rule(norm[0], max_norm);
        if (rule.finite && rule.scale)
            for (const auto& g : grads) cpu::scale_gradients<T>(g, rule.coef);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "clip_grad_norm: the CUDA backend supports f32 and bf16");
        for (const auto& g : grads) cuda::clip_by_norm<T>(g.data(), g.numel(), norm.data(), max_norm);
#endif
    } else {
        static_assert(dependent_false<D>, "clip_grad_norm: no backend for this device in this build");
    }
}

template <class T, class D>
void clip_grad_norm(TensorView<float, D> norm /*1*/, const std::vector<TensorView<T, D>>& grads, double max_norm) {
    clip_grad_norm(norm, std::span<const TensorView<T, D>>(grads), max_norm);
}

// The flat buffer.
template <class T, class D>
void clip_grad_norm(TensorView<float, D> norm /*1*/, TensorView<T, D> grad /*n*/, double max_norm) {
    clip_grad_norm(norm, std::span<const TensorView<T, D>>(&grad, 1), max_norm);
}

// One AdamW step over every parameter at once: param holds the f32 master weights, m and v the
// f32 moments, grad the gradients (f32 or bf16 on CUDA) — one flat buffer each, in one pass.
// param_bf16 (may be empty): the bf16 working copy, written as bf16(updated param) in the same pass.
// grad_norm (may be empty; [1], e.g. from global_grad_norm(norm, grad)): the gradient is clipped on
// the fly by clip_grad_norm's rule with this max_norm (g·coef in f32, not rounded back to the
// gradient's type, so clip_grad_norm + adamw_step_flat differ from this by that rounding for bf16
// gradients), and a non-finite norm skips the step: param, m and v stay as they were (the copy is
// still written). step is 1-based.
template <class G, class D>
void adamw_step_flat(TensorView<float, D> param /*n*/, TensorView<bf16, D> param_bf16 /*n*/,
                     TensorView<float, D> m /*n*/, TensorView<float, D> v /*n*/, TensorView<G, D> grad /*n*/,
                     In<float, D> grad_norm /*1*/, double max_norm, std::int64_t step, const AdamWConfig& cfg) {
    using Gm = std::remove_const_t<G>;
    constexpr const char* op = "adamw_step_flat";
    detail::check_adamw(op, step, cfg);
    check_shape(op, "grad", grad.shape(), param.shape());
    check_shape(op, "m", m.shape(), param.shape());
    check_shape(op, "v", v.shape(), param.shape());
    if (!param_bf16.empty()) check_shape(op, "param_bf16", param_bf16.shape(), param.shape());
    if (!grad_norm.empty()) {
        check_shape(op, "grad_norm", grad_norm.shape(), Shape{1});
        detail::check_max_norm(op, max_norm);
    }
    if constexpr (is_cpu<D>) {
        cpu::adamw_update_flat<float, Gm>(param.data(), param_bf16.data(), m.data(), v.data(), grad.data(),
                                          grad_norm.data(), max_norm, param.numel(), step, cfg.lr, cfg.beta1, cfg.beta2,
                                          cfg.eps, cfg.weight_decay);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<Gm>, "adamw_step_flat: the CUDA backend supports f32 and bf16 gradients");
        cuda::adamw_update<float, Gm>(param.data(), param_bf16.data(), m.data(), v.data(), grad.data(),
                                      grad_norm.data(), max_norm, param.numel(), step, cfg.lr, cfg.beta1, cfg.beta2,
                                      cfg.eps, cfg.weight_decay);
#endif
    } else {
        static_assert(dependent_false<D>, "adamw_step_flat: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
