// pickscore/train/device.hpp — the few host/device moves and conversions training needs, for any
// backend: host f32 batches into the model's element type on its device, results back to the
// host, and bf16 gradients added into an f32 accumulator.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../cuda/enabled.hpp"
#include "../nn/workspace.hpp"
#include "../ops/common.hpp"
#include "../ops/elementwise.hpp"
#if PICKSCORE_CUDA_ENABLED
#include "../cuda/context.hpp"
#include "../cuda/convert.hpp"
#include "../cuda/storage.hpp"
#endif

namespace pickscore::train {

// dst (element type T on device D) = src (host), converting element by element on the host first
// (so a bf16 model moves half the bytes).
template <class T, class D, class U>
void upload(TensorView<T, D> dst, In<U, Cpu> src) {
    check_same_shape("upload", "dst", dst.shape(), "src", src.shape());
    if constexpr (is_cpu<D> && std::is_same_v<T, U>) {
        copy<T>(dst, src);
    } else if constexpr (is_cpu<D>) {
        convert<T, U>(dst, src);
    } else if constexpr (std::is_same_v<T, U>) {
        nn::copy_from_host<T, D>(dst, src);
    } else {
        Tensor<T, Cpu> tmp(src.shape());
        convert<T, U>(tmp, src);
        nn::copy_from_host<T, D>(dst, tmp);
    }
}

// dst (host) = src (device D), waiting for the device.
template <class T, class D>
void download(TensorView<T, Cpu> dst, In<T, D> src) {
    check_same_shape("download", "dst", dst.shape(), "src", src.shape());
    if constexpr (is_cpu<D>) {
        copy<T>(dst, src);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::copy<T>(dst, src);
        cuda::current().synchronize();
#endif
    } else {
        static_assert(ops::dependent_false<D>, "download: no backend for this device in this build");
    }
}

// dst = src on device D (same type).
template <class T, class D>
void device_copy(TensorView<T, D> dst, In<T, D> src) {
    check_same_shape("device_copy", "dst", dst.shape(), "src", src.shape());
    if constexpr (is_cpu<D>) {
        copy<T>(dst, src);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::copy<T>(dst, src);
#endif
    } else {
        static_assert(ops::dependent_false<D>, "device_copy: no backend for this device in this build");
    }
}

// dst = To(src) on device D.
template <class To, class From, class D>
void device_convert(TensorView<To, D> dst, In<From, D> src) {
    if constexpr (std::is_same_v<To, From>) {
        device_copy<To, D>(dst, src);
    } else if constexpr (is_cpu<D>) {
        convert<To, From>(dst, src);
#if PICKSCORE_CUDA_ENABLED
    } else if constexpr (is_cuda<D>) {
        cuda::convert<To, const From>(dst, src);
#endif
    } else {
        static_assert(ops::dependent_false<D>, "device_convert: no backend for this device in this build");
    }
}

// acc += float(g), in chunks of at most `chunk` elements through a scratch buffer (so the extra
// memory is bounded); for G = float a plain add_inplace.
template <class G, class D>
void accumulate_f32(TensorView<float, D> acc /*n*/, In<G, D> g /*n*/, std::int64_t chunk = std::int64_t(1) << 22) {
    check_same_shape("accumulate_f32", "acc", acc.shape(), "g", g.shape());
    if constexpr (std::is_same_v<G, float>) {
        ops::add_inplace<float, D>(acc, g);
    } else {
        const std::int64_t n = acc.numel();
        Tensor<float, D> tmp(Shape{std::min(n, chunk)});
        for (std::int64_t i = 0; i < n; i += chunk) {
            const std::int64_t j = std::min(n, i + chunk);
            const auto t = tmp.view().slice(0, j - i);
            device_convert<float, G, D>(t, g.slice(i, j));
            ops::add_inplace<float, D>(acc.slice(i, j), t.cview());
        }
    }
}

}  // namespace pickscore::train
