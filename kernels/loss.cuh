// kernels/loss.cuh — PickScore's preference loss and the per-example weights
// (pickscore/cuda/loss.hpp).
//
// One warp per example (blocks of 32 x 8 threads): the lanes stride over the embedding in chunks
// of W elements (16 bytes when the rows allow, else 1) for the two dot products <text, image_k>,
// which butterfly shuffles hand to every lane; lane 0 finishes the two-way softmax. Per-example
// terms (w_i KL_i, or the logit-scale gradient's g·s) go to an f32 scratch vector that one block
// of 256 threads then sums in double in a fixed order, so nothing waits for the host and every
// run gives the same bits.
#pragma once

#include <cfloat>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <type_traits>

#include <pickscore/core/tensor.hpp>
#include <pickscore/cuda/loss.hpp>
#include <pickscore/cuda/storage.hpp>

#include "common.cuh"
#include "elementwise.cuh"

namespace pickscore::cuda::kernels::pickscore_loss {

using chunk::Chunk;
using chunk::load;
using chunk::store;

using vec::warp_sum;  // a fixed butterfly: the same bits in every lane and on every run

// d_k = <text, images[k]> for k = 0, 1, in every lane of the warp.
template <class T, int W>
__device__ __forceinline__ void pair_dots(float& d0, float& d1, const T* text, const T* images, std::int64_t E) {
    float a0 = 0.0f, a1 = 0.0f;
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < E; c += 32 * W) {
        const auto t = load<W>(text + c), i0 = load<W>(images + c), i1 = load<W>(images + E + c);
        for (int k = 0; k < W; ++k) {
            a0 += to_float(t.v[k]) * to_float(i0.v[k]);
            a1 += to_float(t.v[k]) * to_float(i1.v[k]);
        }
    }
    d0 = warp_sum(a0);
    d1 = warp_sum(a1);
}

// The CPU backend's label check: finite, non-negative, summing to 1 within 1e-5 (NaN fails it).
__device__ __forceinline__ bool is_label_pair(float y0, float y1) {
    const float excess = y0 + y1 - 1.0f;
    return y0 >= 0.0f && y1 >= 0.0f && excess <= 1e-5f && excess >= -1e-5f;
}

__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

constexpr int kExamplesPerBlock = 8;
constexpr int kReduceThreads = 256;

// terms[i] = w_i KL(y_i || p_i) (NaN for an invalid label pair); probs[i] = p_i (probs may be null).
template <class T, int W>
__global__ void pickscore_loss_forward_kernel(float* terms, float* probs, const T* text, const T* images,
                                              const float* labels, const float* weights, const T* logit_scale,
                                              std::int64_t N, std::int64_t E) {
    const std::int64_t i = std::int64_t(blockIdx.x) * kExamplesPerBlock + threadIdx.y;
    if (i >= N) return;  // the whole warp leaves together
    const float scale = expf(to_float(logit_scale[0]));
    float d0, d1;
    pair_dots<T, W>(d0, d1, text + i * E, images + i * 2 * E, E);
    if (threadIdx.x != 0) return;
    const float s0 = scale * d0, s1 = scale * d1;
    // log-softmax over the pair, shifted by the larger score
    const float m = s0 > s1 ? s0 : s1;
    const float log_sum = logf(expf(s0 - m) + expf(s1 - m));
    const float logp0 = (s0 - m) - log_sum, logp1 = (s1 - m) - log_sum;
    const float y0 = labels[2 * i], y1 = labels[2 * i + 1];
    float kl = 0.0f;
    if (y0 > 0.0f) kl += y0 * (logf(y0) - logp0);
    if (y1 > 0.0f) kl += y1 * (logf(y1) - logp1);
    if (probs != nullptr) {
        probs[2 * i] = expf(logp0);
        probs[2 * i + 1] = expf(logp1);
    }
    terms[i] = is_label_pair(y0, y1) ? weights[i] * kl : quiet_nan();
}

