// pickscore/cpu/patches.hpp — the patch rearrangement behind the ViT patch embedding, on the CPU.
//
// A convolution with kernel p and stride p sees non-overlapping patches, so it is a GEMM over the
// flattened patches. patchify gathers them, unpatchify scatters them back (its adjoint and, as the
// patches do not overlap, also its inverse). Pure data movement: nothing is rounded.
//     out[b, gy*(W/p) + gx, c*p*p + i*p + j] = image[b, c, gy*p + i, gx*p + j]
#pragma once

#include <algorithm>
#include <cstdint>

#include "../core/tensor.hpp"
#include "../core/threads.hpp"

namespace pickscore::cpu {

template <class T>
void patchify(TensorView<T, Cpu> out /*B,N,C*p*p*/, TensorView<const T, Cpu> image /*B,C,H,W*/, std::int64_t p) {
    const std::int64_t C = image.size(1), H = image.size(2), W = image.size(3);
    const std::int64_t gw = W / p, N = (H / p) * gw;
    parallel_for(image.size(0) * N, [&](std::int64_t bn) {  // one patch (one output row) per task
        const std::int64_t b = bn / N, gy = (bn % N) / gw, gx = (bn % N) % gw;
        for (std::int64_t c = 0; c < C; ++c)
            for (std::int64_t i = 0; i < p; ++i) {
                const T* src = image.data() + ((b * C + c) * H + gy * p + i) * W + gx * p;
                T* dst = out.data() + bn * C * p * p + (c * p + i) * p;
                std::copy_n(src, p, dst);  // j = 0 .. p-1
            }
    });
}

template <class T>
void unpatchify(TensorView<T, Cpu> dimage /*B,C,H,W*/, TensorView<const T, Cpu> dout /*B,N,C*p*p*/, std::int64_t p) {
    const std::int64_t C = dimage.size(1), H = dimage.size(2), W = dimage.size(3);
    const std::int64_t gw = W / p, N = (H / p) * gw;
    parallel_for(dimage.size(0) * N, [&](std::int64_t bn) {
        const std::int64_t b = bn / N, gy = (bn % N) / gw, gx = (bn % N) % gw;
        for (std::int64_t c = 0; c < C; ++c)
            for (std::int64_t i = 0; i < p; ++i) {
                const T* src = dout.data() + bn * C * p * p + (c * p + i) * p;
                T* dst = dimage.data() + ((b * C + c) * H + gy * p + i) * W + gx * p;
                std::copy_n(src, p, dst);
            }
    });
}

}  // namespace pickscore::cpu
