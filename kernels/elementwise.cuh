// kernels/elementwise.cuh — element-by-element kernels (add, scale, fill, f32 <-> bf16 conversion)
// and the vector-access helpers the row kernels share (kernels::vec): loads and stores of up to 16
// bytes per access converted to/from f32, and warp-shuffle reductions.
//
// Element-wise kernels run a grid-stride loop over vectors of V elements (16 bytes of the widest
// element type) when every pointer is 16-byte aligned, and then a scalar tail for the last n % V
// elements; otherwise (a view at an odd offset) V = 1.
#pragma once

#include <cstdint>
#include <cstring>
#include <pickscore/cuda/convert.hpp>
#include <pickscore/cuda/elementwise.hpp>
#include <type_traits>

#include "common.cuh"


namespace pickscore::cuda::kernels::vec {

// ---- vector loads and stores ------------------------------------------------------------------------

// `Words` 32-bit words (1, 2 or 4) as one access; p aligned to 4·Words bytes.
template <int Words>
__device__ __forceinline__ void load_words(unsigned (&w)[Words], const void* p) {
    static_assert(Words == 1 || Words == 2 || Words == 4, "load_words: 4, 8 or 16 bytes");
#if defined(PICKSCORE_CUDA_EMULATION)
    std::memcpy(w, p, sizeof(w));
#else
    if constexpr (Words == 4) {
        const uint4 r = *static_cast<const uint4*>(p);
        w[0] = r.x, w[1] = r.y, w[2] = r.z, w[3] = r.w;
    } else if constexpr (Words == 2) {
        const uint2 r = *static_cast<const uint2*>(p);
        w[0] = r.x, w[1] = r.y;
    } else {
        w[0] = *static_cast<const unsigned*>(p);
    }
#endif
}

template <int Words>
__device__ __forceinline__ void store_words(void* p, const unsigned (&w)[Words]) {
    static_assert(Words == 1 || Words == 2 || Words == 4, "store_words: 4, 8 or 16 bytes");
#if defined(PICKSCORE_CUDA_EMULATION)
    std::memcpy(p, w, sizeof(w));
#else
    if constexpr (Words == 4) {
        *static_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
    } else if constexpr (Words == 2) {
        *static_cast<uint2*>(p) = make_uint2(w[0], w[1]);
    } else {
        *static_cast<unsigned*>(p) = w[0];
    }
#endif
}

__device__ __forceinline__ unsigned bf16_bits(float x) {
    return unsigned(__bfloat16_as_ushort(__float2bfloat16(x)));  // round to nearest even
}

// out[i] = f32(p[i]) for i < V. With V > 1, p is aligned to min(16, V·sizeof(T)) bytes.
template <int V, class T>
__device__ __forceinline__ void load(float (&out)[V], const T* p) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>, "vec::load: f32 or bf16");
    constexpr int kBytes = V * int(sizeof(T));
    if constexpr (V == 1 || kBytes % 4 != 0) {
        PICKSCORE_UNROLL
        for (int i = 0; i < V; ++i) out[i] = to_float(p[i]);
    } else {
        constexpr int kWords = kBytes / 4 < 4 ? kBytes / 4 : 4;  // words per access
        constexpr int kPer = kWords * 4 / int(sizeof(T));        // elements per access
        PICKSCORE_UNROLL
        for (int c = 0; c < V / kPer; ++c) {
            unsigned w[kWords];
            load_words<kWords>(w, p + c * kPer);
            PICKSCORE_UNROLL
            for (int i = 0; i < kWords; ++i) {
                if constexpr (std::is_same_v<T, float>) {
                    out[c * kPer + i] = __uint_as_float(w[i]);
                } else {  // two bf16 per word, the lower-indexed in the low half
                    out[c * kPer + 2 * i] = __uint_as_float(w[i] << 16);
                    out[c * kPer + 2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
                }
            }
        }
    }
}

