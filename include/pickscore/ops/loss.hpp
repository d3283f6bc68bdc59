// pickscore/ops/loss.hpp — PickScore's training objective: a KL preference loss over image pairs.
//
// Each example is one prompt with two images and a label y in {[1,0], [0,1], [0.5,0.5]} (a tie).
// With L2-normalised embeddings text_i [E] and images_ik [E] (k = 0, 1):
//     s_k = exp(logit_scale) · <text_i, images_ik>,   p_i = softmax(s_0, s_1)
//     L = Σ_i w_i KL(y_i || p_i),   KL(y || p) = Σ_k y_k log(y_k / p_k)   (0 · log 0 = 0)
// KL equals the cross-entropy minus the label's entropy, so it is plain cross-entropy for a win or
// a loss and reaches 0 on a tie when p = [0.5, 0.5]. Only an example's own two images compete.
// The weights are w_i = (1/n_i) / Σ_j (1/n_j) with n_i = num_example_per_prompt, normalised over
// the whole batch (preference_weights below), so L is a weighted mean.
// Backward (dL/ds_k = w_i (p_k - y_k), times dloss):
//     dtext_i = exp(ls) Σ_k dL/ds_k images_ik,  dimages_ik = exp(ls) dL/ds_k text_i  (written)
//     dlogit_scale += Σ_i Σ_k dL/ds_k s_k                                              (accumulated)
// Probabilities, labels and weights are acc_t<T> (float, or double for T = double); the
// probabilities are saved by the forward for the backward. Labels must be non-negative pairs that
// sum to 1 (within 1e-5) and counts positive and finite.
//
// Where those values are checked: wherever they are host memory. The CPU backend checks them and
// throws Error naming the index. On CUDA they are device memory and reading them would wait for
// the stream, so the CUDA backend does not check them; check them on the host before the upload
// (cpu::check_preference_labels for labels; computing the weights with the CPU preference_weights
// checks the counts). Bad values there are not silent either: an invalid label pair makes its
// example's loss term and gradients NaN (so the loss is NaN), an invalid count makes every weight NaN.
//
// The scalar loss, two ways (T is not deduced: call pickscore_loss_forward<float>(...)):
//   - into a device-side buffer `loss` [1] of acc_t<T>: pickscore_loss_forward<T>(loss, probs, ...).
//     Backend-generic training code should use this one; on CUDA it never waits for the GPU.
//   - returned as a double: pickscore_loss_forward<T>(probs, ...). On CUDA this copies the loss to
//     the host and therefore WAITS for the stream; fine for evaluation, not inside a training step.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../cpu/loss.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/loss.hpp"
#include "../cuda/storage.hpp"
#endif

