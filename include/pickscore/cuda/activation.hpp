// pickscore/cuda/activation.hpp — the CUDA backend of ops/activation.hpp: GELU (erf and tanh forms)
// and quick GELU, forward and backward, element by element. Same arguments as the CPU backend
// (pickscore/cpu/activation.hpp); shapes are checked by the ops layer.
//
// Element types: float and bf16, computed in f32 from the formula (erff, tanhf, expf: a few ulps of
// f32 on the GPU) and rounded to T once. Elements are independent: out may be the same memory as
// in, and din as dout. 16-byte accesses where every pointer is 16-byte aligned, else scalar.
// Definitions: kernels/activation.cuh.
#pragma once

#include <cstdint>

#include "../ops/common.hpp"

namespace pickscore::cuda {

// out[i] = f(in[i])
template <class T>
void activation_forward(T* out, const T* in, std::int64_t n, ops::Activation a);

// din[i] = dout[i] · f'(in[i]), in being the saved pre-activation (written)
template <class T>
void activation_backward(T* din, const T* dout, const T* in, std::int64_t n, ops::Activation a);

}  // namespace pickscore::cuda
