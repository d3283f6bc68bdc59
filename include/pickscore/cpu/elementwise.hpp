// pickscore/cpu/elementwise.hpp — element-by-element sums and scaling on the CPU.
//
// Every element is computed in acc_t<T> and rounded to T once. Elements are independent, so an
// output may be the same memory as an input.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../core/dtype.hpp"
#include "../core/threads.hpp"

namespace pickscore::cpu {

// Runs fn(begin, end) over [0, n) in pieces of `grain` elements spread over the thread pool.
template <class F>
void parallel_chunks(std::int64_t n, std::int64_t grain, F&& fn) {
    const std::int64_t tasks = (n + grain - 1) / grain;
    parallel_for(tasks, [&](std::int64_t t) { fn(t * grain, std::min(n, (t + 1) * grain)); });
}

// Elements per task for the element-wise loops: large enough that the pool's overhead vanishes.
inline constexpr std::int64_t elementwise_grain = 1 << 16;

// out[i] = a[i] + b[i]
template <class T>
void add(T* out, const T* a, const T* b, std::int64_t n) {
    using Acc = acc_t<T>;
    parallel_chunks(n, elementwise_grain, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) out[i] = cast<T>(cast<Acc>(a[i]) + cast<Acc>(b[i]));
    });
}

// acc[i] += x[i]
template <class T>
void add_inplace(T* acc, const T* x, std::int64_t n) {
    add(acc, acc, x, n);
}

// x[i] *= s
template <class T>
void scale_inplace(T* x, double s, std::int64_t n) {
    using Acc = acc_t<T>;
    const Acc factor = Acc(s);
    parallel_chunks(n, elementwise_grain, [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) x[i] = cast<T>(cast<Acc>(x[i]) * factor);
    });
}

// x[i] = value (rounded to T once)
template <class T>
void fill(T* x, double value, std::int64_t n) {
    const T v = cast<T>(value);
    parallel_chunks(n, elementwise_grain, [&](std::int64_t begin, std::int64_t end) { std::fill(x + begin, x + end, v); });
}

}  // namespace pickscore::cpu
