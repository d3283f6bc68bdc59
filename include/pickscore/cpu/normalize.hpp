// pickscore/cpu/normalize.hpp — row-wise L2 normalisation on the CPU (reference loops).
//
// Forward:  norm[r] = ||in[r]||,  out[r] = in[r] / norm[r]           (a zero row gives zeros)
// Backward: din[r] = (dout[r] - out[r] · <out[r], dout[r]>) / norm[r]  (zero where norm[r] == 0)
// Sums of squares and dot products are formed in acc_t<T>.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/dtype.hpp"
#include "../core/tensor.hpp"
#include "../core/threads.hpp"

namespace pickscore::cpu {

template <class T>
void l2_normalize_forward(TensorView<T, Cpu> out /*R,C*/, TensorView<acc_t<T>, Cpu> norm /*R, may be empty*/,
                          TensorView<const T, Cpu> in /*R,C*/) {
    using Acc = acc_t<T>;
    const std::int64_t C = in.shape().last();
    parallel_for(in.shape().rows(), [&](std::int64_t r) {
        const T* x = in.data() + r * C;
        T* y = out.data() + r * C;
        Acc ss = 0;
        for (std::int64_t c = 0; c < C; ++c) ss += cast<Acc>(x[c]) * cast<Acc>(x[c]);
        const Acc n = std::sqrt(ss);
        for (std::int64_t c = 0; c < C; ++c) y[c] = n > 0 ? cast<T>(cast<Acc>(x[c]) / n) : cast<T>(Acc(0));
        if (!norm.empty()) norm[r] = n;
    });
}

template <class T>
void l2_normalize_backward(TensorView<T, Cpu> din /*R,C*/, TensorView<const T, Cpu> dout /*R,C*/,
                           TensorView<const T, Cpu> out /*R,C*/, TensorView<const acc_t<T>, Cpu> norm /*R*/) {
    using Acc = acc_t<T>;
    const std::int64_t C = out.shape().last();
    parallel_for(out.shape().rows(), [&](std::int64_t r) {
        const T* y = out.data() + r * C;
        const T* g = dout.data() + r * C;
        T* dx = din.data() + r * C;
        const Acc n = norm[r];
        Acc yg = 0;
        for (std::int64_t c = 0; c < C; ++c) yg += cast<Acc>(y[c]) * cast<Acc>(g[c]);
        for (std::int64_t c = 0; c < C; ++c)
            dx[c] = n > 0 ? cast<T>((cast<Acc>(g[c]) - cast<Acc>(y[c]) * yg) / n) : cast<T>(Acc(0));
    });
}

}  // namespace pickscore::cpu
