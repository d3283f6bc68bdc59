// kernels/ptx.cuh — tensor-core and asynchronous-copy instructions as functions: inline PTX under
// nvcc (sm_80 and newer), the warp-collective emulation (pickscore/cuda/emulation/tensor_core.hpp)
// with PICKSCORE_CUDA_EMULATION. Kernels use only these, never raw asm, so that they run in both.
//
// Register layouts are the PTX ISA's, with g = lane / 4 and t = lane % 4; a 32-bit register
// holding two 16-bit values keeps the lower-indexed one in its low half (pack_bf16x2):
//   mma_m16n8k16_bf16(d, a, b, c): d[16x8] = a[16x16] · b[16x8] + c, all 32 lanes together
//     a[0] = A[g][2t..2t+1]      a[1] = A[g+8][2t..2t+1]
//     a[2] = A[g][2t+8..2t+9]    a[3] = A[g+8][2t+8..2t+9]
//     b[0] = B[2t..2t+1][g]      b[1] = B[2t+8..2t+9][g]
//     c[0], c[1] = C[g][2t], C[g][2t+1]       c[2], c[3] = C[g+8][2t], C[g+8][2t+1]
//   ldmatrix<N, Trans>(r, row): N 8x8 matrices of 16-bit elements from shared memory; lanes
//     8i..8i+7 pass the addresses of the rows of matrix i (16 bytes each, 16-byte aligned);
//     r[i] of lane l = matrix i's row l/4, columns 2(l%4), 2(l%4)+1 — with Trans, the
//     transposed matrix's (rows 2(l%4), 2(l%4)+1 of column l/4). So ldmatrix<4> of a row-major
//     16x16 tile (matrices: rows 0-7/cols 0-7, rows 8-15/cols 0-7, rows 0-7/cols 8-15, rows
//     8-15/cols 8-15) gives exactly mma's `a`, and ldmatrix<2, true> of a row-major [k][n] tile
//     gives `b`.
//   cp_async_16(dst, src): 16 bytes global -> shared without passing through registers (.cg);
//     cp_async_16_zfill copies src_bytes (0..16) and zero-fills the rest. The copies issued
//     between two cp_async_commit() calls form a group; cp_async_wait<n>() waits until at most n
//     groups are still in flight. The data may land only at the wait: read it after the wait
//     (and a __syncthreads when other threads read it).
#pragma once

#include <cstdint>

#include "common.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "kernels/ptx.cuh needs sm_80 or newer (bf16 mma.sync, cp.async)"
#endif

namespace pickscore::cuda::ptx {

// Two floats as a register of two bf16 (lo in the low half), rounded to nearest even.
__device__ __forceinline__ std::uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat16 l = __float2bfloat16(lo), h = __float2bfloat16(hi);
    return std::uint32_t(__bfloat16_as_ushort(l)) | (std::uint32_t(__bfloat16_as_ushort(h)) << 16);
}

__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const std::uint32_t (&a)[4],
                                                  const std::uint32_t (&b)[2], const float (&c)[4]) {
#if defined(PICKSCORE_CUDA_EMULATION)
    emu::mma_m16n8k16<__nv_bfloat16>(d, a, b, c);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
#endif
}

__device__ __forceinline__ void mma_m16n8k16_f16(float (&d)[4], const std::uint32_t (&a)[4],
                                                 const std::uint32_t (&b)[2], const float (&c)[4]) {
#if defined(PICKSCORE_CUDA_EMULATION)
    emu::mma_m16n8k16<__half>(d, a, b, c);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%10,%11,%12,%13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
          "f"(c[3]));
#endif
}

#if !defined(PICKSCORE_CUDA_EMULATION)
__device__ __forceinline__ std::uint32_t shared_address(const void* p) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}
#endif

template <int N, bool Trans = false>
__device__ __forceinline__ void ldmatrix(std::uint32_t (&r)[N], const void* row_address) {
    static_assert(N == 1 || N == 2 || N == 4, "ldmatrix loads 1, 2 or 4 matrices");
#if defined(PICKSCORE_CUDA_EMULATION)
    emu::ldmatrix<N, Trans>(r, row_address);
#else
    const std::uint32_t a = shared_address(row_address);
    if constexpr (N == 1 && !Trans) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
    } else if constexpr (N == 1 && Trans) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(a));
    } else if constexpr (N == 2 && !Trans) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(a));
    } else if constexpr (N == 2 && Trans) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
                     : "=r"(r[0]), "=r"(r[1])
                     : "r"(a));
    } else if constexpr (N == 4 && !Trans) {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    } else {
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(a));
    }
#endif
}

__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
#if defined(PICKSCORE_CUDA_EMULATION)
    emu::cp_async(smem_dst, gmem_src, 16, 16);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_address(smem_dst)), "l"(gmem_src) : "memory");
#endif
}

// Copies src_bytes (0..16) bytes and zero-fills the rest of the 16; with 0 nothing is read.
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src, unsigned src_bytes) {
#if defined(PICKSCORE_CUDA_EMULATION)
    emu::cp_async(smem_dst, gmem_src, 16, src_bytes);
#else
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(smem_dst)), "l"(gmem_src),
                 "r"(src_bytes)
                 : "memory");
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if defined(PICKSCORE_CUDA_EMULATION)
    emu::cp_async_commit();
#else
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most N committed groups of this thread are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    static_assert(N >= 0 && N <= 7, "cp.async.wait_group takes 0..7");
#if defined(PICKSCORE_CUDA_EMULATION)
    emu::cp_async_wait(N);
#else
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// Commits the open group and waits for every group.
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(PICKSCORE_CUDA_EMULATION)
    emu::cp_async_commit();
    emu::cp_async_wait(0);
#else
    asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

}  // namespace pickscore::cuda::ptx