// p[i] = T(in[i]) for i < V (rounded to nearest even), alignment as for load.
template <int V, class T>
__device__ __forceinline__ void store(T* p, const float (&in)[V]) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>, "vec::store: f32 or bf16");
    constexpr int kBytes = V * int(sizeof(T));
    if constexpr (V == 1 || kBytes % 4 != 0) {
        PICKSCORE_UNROLL
        for (int i = 0; i < V; ++i) p[i] = from_float<T>(in[i]);
    } else {
        constexpr int kWords = kBytes / 4 < 4 ? kBytes / 4 : 4;
        constexpr int kPer = kWords * 4 / int(sizeof(T));
        PICKSCORE_UNROLL
        for (int c = 0; c < V / kPer; ++c) {
            unsigned w[kWords];
            PICKSCORE_UNROLL
            for (int i = 0; i < kWords; ++i) {
                if constexpr (std::is_same_v<T, float>) {
                    w[i] = __float_as_uint(in[c * kPer + i]);
                } else {
                    w[i] = bf16_bits(in[c * kPer + 2 * i]) | (bf16_bits(in[c * kPer + 2 * i + 1]) << 16);
                }
            }
            store_words<kWords>(p + c * kPer, w);
        }
    }
}

// x as it reads after a round trip through T (identity for f32).
template <class T>
__device__ __forceinline__ float round_to(float x) {
    if constexpr (std::is_same_v<T, float>) {
        return x;
    } else {
        return to_float(from_float<T>(x));
    }
}

// ---- warp reductions: xor butterflies, so every lane ends with the same bits --------------------------

