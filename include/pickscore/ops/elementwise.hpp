// pickscore/ops/elementwise.hpp — sums and scaling, element by element (the residual stream).
//
// All tensors of one call have the same shape. Backward needs no op of its own: the gradient of a
// sum reaches both summands unchanged (add_inplace where it joins an existing gradient), and the
// gradient of scale_inplace(x, s) is the incoming gradient scaled by s.
// fill sets every element (zeroing a gradient buffer is one fill of the flat buffer).
#pragma once

#include "../core/tensor.hpp"
#include "../cpu/elementwise.hpp"
#include "common.hpp"

namespace pickscore::ops {

// out = a + b. out may be the same memory as a or b.
template <class T, class D>
void add(TensorView<T, D> out /*...*/, In<T, D> a /*...*/, In<T, D> b /*...*/) {
    check_shape("add", "a", a.shape(), out.shape());
    check_shape("add", "b", b.shape(), out.shape());
    if constexpr (is_cpu<D>) {
        cpu::add<T>(out.data(), a.data(), b.data(), out.numel());
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
    } else {
        static_assert(dependent_false<D>, "add_inplace: no backend for this device in this build");
    }
}

// x *= s
template <class T, class D>
void scale_inplace(TensorView<T, D> x /*...*/, double s) {
    if constexpr (is_cpu<D>) {
        cpu::scale_inplace<T>(x.data(), s, x.numel());
    } else {
        static_assert(dependent_false<D>, "scale_inplace: no backend for this device in this build");
    }
}

// x = value everywhere (NaN and infinity in x are overwritten, unlike scaling by 0)
template <class T, class D>
void fill(TensorView<T, D> x /*...*/, double value) {
    if constexpr (is_cpu<D>) {
        cpu::fill<T>(x.data(), value, x.numel());
    } else {
        static_assert(dependent_false<D>, "fill: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