// dtext_i = scale (g_0 images_i0 + g_1 images_i1), dimages_ik = scale g_k text_i with
// g_k = dloss w_i (p_k - y_k); terms[i] = g_0 s_0 + g_1 s_1 when terms is not null.
template <class T, int W>
__global__ void pickscore_loss_backward_kernel(T* dtext, T* dimages, float* terms, const float* probs, const T* text,
                                               const T* images, const float* labels, const float* weights,
                                               const T* logit_scale, float dloss, std::int64_t N, std::int64_t E) {
    const std::int64_t i = std::int64_t(blockIdx.x) * kExamplesPerBlock + threadIdx.y;
    if (i >= N) return;
    const float scale = expf(to_float(logit_scale[0]));
    const float y0 = labels[2 * i], y1 = labels[2 * i + 1];
    const bool valid = is_label_pair(y0, y1);
    const float g0 = valid ? dloss * weights[i] * (probs[2 * i] - y0) : quiet_nan();
    const float g1 = valid ? dloss * weights[i] * (probs[2 * i + 1] - y1) : quiet_nan();
    const T* t = text + i * E;
    const T* im = images + i * 2 * E;
    if (terms != nullptr) {  // the same for every warp of the launch
        float d0, d1;
        pair_dots<T, W>(d0, d1, t, im, E);
        if (threadIdx.x == 0) terms[i] = g0 * (scale * d0) + g1 * (scale * d1);
    }
    for (std::int64_t c = std::int64_t(threadIdx.x) * W; c < E; c += 32 * W) {
        const auto tt = load<W>(t + c), i0 = load<W>(im + c), i1 = load<W>(im + E + c);
        if (dtext != nullptr) {
            Chunk<T, W> o;
            for (int k = 0; k < W; ++k)
                o.v[k] = from_float<T>(scale * (g0 * to_float(i0.v[k]) + g1 * to_float(i1.v[k])));
            store<W>(dtext + i * E + c, o);
        }
        if (dimages != nullptr) {
            Chunk<T, W> o0, o1;
            for (int k = 0; k < W; ++k) {
                o0.v[k] = from_float<T>(scale * g0 * to_float(tt.v[k]));
                o1.v[k] = from_float<T>(scale * g1 * to_float(tt.v[k]));
            }
            store<W>(dimages + i * 2 * E + c, o0);
            store<W>(dimages + i * 2 * E + E + c, o1);
        }
    }
}