__device__ __forceinline__ float warp_sum(float v) {
    PICKSCORE_UNROLL
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum(double v) {
    PICKSCORE_UNROLL
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    PICKSCORE_UNROLL
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// ---- host side: alignment and grid sizes ------------------------------------------------------------

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Blocks of `threads` for a grid-stride loop over `units` work items: enough to fill an H100
// several times over, never zero.
inline unsigned grid_for(std::int64_t units, unsigned threads = 256) {
    const std::int64_t blocks = (units + threads - 1) / threads;
    return unsigned(blocks < 1 ? 1 : (blocks > 4096 ? 4096 : blocks));
}

// ---- row kernels (LayerNorm, softmax): one warp per row ------------------------------------------------
//
// A row of C elements is split into C / V vectors of V elements; lane l owns vectors l, l + 32,
// l + 64, ... A kernel instantiated with N > 0 keeps its lane's N vectors in registers (N·V floats),
// so the row is read from memory once; N = 0 re-reads the row from memory (the cache) per pass.

// Warps (rows) per block of the row kernels.
inline constexpr int kRowWarps = 4;

}  // namespace pickscore::cuda::kernels::vec

namespace pickscore::cuda::detail {

// Blocks for R rows, one warp each.
inline unsigned row_blocks(std::int64_t R) {
    return unsigned((R + kernels::vec::kRowWarps - 1) / kernels::vec::kRowWarps);
}

// C as the kernels' int, or an Error naming the op.
inline int row_length(const char* op, std::int64_t C) {
    require(C >= 1 && C <= std::int64_t(1) << 30, op, ": rows of ", C, " elements (1 to 2^30 supported on CUDA)");
    return int(C);
}

// Calls f.template operator()<V, N>() for a row kernel over rows of C elements of T: V = 16 bytes
// of T when C is a multiple of it and `aligned` (every row pointer 16-byte aligned), else 1; N the
// smaller of two register-cache sizes (16 or 64 floats per lane) that holds the lane's share of a
// row, or 0 when neither does.
template <class T, class F>
void row_dispatch(std::int64_t C, bool aligned, F&& f) {
    constexpr int kVec = int(16 / sizeof(T));
    auto with_width = [&]<int V>() {
        constexpr int kSmall = 16 / V;
        constexpr int kBig = 64 / V;
        const std::int64_t per_lane = (C / V + 31) / 32;
        if (per_lane <= kSmall)
            f.template operator()<V, kSmall>();
        else if (per_lane <= kBig)
            f.template operator()<V, kBig>();
        else
            f.template operator()<V, 0>();
    };
    if (aligned && C % kVec == 0)
        with_width.template operator()<kVec>();
    else
        with_width.template operator()<1>();
}

}  // namespace pickscore::cuda::detail

namespace pickscore::cuda::kernels {

// Grid-stride loops: over the vectors [0, n / V), then the scalar tail [n / V · V, n).
#define PICKSCORE_VEC_LOOP(i, count)                                                        \
    for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (count); \
         i += std::int64_t(gridDim.x) * blockDim.x)

// out = a + b
template <class T, int V>
__global__ void add_kernel(T* out, const T* a, const T* b, std::int64_t n) {
    const std::int64_t nv = n / V;
    PICKSCORE_VEC_LOOP(i, nv) {
        float x[V], y[V];
        vec::load<V>(x, a + i * V);
        vec::load<V>(y, b + i * V);
        PICKSCORE_UNROLL
        for (int k = 0; k < V; ++k) x[k] += y[k];
        vec::store<V>(out + i * V, x);
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) {
        const std::int64_t j = nv * V + i;
        out[j] = from_float<T>(to_float(a[j]) + to_float(b[j]));
    }
}

// x *= s
template <class T, int V>
__global__ void scale_kernel(T* x, float s, std::int64_t n) {
    const std::int64_t nv = n / V;
    PICKSCORE_VEC_LOOP(i, nv) {
        float v[V];
        vec::load<V>(v, x + i * V);
        PICKSCORE_UNROLL
        for (int k = 0; k < V; ++k) v[k] *= s;
        vec::store<V>(x + i * V, v);
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) {
        const std::int64_t j = nv * V + i;
        x[j] = from_float<T>(to_float(x[j]) * s);
    }
}

// x = value (already rounded to T on the host; `word` is its bit pattern repeated over 32 bits,
// so the stores copy the exact bits, NaN payloads included)
template <class T, int V>
__global__ void fill_kernel(T* x, T value, unsigned word, std::int64_t n) {
    static_assert(V == 1 || V * sizeof(T) == 16, "fill_kernel: scalar or 16-byte vectors");
    (void)word;
    const std::int64_t nv = V > 1 ? n / V : 0;  // V == 1: the scalar loop below does everything
    if constexpr (V > 1) {
        const unsigned w[4] = {word, word, word, word};
        PICKSCORE_VEC_LOOP(i, nv) { vec::store_words<4>(x + i * V, w); }
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) { x[nv * V + i] = value; }
}

// dst = To(src)
template <class To, class From, int V>
__global__ void convert_kernel(To* dst, const From* src, std::int64_t n) {
    const std::int64_t nv = n / V;
    PICKSCORE_VEC_LOOP(i, nv) {
        float v[V];
        vec::load<V>(v, src + i * V);
        vec::store<V>(dst + i * V, v);
    }
    PICKSCORE_VEC_LOOP(i, n - nv * V) {
        const std::int64_t j = nv * V + i;
        dst[j] = from_float<To>(to_float(src[j]));
    }
}

}  // namespace pickscore::cuda::kernels

