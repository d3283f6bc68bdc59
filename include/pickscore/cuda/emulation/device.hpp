// pickscore/cuda/emulation/device.hpp — what CUDA device code sees, for the host emulation:
// the execution-space keywords, threadIdx/blockIdx/blockDim/gridDim, barriers, warp shuffles and
// votes, atomics, and the math intrinsics kernels use. kernels/common.cuh includes it in place
// of the CUDA headers when PICKSCORE_CUDA_EMULATION is defined; the tensor-core and async-copy
// operations are in tensor_core.hpp (used through kernels/ptx.cuh).
//
// Shared memory: kernels declare it with PICKSCORE_SHARED(Type, name) and
// PICKSCORE_DYNAMIC_SHARED(Type, name) (kernels/common.cuh), which the emulator places in the
// block's shared memory, poisons with 0xFF bytes and counts against the limits. A plain
// `__shared__` declaration does not compile in emulation (it could be neither poisoned nor
// counted); the message says what to use instead.
// pickscore-requires: pickscore::cuda_emulation
#pragma once

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <type_traits>

#include "bfloat16.hpp"
#include "executor.hpp"
#include "types.hpp"

// ---- execution-space keywords --------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static_assert(false, "use PICKSCORE_SHARED(Type, name) instead of __shared__ (kernels/common.cuh)");

inline constexpr int warpSize = 32;

// threadIdx and friends read the emulated thread that is running.
#define threadIdx (::pickscore::cuda::emu::detail::runner().thread().tid)
#define blockIdx (::pickscore::cuda::emu::detail::runner().block_idx())
#define blockDim (::pickscore::cuda::emu::detail::runner().block_dim())
#define gridDim (::pickscore::cuda::emu::detail::runner().grid_dim())

namespace pickscore::cuda::emu {

// Storage of PICKSCORE_SHARED(Type, name): one object per block, keyed by the declaration.
inline void* static_shared(const void* key, std::size_t bytes, std::size_t align) {
    return detail::runner().static_shared(key, bytes, align);
}
// The block's dynamic shared memory (the size given at launch).
inline void* dynamic_shared() { return detail::runner().dynamic_shared(); }

namespace detail {

enum class ShflMode { idx, up, down, bfly };

template <ShflMode M, class T>
struct ShflTag {};

// shfl.sync as the PTX ISA defines it: b is the lane, delta or xor mask; c packs the clamp value
// (bits 0-4) and the segment mask (bits 8-12) that CUDA derives from `width`.
template <ShflMode M, class T>
T shfl(unsigned mask, T var, int b, int width, const char* name) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffles move values of at most 8 bytes");
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        kernel_fail(::pickscore::detail::concat(name, ": width ", width, " is not a power of two in [1, 32]"));
    struct In {
        T v;
        int b, c;
    };
    const int c = M == ShflMode::up ? ((32 - width) << 8) : (((32 - width) << 8) | 0x1f);
    const In in{var, b, c};
    return collective<ShflTag<M, T>, In, T>(mask, name, in, [](unsigned m, const auto& ins, auto& outs) {
        for (int lane = 0; lane < 32; ++lane) {
            if (!((m >> lane) & 1u)) continue;
            const In& me = *ins[std::size_t(lane)];
            const int bval = me.b & 0x1f, cval = me.c & 0x1f, segmask = (me.c >> 8) & 0x1f;
            const int max_lane = (lane & segmask) | (cval & ~segmask);
            const int min_lane = lane & segmask;
            int j = lane;
            bool pval = false;
            switch (M) {
                case ShflMode::up: j = lane - bval; pval = j >= max_lane; break;
                case ShflMode::down: j = lane + bval; pval = j <= max_lane; break;
                case ShflMode::bfly: j = lane ^ bval; pval = j <= max_lane; break;
                case ShflMode::idx: j = min_lane | (bval & ~segmask); pval = j <= max_lane; break;
            }
            if (!pval) j = lane;
            if ((m >> j) & 1u) {
                *outs[std::size_t(lane)] = ins[std::size_t(j)]->v;
            } else {  // reading a lane outside the mask is undefined: make it visible
                std::memset(static_cast<void*>(outs[std::size_t(lane)]), 0xFF, sizeof(T));
            }
        }
    });
}

struct VoteTag {};
struct SyncWarpTag {};
template <class Op, class T>
struct ReduceTag {};

template <class T, class Op>
T warp_reduce(unsigned mask, T value, const char* name, Op op) {
    return collective<ReduceTag<Op, T>, T, T>(mask, name, value, [op](unsigned m, const auto& ins, auto& outs) {
        bool first = true;
        T acc{};
        for (unsigned l = 0; l < 32; ++l)
            if ((m >> l) & 1u) {
                acc = first ? *ins[l] : op(acc, *ins[l]);
                first = false;
            }
        for (unsigned l = 0; l < 32; ++l)
            if ((m >> l) & 1u) *outs[l] = acc;
    });
}

}  // namespace detail
}  // namespace pickscore::cuda::emu

