// pickscore/cuda/layernorm.hpp — the CUDA backend of ops/layernorm.hpp: LayerNorm over the last
// dimension, forward (optionally fused with the residual add of a pre-LN block) and backward.
// Same arguments as the CPU backend (pickscore/cpu/layernorm.hpp); shapes are checked by the ops
// layer. Element types float and bf16; mean and rstd are f32.
//
// Forward: one warp per row, four rows per block. The row (up to 64 elements per lane, 2048 in all)
// stays in registers between the statistics and the output, so it is read from memory once;
// statistics are two-pass (mean, then the mean squared deviation) in f32 with warp-shuffle sums.
// A row is read completely before any of it is written: out may be the same memory as in, and in
// the fused form resid_out may be the same memory as a or b.
//
// Backward, one pass over dout and in: each warp computes din for its rows (written, or added to
// din with Accumulate::yes, in the same pass) and adds dout·x̂ and dout into per-warp column sums
// in shared memory; each block then writes its column sums to a scratch buffer, and a second small
// kernel adds the blocks' sums in block order to dweight and dbias (accumulated, rounded to T
// once). The grid size depends only on R, so the result is deterministic: no float atomics.
// Rows wider than about 29,000 elements exceed the shared memory of the backward kernel and throw.
// Definitions: kernels/layernorm.cuh.
#pragma once

#include <cstdint>

#include "../ops/common.hpp"

namespace pickscore::cuda {

// out[r, :] = (in[r, :] − μ_r) · rstd_r · weight + bias; mean and rstd (R floats) written unless null.
template <class T>
void layernorm_forward(T* out, float* mean, float* rstd, const T* in, const T* weight, const T* bias, std::int64_t R,
                       std::int64_t C, double eps);

// resid_out = a + b (rounded to T), ln_out = LayerNorm(resid_out) · weight + bias, in one pass.
template <class T>
void add_layernorm_forward(T* resid_out, T* ln_out, float* mean, float* rstd, const T* a, const T* b, const T* weight,
                           const T* bias, std::int64_t R, std::int64_t C, double eps);

// din = rstd · (g − mean(g) − x̂ · mean(g ∘ x̂)), g = dout ∘ weight (written, or added with
// Accumulate::yes); dweight += Σ_rows dout ∘ x̂; dbias += Σ_rows dout.
template <class T>
void layernorm_backward(T* din, T* dweight, T* dbias, const T* dout, const T* in, const T* weight, const float* mean,
                        const float* rstd, std::int64_t R, std::int64_t C, ops::Accumulate din_mode);

}  // namespace pickscore::cuda
