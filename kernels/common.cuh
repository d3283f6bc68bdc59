// kernels/common.cuh — the prelude of every kernel file: the device headers (CUDA's under nvcc,
// the host emulation's with PICKSCORE_CUDA_EMULATION), shared-memory declarations that work in
// both, the launch helper, and the element-type mapping between pickscore and CUDA.
//
// Writing a kernel (details in kernels/README.md):
//   template <class T>
//   __global__ void scale_kernel(T* y, const T* x, float s, std::int64_t n) {
//       PICKSCORE_SHARED(float[256], partial);          // static shared memory (not __shared__)
//       PICKSCORE_DYNAMIC_SHARED(float, tile);           // dynamic shared memory (size at launch)
//       const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
//       if (i < n) y[i] = from_float<T>(s * to_float(x[i]));
//   }
//   cuda::launch(scale_kernel<float>, dim3(blocks), dim3(256), /*dynamic shared bytes*/ 0, y, x, s, n);
//
// launch() queues the kernel on the current context's stream (<<<>>> under nvcc, the emulator
// otherwise) and checks the launch; kernels above 48 KiB of dynamic shared memory must first
// call set_max_dynamic_shared(kernel, bytes), as on the hardware.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>

#if defined(PICKSCORE_CUDA_EMULATION)
#include <pickscore/cuda/emulation/device.hpp>
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <pickscore/core/dtype.hpp>
#include <pickscore/core/error.hpp>
#include <pickscore/cuda/context.hpp>
#include <pickscore/cuda/runtime.hpp>

// Functions callable from both host and device code.
#define PICKSCORE_HOST_DEVICE __host__ __device__

// PICKSCORE_SHARED(Type, name): a block-wide shared variable of type Type (an array type is
// fine: PICKSCORE_SHARED(float[4][64], tile)), 16-byte aligned. Use it instead of __shared__:
// the emulator places it in the block's shared memory, poisons it, and checks the limits.
// PICKSCORE_DYNAMIC_SHARED(T, name): T* name = the block's dynamic shared memory (16-byte aligned).
// Put a type containing a comma behind an alias first.
#if defined(PICKSCORE_CUDA_EMULATION)
#define PICKSCORE_SHARED(Type, name)                                                                   \
    static constexpr char pickscore_shared_key_##name = 0;                                             \
    std::type_identity_t<Type>& name = *static_cast<std::type_identity_t<Type>*>(                      \
        ::pickscore::cuda::emu::static_shared(&pickscore_shared_key_##name, sizeof(Type), alignof(Type)))
#define PICKSCORE_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::pickscore::cuda::emu::dynamic_shared())
#else
#define PICKSCORE_SHARED(Type, name) __shared__ __align__(16) std::type_identity_t<Type> name
#define PICKSCORE_DYNAMIC_SHARED(T, name)                                           \
    extern __shared__ __align__(16) unsigned char pickscore_dynamic_shared_bytes_[]; \
    T* name = reinterpret_cast<T*>(pickscore_dynamic_shared_bytes_)
#endif

// PICKSCORE_UNROLL before a loop: `#pragma unroll` for nvcc; nothing for the emulation's C++
// compiler, which does not know the pragma (g++ would warn, and warnings are errors).
#if defined(PICKSCORE_CUDA_EMULATION)
#define PICKSCORE_UNROLL
#else
#define PICKSCORE_UNROLL _Pragma("unroll")
#endif

namespace pickscore::cuda {

// ---- element types: pickscore's on the host, CUDA's in kernels -----------------------------------

template <class T>
struct device_type {
    using type = T;
};
template <>
struct device_type<bf16> {
    using type = __nv_bfloat16;
};
template <>
struct device_type<f16> {
    using type = __half;
};
template <class T>
struct device_type<const T> {
    using type = const typename device_type<T>::type;
};
// The CUDA type kernels use for a pickscore element type (bf16 -> __nv_bfloat16).
template <class T>
using device_t = typename device_type<T>::type;

static_assert(sizeof(__nv_bfloat16) == sizeof(bf16) && alignof(__nv_bfloat16) == alignof(bf16));

// A host wrapper's pointer, as the kernel's element type.
template <class T>
device_t<T>* device_ptr(T* p) {
    return reinterpret_cast<device_t<T>*>(p);
}

// Kernels compute in f32: to_float / from_float<T> convert (rounding to nearest even).
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_float(float x) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>, "from_float: f32 or bf16");
    if constexpr (std::is_same_v<T, float>) {
        return x;
    } else {
        return __float2bfloat16(x);
    }
}

// ---- launching -------------------------------------------------------------------------------------

// Queues kernel<<<grid, block, shared_bytes, current().stream()>>>(args...) and checks the
// launch (the error names the configuration). Under emulation the kernel runs before this returns.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes, Args&&... args) {
#if defined(PICKSCORE_CUDA_EMULATION)
    (void)current().stream();
    (void)emu::launch_kernel(kernel, grid, block, shared_bytes, std::forward<Args>(args)...);
#else
    kernel<<<grid, block, shared_bytes, current().stream()>>>(std::forward<Args>(args)...);
#endif
    if (const cudaError_t e = cudaPeekAtLastError(); e != cudaSuccess) {
        const std::string what = pickscore::detail::concat("kernel launch with grid (", grid.x, ",", grid.y, ",", grid.z,
                                                           "), block (", block.x, ",", block.y, ",", block.z, "), ",
                                                           shared_bytes, " bytes of dynamic shared memory");
        check(e, what.c_str());
    }
    if (sync_after_launch()) check(cudaDeviceSynchronize(), "kernel (synchronised after launch)");
}