// ---- barriers -------------------------------------------------------------------------------------
inline void __syncthreads() { ::pickscore::cuda::emu::detail::runner().barrier(0); }
inline int __syncthreads_count(int predicate) { return ::pickscore::cuda::emu::detail::runner().barrier(predicate != 0); }
inline int __syncthreads_and(int predicate) {
    auto& r = ::pickscore::cuda::emu::detail::runner();
    return r.barrier(predicate != 0) == int(r.nthreads());  // exited threads count as false on hardware too
}
inline int __syncthreads_or(int predicate) { return ::pickscore::cuda::emu::detail::runner().barrier(predicate != 0) > 0; }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
    using namespace ::pickscore::cuda::emu::detail;
    collective<SyncWarpTag, char, char>(mask, "__syncwarp", char(0), [](unsigned, const auto&, auto&) {});
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap() { ::pickscore::cuda::emu::detail::kernel_fail("__trap() called"); }
inline void __nanosleep(unsigned) {}
inline long long clock64() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// ---- warp shuffles and votes ----------------------------------------------------------------------
template <class T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
    using namespace ::pickscore::cuda::emu::detail;
    return shfl<ShflMode::idx>(mask, var, src_lane, width, "__shfl_sync");
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    using namespace ::pickscore::cuda::emu::detail;
    return shfl<ShflMode::up>(mask, var, int(delta), width, "__shfl_up_sync");
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
    using namespace ::pickscore::cuda::emu::detail;
    return shfl<ShflMode::down>(mask, var, int(delta), width, "__shfl_down_sync");
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
    using namespace ::pickscore::cuda::emu::detail;
    return shfl<ShflMode::bfly>(mask, var, lane_mask, width, "__shfl_xor_sync");
}

inline unsigned __ballot_sync(unsigned mask, int predicate) {
    using namespace ::pickscore::cuda::emu::detail;
    return collective<VoteTag, int, unsigned>(mask, "__ballot_sync", predicate, [](unsigned m, const auto& ins, auto& outs) {
        unsigned bits = 0;
        for (unsigned l = 0; l < 32; ++l)
            if (((m >> l) & 1u) && *ins[l] != 0) bits |= 1u << l;
        for (unsigned l = 0; l < 32; ++l)
            if ((m >> l) & 1u) *outs[l] = bits;
    });
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) == mask; }
// The lanes of the calling warp that have not exited (the emulator does not track divergence).
inline unsigned __activemask() { return ::pickscore::cuda::emu::detail::runner().warp_alive_mask(); }

