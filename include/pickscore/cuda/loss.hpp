// pickscore/cuda/loss.hpp — the CUDA backend of ops/loss.hpp: PickScore's preference loss and the
// per-example weights. Same arguments as the CPU backend (pickscore/cpu/loss.hpp) as raw pointers
// plus sizes, shapes already checked by the ops layer. Element types: float and bf16 for the
// embeddings and logit_scale; probabilities, labels, weights and the loss are f32 (acc_t).
//
// Nothing here waits for the GPU: the loss goes to a device buffer. The values the CPU backend
// checks (labels that are probability pairs, positive finite counts) are not checked here, where
// they are device memory; the ops layer says where they are checked instead. Invalid ones are not
// silent: an example with an invalid label pair gets a NaN loss term (so the loss is NaN) and NaN
// gradients, and an invalid count makes every weight NaN.
//
// Sums across examples (the loss, the logit-scale gradient, the weights' normaliser) are formed in
// double by one block in a fixed order: the same bits on every run.
#pragma once

#include <cstdint>

#include "../core/dtype.hpp"

namespace pickscore::cuda {

// weights[i] = (1 / counts[i]) / Σ_j (1 / counts[j]).
void preference_weights(float* weights /*N*/, const float* counts /*N*/, std::int64_t N);

// loss[0] = Σ_i w_i KL(y_i || softmax(s_i)) (loss may be null); probs [N,2] receives p_i (may be null).
template <class T>
void pickscore_loss_forward(float* loss /*1*/, float* probs /*N,2*/, const T* text /*N,E*/, const T* images /*N,2,E*/,
                            const float* labels /*N,2*/, const float* weights /*N*/, const T* logit_scale /*1*/,
                            std::int64_t N, std::int64_t E);

// dtext, dimages written; dlogit_scale accumulated; each may be null.
template <class T>
void pickscore_loss_backward(T* dtext /*N,E*/, T* dimages /*N,2,E*/, T* dlogit_scale /*1*/, const float* probs /*N,2*/,
                             const T* text /*N,E*/, const T* images /*N,2,E*/, const float* labels /*N,2*/,
                             const float* weights /*N*/, const T* logit_scale /*1*/, double dloss, std::int64_t N,
                             std::int64_t E);

}  // namespace pickscore::cuda
