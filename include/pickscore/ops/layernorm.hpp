// pickscore/ops/layernorm.hpp — LayerNorm over the last dimension (PyTorch's nn.LayerNorm).
//
// For every row r of in (all leading dimensions folded: R = in.shape().rows() rows of C):
//   μ_r = mean_j x[r, j],  σ²_r = mean_j (x[r, j] − μ_r)²   (biased variance, as PyTorch)
//   rstd_r = 1 / √(σ²_r + eps),  x̂ = (x − μ_r) · rstd_r,  out = x̂ · weight + bias
// Forward saves μ and rstd (accumulator type, one per row: shape [R] or in's leading dimensions).
// Backward, with g = dout ∘ weight:
//   din     = rstd · (g − mean_j(g) − x̂ · mean_j(g ∘ x̂))   written, or added (din_mode == yes)
//   dweight += Σ_rows dout ∘ x̂,   dbias += Σ_rows dout       (accumulated)
// In a pre-LN block the residual stream's gradient is already in din: pass Accumulate::yes.
// add_layernorm_forward fuses the residual join before it: resid = a + b, out = LayerNorm(resid)
// (on CUDA in one pass over memory; its backward is layernorm_backward with Accumulate::yes into
// the residual gradient, which already reaches both summands).
// CUDA: f32 and bf16, mean and rstd in f32; the same promises (aliasing, written/accumulated).
#pragma once

#include "../core/tensor.hpp"
#include "../cpu/layernorm.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/elementwise.hpp"
#include "../cuda/layernorm.hpp"
#endif

namespace pickscore::ops {

namespace detail {
// One value per row of x: shape [R] or x's shape without its last dimension.
inline void check_row_stats(const char* op, const char* name, const Shape& s, const Shape& x) {
    Shape lead;
    for (int i = 0; i + 1 < x.rank(); ++i) lead.push_back(x[i]);
    require<ShapeError>(s == Shape{x.rows()} || s == lead, op, ": ", name, " has shape ", s, ", expected ",
                        Shape{x.rows()}, " or ", lead, " (one value per row of ", x, ")");
}

inline void check_layernorm_params(const char* op, const Shape& x, const char* w_name, const Shape& w) {
    require<ShapeError>(x.rank() >= 1 && x.last() >= 1, op, ": in has shape ", x,
                        ", expected rank >= 1 and a non-empty last dimension");
    require<ShapeError>(w == Shape{x.last()}, op, ": ", w_name, " has shape ", w, ", expected ", Shape{x.last()},
                        " (the last dimension of in, which has shape ", x, ")");
}
}  // namespace detail

// out = LayerNorm(in) · weight + bias; mean and rstd are saved unless both are empty
// (inference). out may be the same memory as in.
template <class T, class D>
void layernorm_forward(TensorView<T, D> out /*...,C*/, TensorView<acc_t<T>, D> mean /*R*/,
                       TensorView<acc_t<T>, D> rstd /*R*/, In<T, D> in /*...,C*/, In<T, D> weight /*C*/,
                       In<T, D> bias /*C*/, double eps = 1e-5) {
    const char* op = "layernorm_forward";
    check_shape(op, "out", out.shape(), in.shape());
    detail::check_layernorm_params(op, in.shape(), "weight", weight.shape());
    detail::check_layernorm_params(op, in.shape(), "bias", bias.shape());
    require<ShapeError>(mean.empty() == rstd.empty(), op, ": mean has shape ", mean.shape(), " and rstd has shape ",
                        rstd.shape(), " (save both or neither)");
    if (!mean.empty()) {
        detail::check_row_stats(op, "mean", mean.shape(), in.shape());
        detail::check_row_stats(op, "rstd", rstd.shape(), in.shape());
    }
    require<ShapeError>(eps >= 0, op, ": eps must be >= 0, got ", eps);
    if constexpr (is_cpu<D>) {
        cpu::layernorm_forward<T>(out.data(), mean.data(), rstd.data(), in.data(), weight.data(), bias.data(),
                                  in.shape().rows(), in.shape().last(), eps);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "layernorm_forward: the CUDA backend supports f32 and bf16");
        cuda::layernorm_forward<T>(out.data(), mean.data(), rstd.data(), in.data(), weight.data(), bias.data(),
                                   in.shape().rows(), in.shape().last(), eps);
#endif
    } else {
        static_assert(dependent_false<D>, "layernorm_forward: no backend for this device in this build");
    }
}