// out[0] = (accumulate ? out[0] : 0) + Σ_i terms[i], summed in double in a fixed order (one block).
template <class Out>
__global__ void sum_terms_kernel(Out* out, const float* terms, std::int64_t n, bool accumulate) {
    PICKSCORE_SHARED(double[kReduceThreads], partial);
    double s = 0.0;
    for (std::int64_t i = threadIdx.x; i < n; i += kReduceThreads) s += double(terms[i]);
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
        if (int(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        double total = partial[0];
        if (accumulate) total += double(to_float(out[0]));
        out[0] = from_float<Out>(float(total));
    }
}

// weights[i] = (1 / counts[i]) / Σ_j (1 / counts[j]); every weight NaN if a count is not positive
// and finite. One block; the sum in double in a fixed order.
__global__ void preference_weights_kernel(float* weights, const float* counts, std::int64_t N) {
    PICKSCORE_SHARED(double[kReduceThreads], partial);
    double s = 0.0;
    for (std::int64_t i = threadIdx.x; i < N; i += kReduceThreads) {
        const float n = counts[i];
        s += n > 0.0f && n <= FLT_MAX ? 1.0 / double(n) : double(quiet_nan());
    }
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
        if (int(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    const double total = partial[0];
    for (std::int64_t i = threadIdx.x; i < N; i += kReduceThreads)
        weights[i] = float((1.0 / double(counts[i])) / total);
}

}  // namespace pickscore::cuda::kernels::pickscore_loss

namespace pickscore::cuda {

namespace loss_host {

template <class T>
constexpr bool supported = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

inline dim3 example_grid(std::int64_t N) { return dim3(blocks_for(N, kernels::pickscore_loss::kExamplesPerBlock)); }
inline dim3 example_block() { return dim3(32, kernels::pickscore_loss::kExamplesPerBlock); }

}  // namespace loss_host

void preference_weights(float* weights, const float* counts, std::int64_t N) {
    if (N == 0) return;
    launch(kernels::pickscore_loss::preference_weights_kernel, dim3(1), dim3(kernels::pickscore_loss::kReduceThreads),
           0, weights, counts, N);
}

template <class T>
void pickscore_loss_forward(float* loss, float* probs, const T* text, const T* images, const float* labels,
                            const float* weights, const T* logit_scale, std::int64_t N, std::int64_t E) {
    static_assert(loss_host::supported<T>, "the CUDA PickScore loss supports f32 and bf16");
    Tensor<float, Cuda> terms(Shape{N});
    if (N > 0) {
        with_chunk_width<T>(E, {text, images}, [&](auto w) {
            launch(kernels::pickscore_loss::pickscore_loss_forward_kernel<device_t<T>, decltype(w)::value>,
                   loss_host::example_grid(N), loss_host::example_block(), 0, terms.data(), probs, device_ptr(text),
                   device_ptr(images), labels, weights, device_ptr(logit_scale), N, E);
        });
    }
    if (loss != nullptr)  // N = 0 too: the loss of an empty batch is 0
        launch(kernels::pickscore_loss::sum_terms_kernel<float>, dim3(1), dim3(kernels::pickscore_loss::kReduceThreads),
               0, loss, static_cast<const float*>(terms.data()), N, false);
}

template <class T>
void pickscore_loss_backward(T* dtext, T* dimages, T* dlogit_scale, const float* probs, const T* text, const T* images,
                             const float* labels, const float* weights, const T* logit_scale, double dloss,
                             std::int64_t N, std::int64_t E) {
    static_assert(loss_host::supported<T>, "the CUDA PickScore loss supports f32 and bf16");
    if (N == 0 || (dtext == nullptr && dimages == nullptr && dlogit_scale == nullptr)) return;
    Tensor<float, Cuda> terms;
    if (dlogit_scale != nullptr) terms = Tensor<float, Cuda>(Shape{N});
    with_chunk_width<T>(E, {dtext, dimages, text, images}, [&](auto w) {
        launch(kernels::pickscore_loss::pickscore_loss_backward_kernel<device_t<T>, decltype(w)::value>,
               loss_host::example_grid(N), loss_host::example_block(), 0, device_ptr(dtext), device_ptr(dimages),
               terms.data(), probs, device_ptr(text), device_ptr(images), labels, weights, device_ptr(logit_scale),
               float(dloss), N, E);
    });
    if (dlogit_scale != nullptr)
        launch(kernels::pickscore_loss::sum_terms_kernel<device_t<T>>, dim3(1),
               dim3(kernels::pickscore_loss::kReduceThreads), 0, device_ptr(dlogit_scale),
               static_cast<const float*>(terms.data()), N, true);
}

template void pickscore_loss_forward<float>(float*, float*, const float*, const float*, const float*, const float*,
                                            const float*, std::int64_t, std::int64_t);
template void pickscore_loss_forward<bf16>(float*, float*, const bf16*, const bf16*, const float*, const float*,
                                           const bf16*, std::int64_t, std::int64_t);
template void pickscore_loss_backward<float>(float*, float*, float*, const float*, const float*, const float*,
                                             const float*, const float*, const float*, double, std::int64_t,
                                             std::int64_t);
template void pickscore_loss_backward<bf16>(bf16*, bf16*, bf16*, const float*, const bf16*, const bf16*, const float*,
                                            const float*, const bf16*, double, std::int64_t, std::int64_t);

}  // namespace pickscore::cuda
