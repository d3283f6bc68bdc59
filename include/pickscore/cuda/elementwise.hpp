// pickscore/cuda/elementwise.hpp — the CUDA backend of ops/elementwise.hpp: sums, scaling and fill,
// element by element, on device memory. Same arguments as the CPU backend
// (pickscore/cpu/elementwise.hpp); shapes are checked by the ops layer.
//
// Element types: float and bf16 (is_kernel_type), arithmetic in f32 and one rounding per element,
// as on the CPU. Elements are independent, so an output may be the same memory as an input.
// Where every pointer is 16-byte aligned the kernels move 16 bytes per access (a scalar tail
// covers n not a multiple of the vector); otherwise they fall back to one element per access.
// Definitions: kernels/elementwise.cuh (compiled once, in pickscore::cuda or ::cuda_emulation).
#pragma once

#include <cstdint>
#include <type_traits>

#include "../core/dtype.hpp"

namespace pickscore::cuda {

// The element types of the hand-written kernels (f32 and bf16; statistics and sums in f32).
template <class T>
inline constexpr bool is_kernel_type = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

// out[i] = a[i] + b[i]
template <class T>
void add(T* out, const T* a, const T* b, std::int64_t n);

// acc[i] += x[i]
template <class T>
void add_inplace(T* acc, const T* x, std::int64_t n);

// x[i] *= f32(s)
template <class T>
void scale_inplace(T* x, double s, std::int64_t n);

// x[i] = value, rounded to T once (on the host, exactly as cpu::fill rounds it)
template <class T>
void fill(T* x, double value, std::int64_t n);

}  // namespace pickscore::cuda
