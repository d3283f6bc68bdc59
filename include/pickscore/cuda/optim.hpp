// pickscore/cuda/optim.hpp — the CUDA backend of ops/optim.hpp: AdamW in one launch over a flat
// buffer, the global gradient norm as a deterministic device reduction, and clipping that reads
// the norm from device memory (no host synchronisation anywhere here).
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
//
// AdamW does PyTorch's arithmetic in the CPU backend's order (pickscore/cpu/optim.hpp), in f32:
// the bias corrections and the step size are formed on the host in double and passed as f32,
// exactly as the CPU rounds them. On the GPU nvcc may fuse a multiply and an add into an FMA, so
// results may differ from the CPU's in the last bits.
//
// The norm: Σ g² is accumulated in double, first per block in a grid-stride loop (the grid size
// depends only on n) and a fixed shuffle tree, then by one block over the block sums in block
// order: the same bits on every run, no atomics.
// Definitions: kernels/optim.cuh.
#pragma once

#include <cstdint>

#include "../core/dtype.hpp"
#include "storage.hpp"

namespace pickscore::cuda {

// One AdamW step over n elements: param (P = float master weights, or bf16), m and v (f32) are
// updated; grad is G = float or bf16. param_bf16 (may be null) receives bf16(updated param) in the
// same pass. grad_norm (may be null; device memory, one f32): the gradient is clipped on the fly,
// g · coef with coef = max_norm / (grad_norm[0] + 1e-6) when that is below 1; a non-finite
// grad_norm[0] skips the update (param, m, v unchanged; param_bf16 is still written).
template <class P, class G>
void adamw_update(P* param, bf16* param_bf16, float* m, float* v, const G* grad, const float* grad_norm,
                  double max_norm, std::int64_t n, std::int64_t step, double lr, double beta1, double beta2, double eps,
                  double weight_decay);

// acc[0] = (accumulate ? acc[0] : 0) + Σ_{i<n} g[i]² in double; then, unless norm is null,
// norm[0] = f32(sqrt(acc[0])). acc and norm are device memory; n may be 0.
template <class G>
void grad_sum_of_squares(double* acc, float* norm, const G* g, std::int64_t n, bool accumulate);

// g[i] ← g[i] · f32(coef), coef = max_norm / (norm[0] + 1e-6) read from device memory, when coef < 1
// and norm[0] is finite; otherwise g is left alone.
template <class T>
void clip_by_norm(T* g, std::int64_t n, const float* norm, double max_norm);

}  // namespace pickscore::cuda
