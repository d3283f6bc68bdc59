// pickscore/cuda/normalize.hpp — the CUDA backend of ops/normalize.hpp: row-wise L2 normalisation.
// Same arguments as the CPU backend (pickscore/cpu/normalize.hpp) as raw pointers plus sizes,
// shapes already checked by the ops layer. Element types: float and bf16; sums of squares, dot
// products and the saved norm in f32. A zero row gives out = 0, norm = 0 and din = 0, as on the CPU.
// out may alias in, and din may alias dout (each element is read before it is written, by the
// same thread).
#pragma once

#include <cstdint>

#include "../core/dtype.hpp"

namespace pickscore::cuda {

// norm[r] = ||in[r, :]||, out[r, :] = in[r, :] / norm[r]; norm may be null.
template <class T>
void l2_normalize_forward(T* out /*R,C*/, float* norm /*R*/, const T* in /*R,C*/, std::int64_t rows, std::int64_t C);

// din[r, :] = (dout[r, :] - out[r, :] · <out[r, :], dout[r, :]>) / norm[r]   (written)
template <class T>
void l2_normalize_backward(T* din /*R,C*/, const T* dout /*R,C*/, const T* out /*R,C*/, const float* norm /*R*/,
                           std::int64_t rows, std::int64_t C);

}  // namespace pickscore::cuda