// resid_out = a + b (rounded to T), ln_out = LayerNorm(resid_out) · weight + bias, in one pass:
// the residual join of a pre-LN block and the LayerNorm after it. mean and rstd as in
// layernorm_forward (of resid_out). resid_out may be the same memory as a or b (x += branch).
template <class T, class D>
void add_layernorm_forward(TensorView<T, D> resid_out /*...,C*/, TensorView<T, D> ln_out /*...,C*/,
                           TensorView<acc_t<T>, D> mean /*R*/, TensorView<acc_t<T>, D> rstd /*R*/, In<T, D> a /*...,C*/,
                           In<T, D> b /*...,C*/, In<T, D> weight /*C*/, In<T, D> bias /*C*/, double eps = 1e-5) {
    const char* op = "add_layernorm_forward";
    check_shape(op, "b", b.shape(), a.shape());
    check_shape(op, "resid_out", resid_out.shape(), a.shape());
    check_shape(op, "ln_out", ln_out.shape(), a.shape());
    detail::check_layernorm_params(op, a.shape(), "weight", weight.shape());
    detail::check_layernorm_params(op, a.shape(), "bias", bias.shape());
    require<ShapeError>(mean.empty() == rstd.empty(), op, ": mean has shape ", mean.shape(), " and rstd has shape ",
                        rstd.shape(), " (save both or neither)");
    if (!mean.empty()) {
        detail::check_row_stats(op, "mean", mean.shape(), a.shape());
        detail::check_row_stats(op, "rstd", rstd.shape(), a.shape());
    }
    require<ShapeError>(eps >= 0, op, ": eps must be >= 0, got ", eps);
    if constexpr (is_cpu<D>) {
        cpu::add_layernorm_forward<T>(resid_out.data(), ln_out.data(), mean.data(), rstd.data(), a.data(), b.data(),
                                      weight.data(), bias.data(), a.shape().rows(), a.shape().last(), eps);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "add_layernorm_forward: the CUDA backend supports f32 and bf16");
        cuda::add_layernorm_forward<T>(resid_out.data(), ln_out.data(), mean.data(), rstd.data(), a.data(), b.data(),
                                       weight.data(), bias.data(), a.shape().rows(), a.shape().last(), eps);
#endif
    } else {
        static_assert(dependent_false<D>, "add_layernorm_forward: no backend for this device in this build");
    }
}

// din = ∂L/∂in (written, or added when din_mode == Accumulate::yes); dweight, dbias accumulate.
template <class T, class D>
void layernorm_backward(TensorView<T, D> din /*...,C*/, TensorView<T, D> dweight /*C*/, TensorView<T, D> dbias /*C*/,
                        In<T, D> dout /*...,C*/, In<T, D> in /*...,C*/, In<T, D> weight /*C*/,
                        In<acc_t<T>, D> mean /*R*/, In<acc_t<T>, D> rstd /*R*/, Accumulate din_mode = Accumulate::no) {
    const char* op = "layernorm_backward";
    check_shape(op, "din", din.shape(), in.shape());
    check_shape(op, "dout", dout.shape(), in.shape());
    detail::check_layernorm_params(op, in.shape(), "weight", weight.shape());
    detail::check_layernorm_params(op, in.shape(), "dweight", dweight.shape());
    detail::check_layernorm_params(op, in.shape(), "dbias", dbias.shape());
    check_present(op, "mean", mean);
    check_present(op, "rstd", rstd);
    detail::check_row_stats(op, "mean", mean.shape(), in.shape());
    detail::check_row_stats(op, "rstd", rstd.shape(), in.shape());
    if constexpr (is_cpu<D>) {
        cpu::layernorm_backward<T>(din.data(), dweight.data(), dbias.data(), dout.data(), in.data(), weight.data(),
                                   mean.data(), rstd.data(), in.shape().rows(), in.shape().last(), din_mode);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        static_assert(cuda::is_kernel_type<T>, "layernorm_backward: the CUDA backend supports f32 and bf16");
        cuda::layernorm_backward<T>(din.data(), dweight.data(), dbias.data(), dout.data(), in.data(), weight.data(),
                                    mean.data(), rstd.data(), in.shape().rows(), in.shape().last(), din_mode);
#endif
    } else {
        static_assert(dependent_false<D>, "layernorm_backward: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
