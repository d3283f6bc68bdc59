// pickscore/cuda/softmax.hpp — the CUDA backend of ops/softmax.hpp: softmax over the last dimension,
// forward and backward. Same arguments as the CPU backend (pickscore/cpu/softmax.hpp); shapes are
// checked by the ops layer.
//
// One warp per row, four rows per block. A row of up to 64 elements per lane (2048 in all) is kept
// in registers, so it is read from memory once; longer rows are read again from the cache. The row
// maximum and the sums are warp-shuffle reductions in f32; each output is rounded to T once. The
// row is read completely before it is written, so out may be the same memory as in. A row that
// is −∞ throughout gives NaN, as on the CPU. Definitions: kernels/softmax.cuh.
#pragma once

#include <cstdint>

namespace pickscore::cuda {

// out[r, :] = softmax(in[r, :]) for R rows of N
template <class T>
void softmax_forward(T* out, const T* in, std::int64_t R, std::int64_t N);

// din[r, j] = out[r, j] · (dout[r, j] − Σ_k dout[r, k] · out[r, k])   (written)
template <class T>
void softmax_backward(T* din, const T* dout, const T* out, std::int64_t R, std::int64_t N);

}  // namespace pickscore::cuda
