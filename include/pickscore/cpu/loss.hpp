// pickscore/cpu/loss.hpp — PickScore's preference loss on the CPU (reference loops).
//
// Per example i (a prompt and its two images), in acc_t<T>:
//     scale = exp(logit_scale),  s_k = scale · <text_i, images_ik>,  p = softmax(s_0, s_1)
//     KL_i  = Σ_k y_k (log y_k - log p_k)      (a term with y_k = 0 counts 0)
//     L     = Σ_i w_i KL_i                       (summed in double)
// Backward, with g_k = dloss · w_i (p_k - y_k) = dL/ds_k:
//     dtext_i = scale (g_0 images_i0 + g_1 images_i1),  dimages_ik = scale g_k text_i,
//     dlogit_scale += Σ_i Σ_k g_k s_k
// Label and count values are checked here, where the backend can read them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"

namespace pickscore::cpu {

// weights[i] = (1 / n_i) / Σ_j (1 / n_j), formed in double; every count must be finite and positive.
template <class A>
void preference_weights(TensorView<A, Cpu> weights /*N*/, TensorView<const A, Cpu> counts /*N*/) {
    double total = 0;
    for (std::int64_t i = 0; i < counts.numel(); ++i) {
        const double n = double(counts[i]);
        require(std::isfinite(n) && n > 0, "preference_weights: num_example_per_prompt[", i, "] = ", n,
                " (a positive count expected)");
        total += 1.0 / n;
    }
    for (std::int64_t i = 0; i < counts.numel(); ++i) weights[i] = A((1.0 / double(counts[i])) / total);
}

// Throws Error unless every label row is a probability pair: finite, non-negative, summing to 1.
template <class Acc>
void check_preference_labels(const char* op, TensorView<const Acc, Cpu> labels /*N,2*/) {
    for (std::int64_t i = 0; i < labels.size(0); ++i) {
        const double y0 = double(labels[2 * i]), y1 = double(labels[2 * i + 1]);
        // 1e-5 absorbs the rounding of labels stored in float; real labels are 0, 0.5 and 1.
        require(std::isfinite(y0) && std::isfinite(y1) && y0 >= 0 && y1 >= 0 && std::abs(y0 + y1 - 1) <= 1e-5, op,
                ": labels[", i, "] = [", y0, ", ", y1, "] is not a probability pair (non-negative, summing to 1)");
    }
}

namespace detail {
// s_k = scale · <text_i, images_ik> for k = 0, 1.
template <class T, class Acc = acc_t<T>>
void preference_scores(Acc s[2], const T* text, const T* images, std::int64_t E, Acc scale) {
    for (int k = 0; k < 2; ++k) {
        Acc dot = 0;
        for (std::int64_t e = 0; e < E; ++e) dot += cast<Acc>(text[e]) * cast<Acc>(images[k * E + e]);
        s[k] = scale * dot;
    }
}
}  // namespace detail

template <class T>
double pickscore_loss_forward(TensorView<acc_t<T>, Cpu> probs /*N,2, may be empty*/,
                              TensorView<const T, Cpu> text /*N,E*/, TensorView<const T, Cpu> images /*N,2,E*/,
                              TensorView<const acc_t<T>, Cpu> labels /*N,2*/,
                              TensorView<const acc_t<T>, Cpu> weights /*N*/,
                              TensorView<const T, Cpu> logit_scale /*1*/) {
    using Acc = acc_t<T>;
    check_preference_labels<Acc>("pickscore_loss_forward", labels);
    const std::int64_t N = text.size(0), E = text.size(1);
    const Acc scale = std::exp(cast<Acc>(logit_scale[0]));
    std::vector<double> kl(static_cast<std::size_t>(N));
    parallel_for(N, [&](std::int64_t i) {
        Acc s[2];
        detail::preference_scores<T>(s, text.data() + i * E, images.data() + i * 2 * E, E, scale);
        // log-softmax over the pair, shifted by the larger score: log p_k = (s_k - m) - log Σ_j e^(s_j - m).
        const Acc m = std::max(s[0], s[1]);
        const Acc log_sum = std::log(std::exp(s[0] - m) + std::exp(s[1] - m));
        Acc sum = 0;
        for (int k = 0; k < 2; ++k) {
            const Acc logp = (s[k] - m) - log_sum;
            const Acc y = labels[2 * i + k];
            if (y > 0) sum += y * (std::log(y) - logp);
            if (!probs.empty()) probs[2 * i + k] = std::exp(logp);
        }
        kl[std::size_t(i)] = double(weights[i]) * double(sum);
    });
    double loss = 0;
    for (double v : kl) loss += v;  // in order: the same total for any thread count
    return loss;
}

template <class T>
void pickscore_loss_backward(TensorView<T, Cpu> dtext /*N,E*/, TensorView<T, Cpu> dimages /*N,2,E*/,
                             TensorView<T, Cpu> dlogit_scale /*1*/, TensorView<const acc_t<T>, Cpu> probs /*N,2*/,
                             TensorView<const T, Cpu> text /*N,E*/, TensorView<const T, Cpu> images /*N,2,E*/,
                             TensorView<const acc_t<T>, Cpu> labels /*N,2*/,
                             TensorView<const acc_t<T>, Cpu> weights /*N*/,
                             TensorView<const T, Cpu> logit_scale /*1*/, double dloss) {
    using Acc = acc_t<T>;
    check_preference_labels<Acc>("pickscore_loss_backward", labels);
    const std::int64_t N = text.size(0), E = text.size(1);
    const Acc scale = std::exp(cast<Acc>(logit_scale[0]));
    std::vector<Acc> dls(static_cast<std::size_t>(N));
    parallel_for(N, [&](std::int64_t i) {
        const T* t = text.data() + i * E;
        const T* im = images.data() + i * 2 * E;
        Acc g[2];
        for (int k = 0; k < 2; ++k) g[k] = Acc(dloss) * weights[i] * (probs[2 * i + k] - labels[2 * i + k]);
        if (!dtext.empty()) {
            T* dt = dtext.data() + i * E;
            for (std::int64_t e = 0; e < E; ++e)
                dt[e] = cast<T>(scale * (g[0] * cast<Acc>(im[e]) + g[1] * cast<Acc>(im[E + e])));
        }
        if (!dimages.empty()) {
            T* di = dimages.data() + i * 2 * E;
            for (int k = 0; k < 2; ++k)
                for (std::int64_t e = 0; e < E; ++e) di[k * E + e] = cast<T>(scale * g[k] * cast<Acc>(t[e]));
        }
        if (!dlogit_scale.empty()) {
            Acc s[2];
            detail::preference_scores<T>(s, t, im, E, scale);
            dls[std::size_t(i)] = g[0] * s[0] + g[1] * s[1];
        }
    });
    if (!dlogit_scale.empty()) {
        Acc sum = cast<Acc>(dlogit_scale[0]);
        for (Acc v : dls) sum += v;
        dlogit_scale[0] = cast<T>(sum);
    }
}

}  // namespace pickscore::cpu
