// pickscore/cuda/patches.hpp — the CUDA backend of ops/patches.hpp: the ViT patch rearrangement
// (patchify) and its inverse (unpatchify). Same arguments as the CPU backend
// (pickscore/cpu/patches.hpp) as raw pointers plus sizes, shapes already checked by the ops layer.
// Element types: float and bf16; pure data movement, nothing is rounded.
//     out[b, gy*(W/p) + gx, c*p*p + i*p + j] = image[b, c, gy*p + i, gx*p + j]
#pragma once

#include <cstdint>

#include "../core/dtype.hpp"

namespace pickscore::cuda {

// out [B, (H/p)·(W/p), C·p·p] from image [B, C, H, W].
template <class T>
void patchify(T* out, const T* image, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t p);

// dimage [B, C, H, W] (written) from dout [B, (H/p)·(W/p), C·p·p].
template <class T>
void unpatchify(T* dimage, const T* dout, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                std::int64_t p);

}  // namespace pickscore::cuda