inline unsigned __reduce_add_sync(unsigned mask, unsigned v) {
    return ::pickscore::cuda::emu::detail::warp_reduce(mask, v, "__reduce_add_sync", [](unsigned a, unsigned b) { return a + b; });
}
inline int __reduce_add_sync(unsigned mask, int v) {
    return int(__reduce_add_sync(mask, unsigned(v)));
}
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) {
    return ::pickscore::cuda::emu::detail::warp_reduce(mask, v, "__reduce_min_sync", [](unsigned a, unsigned b) { return a < b ? a : b; });
}
inline int __reduce_min_sync(unsigned mask, int v) {
    return ::pickscore::cuda::emu::detail::warp_reduce(mask, v, "__reduce_min_sync", [](int a, int b) { return a < b ? a : b; });
}
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) {
    return ::pickscore::cuda::emu::detail::warp_reduce(mask, v, "__reduce_max_sync", [](unsigned a, unsigned b) { return a < b ? b : a; });
}
inline int __reduce_max_sync(unsigned mask, int v) {
    return ::pickscore::cuda::emu::detail::warp_reduce(mask, v, "__reduce_max_sync", [](int a, int b) { return a < b ? b : a; });
}
inline unsigned __reduce_and_sync(unsigned mask, unsigned v) {
    return ::pickscore::cuda::emu::detail::warp_reduce(mask, v, "__reduce_and_sync", [](unsigned a, unsigned b) { return a & b; });
}
inline unsigned __reduce_or_sync(unsigned mask, unsigned v) {
    return ::pickscore::cuda::emu::detail::warp_reduce(mask, v, "__reduce_or_sync", [](unsigned a, unsigned b) { return a | b; });
}
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v) {
    return ::pickscore::cuda::emu::detail::warp_reduce(mask, v, "__reduce_xor_sync", [](unsigned a, unsigned b) { return a ^ b; });
}

// ---- atomics (real atomics: blocks run in parallel) -----------------------------------------------
#define PICKSCORE_EMU_ATOMIC_RMW(name, T, expr)              \
    inline T name(T* address, T val) {                       \
        std::atomic_ref<T> a(*address);                      \
        return expr;                                         \
    }
