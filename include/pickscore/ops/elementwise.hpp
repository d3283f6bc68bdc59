// pickscore/ops/elementwise.hpp — sums and scaling, element by element (the residual stream).
//
// All tensors of one call have the same shape. Backward needs no op of its own: the gradient of a
// sum reaches both summands unchanged (add_inplace where it joins an existing gradient), and the
// gradient of scale_inplace(x, s) is the incoming gradient scaled by s.
// fill sets every element (zeroing a gradient buffer is one fill of the flat buffer).
// CUDA: f32 and bf16, the same promises (outputs may alias inputs).
#pragma once

#include "../core/tensor.hpp"
#include "../cpu/elementwise.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/elementwise.hpp"
#endif

namespace pickscore::ops {

// out = a + b. out may be the same memory as a or b.
template <class T, class D>
void add(TensorView<T, D> out /*...*/, In<T, D> a /*...*/, In<T, D> b /*...*/) {
    check_shape("add", "a", a.shape(), out.shape());
    check_shape("add", "b", b.shape(), out.shape());
    if constexpr (is_cpu<D>) {
        cpu::add<T>(out.data(), a.data(), b.data(), out.numel());
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "add: the CUDA backend supports f32 and bf16");
        cuda::add<T>(out.data(), a.data(), b.data(), out.numel());
#endif
    } else {
        static_assert(dependent_false<D>, "add: no backend for this device in this build");
    }
}

// acc += x: how a residual branch (or its gradient) joins the stream.
template <class T, class D>
void add_inplace(TensorView<T, D> acc /*...*/, In<T, D> x /*...*/) {
    check_shape("add_inplace", "x", x.shape(), acc.shape());
    if constexpr (is_cpu<D>) {
        cpu::add_inplace<T>(acc.data(), x.data(), acc.numel());
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "add_inplace: the CUDA backend supports f32 and bf16");
        cuda::add_inplace<T>(acc.data(), x.data(), acc.numel());
#endif
    } else {
        static_assert(dependent_false<D>, "add_inplace: no backend for this device in this build");
    }
}

// x *= s
template <class T, class D>
void scale_inplace(TensorView<T, D> x /*...*/, double s) {
    if constexpr (is_cpu<D>) {
        cpu::scale_inplace<T>(x.data(), s, x.numel());
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "scale_inplace: the CUDA backend supports f32 and bf16");
        cuda::scale_inplace<T>(x.data(), s, x.numel());
#endif
    } else {
        static_assert(dependent_false<D>, "scale_inplace: no backend for this device in this build");
    }
}

// x = value everywhere (NaN and infinity in x are overwritten, unlike scaling by 0)
template <class T, class D>
void fill(TensorView<T, D> x /*...*/, double value) {
    if constexpr (is_cpu<D>) {
        cpu::fill<T>(x.data(), value, x.numel());
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "fill: the CUDA backend supports f32 and bf16");
        cuda::fill<T>(x.data(), value, x.numel());
#endif
    } else {
        static_assert(dependent_false<D>, "fill: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