namespace pickscore::ops {

// weights[i] = (1 / n_i) / Σ_j (1 / n_j) from the per-example counts n_i (Pick-a-Pic's
// num_example_per_prompt), given as floating-point numbers of the weights' type (float or
// double; counts up to 2^24 are exact in float). Every count must be positive and finite (Error
// naming the index otherwise; on CUDA see the top of this file). The weights sum to 1.
template <class A, class D>
void preference_weights(TensorView<A, D> weights /*N*/, In<A, D> num_example_per_prompt /*N*/) {
    static_assert(std::is_floating_point_v<A>, "preference_weights: weights are float or double");
    constexpr const char* op = "preference_weights";
    check_rank(op, "num_example_per_prompt", num_example_per_prompt.shape(), 1);
    require<ShapeError>(weights.shape() == num_example_per_prompt.shape(), op, ": weights has shape ",
                        weights.shape(), " but num_example_per_prompt has shape ", num_example_per_prompt.shape());
    if constexpr (is_cpu<D>) {
        cpu::preference_weights<A>(weights, num_example_per_prompt);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(std::is_same_v<A, float>, "preference_weights: the CUDA backend computes float weights");
        cuda::preference_weights(weights.data(), num_example_per_prompt.data(), weights.numel());
#endif
    } else {
        static_assert(dependent_false<D>, "preference_weights: no backend for this device in this build");
    }
}

namespace detail {
// text [N,E], images [N,2,E], labels [N,2], weights [N], logit_scale [1]; `probs` [N,2] if present.
inline void check_pickscore_loss(const char* op, const Shape& probs, bool has_probs, const Shape& text,
                                 const Shape& images, const Shape& labels, const Shape& weights,
                                 const Shape& logit_scale) {
    check_rank(op, "text", text, 2);
    auto check = [&](const char* name, const Shape& shape, const Shape& expected) {
        require<ShapeError>(shape == expected, op, ": ", name, " has shape ", shape, " and text has shape ", text,
                            " (expected ", name, " ", expected, ")");
    };
    const std::int64_t N = text[0], E = text[1];
    check("images", images, Shape{N, 2, E});
    check("labels", labels, Shape{N, 2});
    check("weights", weights, Shape{N});
    require<ShapeError>(logit_scale == Shape{1}, op, ": logit_scale has shape ", logit_scale, ", expected [1]");
    if (has_probs) check("probs", probs, Shape{N, 2});
}
}  // namespace detail

// loss[0] = L = Σ_i w_i KL(y_i || softmax(s_i)), written into a buffer on the device of the
// inputs (no synchronisation); probs [N,2] (may be empty) receives p_i for the backward.
template <class T, class D>
void pickscore_loss_forward(TensorView<acc_t<T>, D> loss /*1*/, TensorView<acc_t<T>, D> probs /*N,2*/,
                            In<T, D> text /*N,E L2-normalised*/, In<T, D> images /*N,2,E L2-normalised*/,
                            In<acc_t<T>, D> labels /*N,2*/, In<acc_t<T>, D> weights /*N*/,
                            In<T, D> logit_scale /*1*/) {
    constexpr const char* op = "pickscore_loss_forward";
    require<ShapeError>(loss.shape() == Shape{1}, op, ": loss has shape ", loss.shape(), ", expected [1]");
    detail::check_pickscore_loss(op, probs.shape(), !probs.empty(), text.shape(), images.shape(), labels.shape(),
                                 weights.shape(), logit_scale.shape());
    if constexpr (is_cpu<D>) {
        loss[0] = acc_t<T>(cpu::pickscore_loss_forward<T>(probs, text, images, labels, weights, logit_scale));
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::pickscore_loss_forward<T>(loss.data(), probs.data(), text.data(), images.data(), labels.data(),
                                        weights.data(), logit_scale.data(), text.size(0), text.size(1));
#endif
    } else {
        static_assert(dependent_false<D>, "pickscore_loss_forward: no backend for this device in this build");
    }
}

// Returns L = Σ_i w_i KL(y_i || softmax(s_i)); probs [N,2] (may be empty) receives p_i for the backward.
// On CUDA: the buffer variant above, then a copy to the host that waits for the stream.
template <class T, class D>
double pickscore_loss_forward(TensorView<acc_t<T>, D> probs /*N,2*/, In<T, D> text /*N,E L2-normalised*/,
                              In<T, D> images /*N,2,E L2-normalised*/, In<acc_t<T>, D> labels /*N,2*/,
                              In<acc_t<T>, D> weights /*N*/, In<T, D> logit_scale /*1*/) {
    detail::check_pickscore_loss("pickscore_loss_forward", probs.shape(), !probs.empty(), text.shape(),
                                 images.shape(), labels.shape(), weights.shape(), logit_scale.shape());
    if constexpr (is_cpu<D>) {
        return cpu::pickscore_loss_forward<T>(probs, text, images, labels, weights, logit_scale);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        Tensor<acc_t<T>, Cuda> loss(Shape{1});
        pickscore_loss_forward<T, D>(loss, probs, text, images, labels, weights, logit_scale);
        return double(cuda::to_host(loss.cview())[0]);  // waits for the stream
#endif
    } else {
        static_assert(dependent_false<D>, "pickscore_loss_forward: no backend for this device in this build");
    }
}

// dtext, dimages written; dlogit_scale accumulated; each may be empty. dloss scales everything
// (the gradient arriving at L).
template <class T, class D>
void pickscore_loss_backward(TensorView<T, D> dtext /*N,E written*/, TensorView<T, D> dimages /*N,2,E written*/,
                             TensorView<T, D> dlogit_scale /*1 +=*/, In<acc_t<T>, D> probs /*N,2*/,
                             In<T, D> text /*N,E*/, In<T, D> images /*N,2,E*/, In<acc_t<T>, D> labels /*N,2*/,
                             In<acc_t<T>, D> weights /*N*/, In<T, D> logit_scale /*1*/, double dloss = 1.0) {
    constexpr const char* op = "pickscore_loss_backward";
    check_present(op, "probs", probs);
    detail::check_pickscore_loss(op, probs.shape(), true, text.shape(), images.shape(), labels.shape(),
                                 weights.shape(), logit_scale.shape());
    if (!dtext.empty())
        require<ShapeError>(dtext.shape() == text.shape(), op, ": dtext has shape ", dtext.shape(),
                            " but text has shape ", text.shape());
    if (!dimages.empty())
        require<ShapeError>(dimages.shape() == images.shape(), op, ": dimages has shape ", dimages.shape(),
                            " but images has shape ", images.shape());
    if (!dlogit_scale.empty())
        require<ShapeError>(dlogit_scale.shape() == logit_scale.shape(), op, ": dlogit_scale has shape ",
                            dlogit_scale.shape(), " but logit_scale has shape ", logit_scale.shape());
    if constexpr (is_cpu<D>) {
        cpu::pickscore_loss_backward<T>(dtext, dimages, dlogit_scale, probs, text, images, labels, weights,
                                        logit_scale, dloss);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::pickscore_loss_backward<T>(dtext.data(), dimages.data(), dlogit_scale.data(), probs.data(), text.data(),
                                         images.data(), labels.data(), weights.data(), logit_scale.data(), dloss,
                                         text.size(0), text.size(1));
#endif
    } else {
        static_assert(dependent_false<D>, "pickscore_loss_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
