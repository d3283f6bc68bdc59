// pickscore/cuda/convert.hpp — element-type conversion on the device: f32 <-> bf16, e.g. the bf16
// working copy of f32 master weights, or an f32 view of bf16 activations for a check.
// pickscore-requires: pickscore::cuda_emulation (or pickscore::cuda: the CUDA runtime API, real or emulated)
//
//   Tensor<bf16, Cuda> w16(w32.shape());
//   cuda::convert(w16.view(), w32.cview());           // one kernel, asynchronous
//   Tensor<float, Cuda> back = cuda::to_dtype<float>(w16.cview());
//
// f32 -> bf16 rounds to nearest even (NaN stays NaN), as pickscore::convert does on the CPU;
// bf16 -> f32 is exact. Converting to the same type is a device-to-device copy. Pointers that
// are all 16-byte aligned move 16 bytes per access on the bf16 side (a scalar tail covers the
// rest); otherwise one element per access. Definitions: kernels/elementwise.cuh.
#pragma once

#include <cstdint>
#include <type_traits>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "elementwise.hpp"
#include "storage.hpp"

namespace pickscore::cuda {

// dst[i] = To(src[i]) for i < n, device pointers. Instantiated for (bf16, float) and (float, bf16).
template <class To, class From>
void convert(To* dst, const From* src, std::int64_t n);

// dst = To(src), element by element (asynchronous on the current stream).
template <class To, class From>
void convert(TensorView<To, Cuda> dst, TensorView<From, Cuda> src) {
    using F = std::remove_const_t<From>;
    static_assert(is_kernel_type<To> && is_kernel_type<F>, "cuda::convert: f32 and bf16 only");
    check_same_shape("cuda::convert", "dst", dst.shape(), "src", src.shape());
    if constexpr (std::is_same_v<To, F>) {
        copy<To>(dst, src);
    } else {
        convert<To, F>(dst.data(), src.data(), src.numel());
    }
}

// A new device tensor holding src converted to To.
template <class To, class From>
Tensor<To, Cuda> to_dtype(const TensorView<From, Cuda>& src) {
    Tensor<To, Cuda> out(src.shape());
    convert<To, From>(out.view(), src);
    return out;
}

}  // namespace pickscore::cuda
