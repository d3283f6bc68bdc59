// pickscore/ops/patches.hpp — the ViT patch embedding as a rearrangement plus a GEMM.
//
// CLIP's vision stem is a convolution 3 -> width with kernel p = stride p and no bias. Because the
// patches do not overlap it equals
//     patchify(x, image, p);  linear_forward(y, x, conv_weight.reshape({width, 3*p*p}), {});
// where
//     x[b, gy*(W/p) + gx, c*p*p + i*p + j] = image[b, c, gy*p + i, gx*p + j]
// i.e. rows follow the patch grid row-major and columns follow the flattening of a conv weight
// [width, 3, p, p]. unpatchify is the backward (written, not accumulated): dimage from dx.
// Any channel count works (the images here have 3). H and W must be multiples of p; CLIP's
// processor crops to 224 = 16·14 before this.
#pragma once

#include <cstdint>

#include "../core/tensor.hpp"
#include "../cpu/patches.hpp"
#include "../cuda/enabled.hpp"
#include "common.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/patches.hpp"
#endif

namespace pickscore::ops {

namespace detail {
// Checks image [B,C,H,W] against rows [B,N,C*p*p] for patch size p.
inline void check_patches(const char* op, const char* rows_name, const Shape& rows, const char* image_name,
                          const Shape& image, std::int64_t p) {
    require<ShapeError>(p >= 1, op, ": patch size must be at least 1, got ", p);
    check_rank(op, image_name, image, 4);
    require<ShapeError>(image[2] % p == 0 && image[3] % p == 0, op, ": ", image_name, " has shape ", image,
                        " whose height and width are not multiples of the patch size ", p);
    const Shape expected{image[0], (image[2] / p) * (image[3] / p), image[1] * p * p};
    require<ShapeError>(rows == expected, op, ": ", rows_name, " has shape ", rows, " and ", image_name,
                        " has shape ", image, " (patch ", p, ": expected ", rows_name, " ", expected, ")");
}
}  // namespace detail

// out[b, n, c*p*p + i*p + j] = image[b, c, (n / (W/p))*p + i, (n % (W/p))*p + j]
template <class T, class D>
void patchify(TensorView<T, D> out /*B,(H/p)*(W/p),3*p*p*/, In<T, D> image /*B,3,H,W*/, std::int64_t patch) {
    detail::check_patches("patchify", "out", out.shape(), "image", image.shape(), patch);
    if constexpr (is_cpu<D>) {
        cpu::patchify<T>(out, image, patch);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::patchify<T>(out.data(), image.data(), image.size(0), image.size(1), image.size(2), image.size(3), patch);
#endif
    } else {
        static_assert(dependent_false<D>, "patchify: no backend for this device in this build");
    }
}

// The backward of patchify: dimage[b, c, y, x] = dout[b, patch of (y, x), column of (c, y, x)].
template <class T, class D>
void unpatchify(TensorView<T, D> dimage /*B,3,H,W written*/, In<T, D> dout /*B,N,3*p*p*/, std::int64_t patch) {
    detail::check_patches("unpatchify", "dout", dout.shape(), "dimage", dimage.shape(), patch);
    if constexpr (is_cpu<D>) {
        cpu::unpatchify<T>(dimage, dout, patch);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::unpatchify<T>(dimage.data(), dout.data(), dimage.size(0), dimage.size(1), dimage.size(2), dimage.size(3),
                            patch);
#endif
    } else {
        static_assert(dependent_false<D>, "unpatchify: no backend for this device in this build");
    }
}

}  // namespace pickscore::ops