PICKSCORE_EMU_ATOMIC_RMW(atomicAdd, int, a.fetch_add(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicAdd, unsigned int, a.fetch_add(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicAdd, unsigned long long, a.fetch_add(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicAdd, float, a.fetch_add(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicAdd, double, a.fetch_add(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicSub, int, a.fetch_sub(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicSub, unsigned int, a.fetch_sub(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicExch, int, a.exchange(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicExch, unsigned int, a.exchange(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicExch, unsigned long long, a.exchange(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicExch, float, a.exchange(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicAnd, int, a.fetch_and(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicAnd, unsigned int, a.fetch_and(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicAnd, unsigned long long, a.fetch_and(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicOr, int, a.fetch_or(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicOr, unsigned int, a.fetch_or(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicOr, unsigned long long, a.fetch_or(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicXor, int, a.fetch_xor(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicXor, unsigned int, a.fetch_xor(val))
PICKSCORE_EMU_ATOMIC_RMW(atomicXor, unsigned long long, a.fetch_xor(val))
#undef PICKSCORE_EMU_ATOMIC_RMW

namespace pickscore::cuda::emu::detail {
// Read-modify-write through compare-and-swap: returns the old value.
template <class T, class F>
T atomic_update(T* address, F f) {
    std::atomic_ref<T> a(*address);
    T old = a.load();
    while (!a.compare_exchange_weak(old, f(old))) {
    }
    return old;
}
}  // namespace pickscore::cuda::emu::detail

#define PICKSCORE_EMU_ATOMIC_MINMAX(T)                                                                       \
    inline T atomicMin(T* address, T val) {                                                                  \
        return ::pickscore::cuda::emu::detail::atomic_update(address, [val](T o) { return val < o ? val : o; }); \
    }                                                                                                        \
    inline T atomicMax(T* address, T val) {                                                                  \
        return ::pickscore::cuda::emu::detail::atomic_update(address, [val](T o) { return o < val ? val : o; }); \
    }
PICKSCORE_EMU_ATOMIC_MINMAX(int)
PICKSCORE_EMU_ATOMIC_MINMAX(unsigned int)
PICKSCORE_EMU_ATOMIC_MINMAX(long long)
PICKSCORE_EMU_ATOMIC_MINMAX(unsigned long long)
#undef PICKSCORE_EMU_ATOMIC_MINMAX

#define PICKSCORE_EMU_ATOMIC_CAS(T)                              \
    inline T atomicCAS(T* address, T compare, T val) {           \
        std::atomic_ref<T> a(*address);                          \
        a.compare_exchange_strong(compare, val);                 \
        return compare;                                          \
    }
PICKSCORE_EMU_ATOMIC_CAS(int)
PICKSCORE_EMU_ATOMIC_CAS(unsigned int)
PICKSCORE_EMU_ATOMIC_CAS(unsigned long long)
PICKSCORE_EMU_ATOMIC_CAS(unsigned short)
#undef PICKSCORE_EMU_ATOMIC_CAS

inline unsigned int atomicInc(unsigned int* address, unsigned int val) {
    return ::pickscore::cuda::emu::detail::atomic_update(address, [val](unsigned o) { return o >= val ? 0u : o + 1u; });
}
inline unsigned int atomicDec(unsigned int* address, unsigned int val) {
    return ::pickscore::cuda::emu::detail::atomic_update(
        address, [val](unsigned o) { return (o == 0u || o > val) ? val : o - 1u; });
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* address, __nv_bfloat16 val) {
    const unsigned short old = ::pickscore::cuda::emu::detail::atomic_update(&address->__x, [val](unsigned short o) {
        return __bfloat16_as_ushort(__nv_bfloat16(__bfloat162float(__ushort_as_bfloat16(o)) + float(val)));
    });
    return __ushort_as_bfloat16(old);
}

// ---- loads and stores with cache hints: plain accesses here -----------------------------------------
template <class T>
T __ldg(const T* p) {
    return *p;
}
template <class T>
T __ldcg(const T* p) {
    return *p;
}
template <class T>
T __ldcs(const T* p) {
    return *p;
}
template <class T>
T __ldlu(const T* p) {
    return *p;
}
template <class T>
void __stcg(T* p, T v) {
    *p = v;
}
template <class T>
void __stcs(T* p, T v) {
    *p = v;
}
template <class T>
void __stwt(T* p, T v) {
    *p = v;
}

// ---- math intrinsics: the fast approximations are computed exactly here -----------------------------
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) {
    *s = std::sin(x);
    *c = std::cos(x);
}
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / std::sqrt(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / std::cbrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float normcdff(float x) { return 0.5f * std::erfc(-x * 0.70710678118654752f); }
inline float exp10f(float x) { return std::pow(10.0f, x); }

inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline int __float2int_rn(float x) { return int(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return int(std::trunc(x)); }
inline int __float2int_rd(float x) { return int(std::floor(x)); }
inline int __float2int_ru(float x) { return int(std::ceil(x)); }
inline unsigned __float2uint_rn(float x) { return unsigned(std::nearbyint(x)); }
inline float __int2float_rn(int x) { return float(x); }
inline float __uint2float_rn(unsigned x) { return float(x); }

inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(unsigned(x)); }
inline int __clzll(long long x) { return std::countl_zero((unsigned long long)x); }
inline int __ffs(int x) { return x == 0 ? 0 : std::countr_zero(unsigned(x)) + 1; }
inline int __ffsll(long long x) { return x == 0 ? 0 : std::countr_zero((unsigned long long)x) + 1; }
inline unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
    const unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return unsigned((v << (shift & 31u)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
    const unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return unsigned(v >> (shift & 31u));
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned(((unsigned long long)a * b) >> 32); }

// CUDA's global min/max overloads for device code.
#define PICKSCORE_EMU_MINMAX(T)                        \
    inline T min(T a, T b) { return b < a ? b : a; } \
    inline T max(T a, T b) { return a < b ? b : a; }
PICKSCORE_EMU_MINMAX(int)
PICKSCORE_EMU_MINMAX(unsigned int)
PICKSCORE_EMU_MINMAX(long)
PICKSCORE_EMU_MINMAX(unsigned long)
PICKSCORE_EMU_MINMAX(long long)
PICKSCORE_EMU_MINMAX(unsigned long long)
#undef PICKSCORE_EMU_MINMAX
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }
inline double min(double a, double b) { return std::fmin(a, b); }
inline double max(double a, double b) { return std::fmax(a, b); }
inline unsigned int min(int a, unsigned int b) { return min(unsigned(a), b); }
inline unsigned int min(unsigned int a, int b) { return min(a, unsigned(b)); }
inline unsigned int max(int a, unsigned int b) { return max(unsigned(a), b); }
inline unsigned int max(unsigned int a, int b) { return max(a, unsigned(b)); }

#include "tensor_core.hpp"
