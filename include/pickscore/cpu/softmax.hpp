// pickscore/cpu/softmax.hpp — softmax over the last dimension on the CPU, forward and backward.
//
// Rows of N elements. Forward subtracts the row maximum before exponentiating (no overflow for
// any finite input) and rounds each output to T once. Each row is read completely before it is
// written, so out may be the same memory as in.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../core/dtype.hpp"
#include "../core/threads.hpp"
#include "elementwise.hpp"

namespace pickscore::cpu {

// Rows per task: enough work per task for short rows, enough tasks for few long rows.
inline std::int64_t softmax_rows_per_task(std::int64_t N) { return std::max<std::int64_t>(1, 4096 / (N + 1)); }

// out[r, j] = exp(in[r, j] − max_k in[r, k]) / Σ_k exp(in[r, k] − max_k in[r, k])
template <class T>
void softmax_forward(T* out, const T* in, std::int64_t R, std::int64_t N) {
    using Acc = acc_t<T>;
    parallel_chunks(R, softmax_rows_per_task(N), [&](std::int64_t r0, std::int64_t r1) {
        std::vector<Acc> e(static_cast<std::size_t>(N));
        for (std::int64_t r = r0; r < r1; ++r) {
            const T* x = in + r * N;
            T* y = out + r * N;
            Acc m = -std::numeric_limits<Acc>::infinity();
            for (std::int64_t j = 0; j < N; ++j) m = std::max(m, cast<Acc>(x[j]));
            Acc sum = 0;
            for (std::int64_t j = 0; j < N; ++j) {
                e[std::size_t(j)] = std::exp(cast<Acc>(x[j]) - m);
                sum += e[std::size_t(j)];
            }
            for (std::int64_t j = 0; j < N; ++j) y[j] = cast<T>(e[std::size_t(j)] / sum);
        }
    });
}

// din[r, j] = out[r, j] · (dout[r, j] − Σ_k dout[r, k] · out[r, k])   (written)
template <class T>
void softmax_backward(T* din, const T* dout, const T* out, std::int64_t R, std::int64_t N) {
    using Acc = acc_t<T>;
    parallel_chunks(R, softmax_rows_per_task(N), [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            const T* g = dout + r * N;
            const T* y = out + r * N;
            T* dx = din + r * N;
            Acc dot = 0;
            for (std::int64_t j = 0; j < N; ++j) dot += cast<Acc>(g[j]) * cast<Acc>(y[j]);
            for (std::int64_t j = 0; j < N; ++j) dx[j] = cast<T>(cast<Acc>(y[j]) * (cast<Acc>(g[j]) - dot));
        }
    });
}

}  // namespace pickscore::cpu