// Allows `kernel` up to `bytes` of dynamic shared memory (needed above 48 KiB).
template <class... Params>
void set_max_dynamic_shared(void (*kernel)(Params...), std::size_t bytes) {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
          "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)");
}

// Blocks of `threads` threads covering n items.
inline unsigned blocks_for(std::int64_t n, unsigned threads) {
    return unsigned((n + std::int64_t(threads) - 1) / std::int64_t(threads));
}

}  // namespace pickscore::cuda

// ---- 16-byte chunks: W elements of T moved as one vector load/store on the GPU -----------------
// (memcpy in the emulation, where the pointer need not be suitably aligned for the compiler's
// aliasing rules). The kernel chooses W so that sizeof(T) * W is 16 where the row starts allow.
namespace pickscore::cuda::kernels::chunk {

template <class T, int W>
struct alignas(sizeof(T) * W) Chunk {
    T v[W];
};
template <int W, class T>
__device__ __forceinline__ Chunk<std::remove_const_t<T>, W> load(T* p) {
    using C = Chunk<std::remove_const_t<T>, W>;
#if defined(PICKSCORE_CUDA_EMULATION)
    C c;
    std::memcpy(&c, p, sizeof(C));
    return c;
#else
    return *reinterpret_cast<const C*>(p);
#endif
}
template <int W, class T>
__device__ __forceinline__ void store(T* p, const Chunk<T, W>& c) {
#if defined(PICKSCORE_CUDA_EMULATION)
    std::memcpy(p, &c, sizeof(c));
#else
    *reinterpret_cast<Chunk<T, W>*>(p) = c;
#endif
}
template <int W, class T>
__device__ __forceinline__ void copy_chunk(T* dst, const T* src) {
    store<W>(dst, load<W>(src));
}

}  // namespace pickscore::cuda::kernels::chunk

namespace pickscore::cuda {

// Calls f(std::integral_constant<int, W>) with W = 16 bytes of T when C (the row length) is a
// multiple of it and every pointer (null ones aside) is 16-byte aligned, else with W = 1: how the
// host side of a row kernel picks the chunk width its rows allow.
template <class T, class F>
void with_chunk_width(std::int64_t C, std::initializer_list<const void*> pointers, F&& f) {
    constexpr int wide = int(16 / sizeof(T));
    bool ok = C % wide == 0;
    for (const void* p : pointers) ok = ok && reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
    if (ok)
        f(std::integral_constant<int, wide>{});
    else
        f(std::integral_constant<int, 1>{});
}

}  // namespace pickscore::cuda
