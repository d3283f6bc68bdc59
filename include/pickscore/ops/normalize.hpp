// pickscore/ops/normalize.hpp — L2 normalisation of the last dimension (CLIP's embeddings).
//
//     norm[r] = ||in[r, :]||₂,   out[r, :] = in[r, :] / norm[r]
//     din[r, :] = (dout[r, :] - out[r, :] · <out[r, :], dout[r, :]>) / norm[r]
// over every row r of the leading dimensions folded together (any rank >= 1). The forward saves
// `out` and `norm` (in acc_t<T>) for the backward; `norm` may be left empty when no backward follows.
//
// A zero row: out = 0, norm = 0, and its gradient din = 0 (the subgradient at the kink). This is
// a choice, and it differs from PyTorch's `x / x.norm(dim=-1, keepdim=True)` (what CLIP and
// PickScore write), which gives NaN (0/0) for such a row; F.normalize clamps the norm at 1e-12
// and gives zeros, like this op.
#pragma once

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../cpu/normalize.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/normalize.hpp"
#endif

namespace pickscore::ops {

namespace detail {
// `norm` holds one value per row: the leading dimensions of `rows` (e.g. [B, T] for [B, T, C]) or
// all of them folded into one ([B*T]).
inline void check_norm_shape(const char* op, const Shape& norm, const char* rows_name, const Shape& rows) {
    Shape leading;
    for (int i = 0; i + 1 < rows.rank(); ++i) leading.push_back(rows[i]);
    require<ShapeError>(norm == leading || norm == Shape{rows.rows()}, op, ": norm has shape ", norm, " and ",
                        rows_name, " has shape ", rows, " (expected one norm per row: ", leading, " or [",
                        rows.rows(), "])");
}
}  // namespace detail

// out = in / ||in|| row by row; norm (may be empty) receives ||in||.
template <class T, class D>
void l2_normalize_forward(TensorView<T, D> out /*R,C*/, TensorView<acc_t<T>, D> norm /*R*/, In<T, D> in /*R,C*/) {
    constexpr const char* op = "l2_normalize_forward";
    require<ShapeError>(in.rank() >= 1, op, ": in has shape ", in.shape(), " (rank 1 or more expected)");
    require<ShapeError>(out.shape() == in.shape(), op, ": out has shape ", out.shape(), " but in has shape ",
                        in.shape());
    if (!norm.empty()) detail::check_norm_shape(op, norm.shape(), "in", in.shape());
    if constexpr (is_cpu<D>) {
        cpu::l2_normalize_forward<T>(out, norm, in);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::l2_normalize_forward<T>(out.data(), norm.data(), in.data(), in.shape().rows(), in.shape().last());
#endif
    } else {
        static_assert(dependent_false<D>, "l2_normalize_forward: no backend for this device in this build");
    }
}

// din = (dout - out · <out, dout>) / norm row by row (written).
template <class T, class D>
void l2_normalize_backward(TensorView<T, D> din /*R,C*/, In<T, D> dout /*R,C*/, In<T, D> out /*R,C*/,
                           In<acc_t<T>, D> norm /*R*/) {
    constexpr const char* op = "l2_normalize_backward";
    require<ShapeError>(out.rank() >= 1, op, ": out has shape ", out.shape(), " (rank 1 or more expected)");
    require<ShapeError>(din.shape() == out.shape(), op, ": din has shape ", din.shape(), " but out has shape ",
                        out.shape());
    require<ShapeError>(dout.shape() == out.shape(), op, ": dout has shape ", dout.shape(), " but out has shape ",
                        out.shape());
    check_present(op, "norm", norm);
    detail::check_norm_shape(op, norm.shape(), "out", out.shape());
    if constexpr (is_cpu<D>) {
        cpu::l2_normalize_backward<T>(din, dout, out, norm);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::l2_normalize_backward<T>(din.data(), dout.data(), out.data(), norm.data(), out.shape().rows(),
                                       out.shape().last());
#endif
    } else {
        static_assert(dependent_false<D>, "l2_normalize_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
