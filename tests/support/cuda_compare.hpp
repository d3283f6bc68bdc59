// What the tests of the CUDA backend share (on the host emulation, and as GPU twins on the
// hardware): random host inputs, results brought back as doubles, and outputs poisoned with NaN
// before a run so that an element the kernels never wrote shows.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include <pickscore/core/dtype.hpp>
#include <pickscore/core/random.hpp>
#include <pickscore/core/tensor.hpp>
#include <pickscore/cuda/runtime.hpp>
#include <pickscore/cuda/storage.hpp>

namespace pickscore::test {

// "f32" or "bf16", for the messages of templated cases.
template <class T>
const char* type_name() {
    return std::is_same_v<T, float> ? "f32" : "bf16";
}

// A host tensor of T whose values are normal(mean, stddev) rounded to T.
template <class T>
Tensor<T, Cpu> random_host(Shape shape, Rng& rng, double stddev = 1.0, double mean = 0.0) {
    Tensor<T, Cpu> t(shape);
    for (auto& v : t) v = cast<T>(mean + stddev * rng.normal());
    return t;
}

// The elements of a host view (T may be const), widened to double.
template <class T>
std::vector<double> as_double(const TensorView<T, Cpu>& t) {
    std::vector<double> v(std::size_t(t.numel()));
    for (std::int64_t i = 0; i < t.numel(); ++i) v[std::size_t(i)] = cast<double>(t[i]);
    return v;
}

// The elements of a device view, copied to the host (waiting for the stream) and widened.
template <class T>
std::vector<double> download_double(const TensorView<T, Cuda>& t) {
    return as_double(cuda::to_host(t.cview()).cview());
}

// A device tensor filled with 0xFF bytes: NaN in f32 and bf16.
template <class T>
Tensor<T, Cuda> poisoned(Shape shape) {
    Tensor<T, Cuda> t(shape);
    if (t.numel() > 0)
        cuda::check(cudaMemsetAsync(static_cast<void*>(t.data()), 0xFF, t.bytes(), cuda::current().stream()),
                    "cudaMemsetAsync");
    return t;
}

}  // namespace pickscore::test