namespace pickscore::cuda {

namespace detail {
// Elements per 16-byte access of T.
template <class T>
inline constexpr int vec_width = int(16 / sizeof(T));
}  // namespace detail

template <class T>
void add(T* out, const T* a, const T* b, std::int64_t n) {
    if (n <= 0) return;
    using DT = device_t<T>;
    constexpr int V = detail::vec_width<T>;
    if (kernels::vec::aligned16(out) && kernels::vec::aligned16(a) && kernels::vec::aligned16(b))
        launch(kernels::add_kernel<DT, V>, dim3(kernels::vec::grid_for(n / V + 1)), dim3(256), 0, device_ptr(out),
               device_ptr(a), device_ptr(b), n);
    else
        launch(kernels::add_kernel<DT, 1>, dim3(kernels::vec::grid_for(n)), dim3(256), 0, device_ptr(out),
               device_ptr(a), device_ptr(b), n);
}

template <class T>
void add_inplace(T* acc, const T* x, std::int64_t n) {
    add<T>(acc, acc, x, n);
}

template <class T>
void scale_inplace(T* x, double s, std::int64_t n) {
    if (n <= 0) return;
    using DT = device_t<T>;
    constexpr int V = detail::vec_width<T>;
    if (kernels::vec::aligned16(x))
        launch(kernels::scale_kernel<DT, V>, dim3(kernels::vec::grid_for(n / V + 1)), dim3(256), 0, device_ptr(x),
               float(s), n);
    else
        launch(kernels::scale_kernel<DT, 1>, dim3(kernels::vec::grid_for(n)), dim3(256), 0, device_ptr(x), float(s), n);
}

template <class T>
void fill(T* x, double value, std::int64_t n) {
    if (n <= 0) return;
    using DT = device_t<T>;
    constexpr int V = detail::vec_width<T>;
    const T v = cast<T>(value);  // rounded on the host, as cpu::fill does
    static_assert(sizeof(DT) == sizeof(T) && (sizeof(T) == 2 || sizeof(T) == 4));
    DT dv;
    std::memcpy(static_cast<void*>(&dv), &v, sizeof(T));
    unsigned word = 0;
    if constexpr (sizeof(T) == 4) {
        std::memcpy(&word, &v, 4);
    } else {
        std::uint16_t half = 0;
        std::memcpy(&half, &v, 2);
        word = unsigned(half) | (unsigned(half) << 16);
    }
    if (kernels::vec::aligned16(x))
        launch(kernels::fill_kernel<DT, V>, dim3(kernels::vec::grid_for(n / V + 1)), dim3(256), 0, device_ptr(x), dv,
               word, n);
    else
        launch(kernels::fill_kernel<DT, 1>, dim3(kernels::vec::grid_for(n)), dim3(256), 0, device_ptr(x), dv, word, n);
}

template <class To, class From>
void convert(To* dst, const From* src, std::int64_t n) {
    static_assert(!std::is_same_v<To, From>, "cuda::convert(pointers): use a copy for the same type");
    if (n <= 0) return;
    constexpr int V = 8;  // 16 bytes of bf16, 32 of f32
    if (kernels::vec::aligned16(dst) && kernels::vec::aligned16(src))
        launch(kernels::convert_kernel<device_t<To>, device_t<From>, V>, dim3(kernels::vec::grid_for(n / V + 1)),
               dim3(256), 0, device_ptr(dst), device_ptr(src), n);
    else
        launch(kernels::convert_kernel<device_t<To>, device_t<From>, 1>, dim3(kernels::vec::grid_for(n)), dim3(256), 0,
               device_ptr(dst), device_ptr(src), n);
}

#define PICKSCORE_ELEMENTWISE_INSTANTIATE(T)                    \
    template void add<T>(T*, const T*, const T*, std::int64_t); \
    template void add_inplace<T>(T*, const T*, std::int64_t);   \
    template void scale_inplace<T>(T*, double, std::int64_t);   \
    template void fill<T>(T*, double, std::int64_t);
PICKSCORE_ELEMENTWISE_INSTANTIATE(float)
PICKSCORE_ELEMENTWISE_INSTANTIATE(bf16)
#undef PICKSCORE_ELEMENTWISE_INSTANTIATE

template void convert<bf16, float>(bf16*, const float*, std::int64_t);
template void convert<float, bf16>(float*, const bf16*, std::int64_t);

}  // namespace pickscore::cuda
