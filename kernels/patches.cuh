// kernels/patches.cuh — patchify / unpatchify (pickscore/cuda/patches.hpp).
//
// A block copies R = 8 patches (output rows) between the image and the patch matrix. The offset
// of an element splits into a row part (batch and patch position: b·C·H·W + gy·p·W + gx·p, found
// once per row by the first R threads) and a column part (channel and place inside the patch:
// c·H·W + i·W + j), so each thread divides once per column chunk and then moves that chunk for
// all R rows. A chunk is V consecutive elements of a patch row: V = the largest power of two
// dividing p with V·sizeof(T) <= 16 when the pointers allow it (p = 14: 2; p = 16: 4 for f32, 8 for
// bf16), else 1. Patch-matrix accesses are coalesced; image accesses come in runs of p elements.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <pickscore/cuda/patches.hpp>

#include "common.cuh"

namespace pickscore::cuda::kernels::patches {

using chunk::copy_chunk;

constexpr int kRowsPerBlock = 8;
constexpr int kThreads = 256;

// ToImage = false: dst = rows,  dst[bn, col] = src[row_base(bn) + col_off(col)]   (patchify);
// ToImage = true:  dst = image, dst[row_base(bn) + col_off(col)] = src[bn, col]   (unpatchify).
template <class T, int V, bool ToImage>
__global__ void patches_kernel(T* dst, const T* src, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                               std::int64_t p) {
    PICKSCORE_SHARED(std::int64_t[kRowsPerBlock], row_base);
    const std::int64_t gw = W / p, N = (H / p) * gw, n_rows = B * N, cols = C * p * p;
    const std::int64_t first = std::int64_t(blockIdx.x) * kRowsPerBlock;
    if (threadIdx.x < kRowsPerBlock) {
        const std::int64_t bn = first + threadIdx.x;
        const std::int64_t b = bn / N, n = bn % N;
        row_base[threadIdx.x] = b * C * H * W + (n / gw) * p * W + (n % gw) * p;
    }
    __syncthreads();
    const int rows_here = int(n_rows - first < kRowsPerBlock ? n_rows - first : kRowsPerBlock);
    for (std::int64_t col = std::int64_t(threadIdx.x) * V; col < cols; col += std::int64_t(kThreads) * V) {
        const std::int64_t c = col / (p * p), ij = col % (p * p);
        const std::int64_t col_off = c * H * W + (ij / p) * W + ij % p;
        for (int r = 0; r < rows_here; ++r) {
            const std::int64_t row_off = (first + r) * cols + col, image_off = row_base[r] + col_off;
            if constexpr (ToImage)
                copy_chunk<V>(dst + image_off, src + row_off);
            else
                copy_chunk<V>(dst + row_off, src + image_off);
        }
    }
}

}  // namespace pickscore::cuda::kernels::patches

namespace pickscore::cuda {

namespace patches_host {

// The widest chunk V (a power of two dividing p, at most 16 bytes) both pointers are aligned for.
template <class T>
int chunk_elements(const void* a, const void* b, std::int64_t p) {
    auto aligned = [&](int v) {
        const std::uintptr_t bytes = std::uintptr_t(v) * sizeof(T);
        return reinterpret_cast<std::uintptr_t>(a) % bytes == 0 && reinterpret_cast<std::uintptr_t>(b) % bytes == 0;
    };
    int V = 1;
    while (2 * V * int(sizeof(T)) <= 16 && p % (2 * V) == 0 && aligned(2 * V)) V *= 2;
    return V;
}

template <class T, bool ToImage>
void run(T* dst, const T* src, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t p) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, bf16>, "the CUDA patch kernels support f32 and bf16");
    const std::int64_t n_rows = B * (H / p) * (W / p);
    if (n_rows == 0 || C == 0) return;
    using kernels::patches::kRowsPerBlock;
    using kernels::patches::kThreads;
    const dim3 grid(blocks_for(n_rows, unsigned(kRowsPerBlock))), block(kThreads);
    auto go = [&](auto v) {
        launch(kernels::patches::patches_kernel<device_t<T>, decltype(v)::value, ToImage>, grid, block, 0,
               device_ptr(dst), device_ptr(src), B, C, H, W, p);
    };
    switch (chunk_elements<T>(dst, src, p)) {
        case 8:
            go(std::integral_constant<int, 8>{});
            break;
        case 4:
            go(std::integral_constant<int, 4>{});
            break;
        case 2:
            go(std::integral_constant<int, 2>{});
            break;
        default:
            go(std::integral_constant<int, 1>{});
            break;
    }
}

}  // namespace patches_host

template <class T>
void patchify(T* out, const T* image, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t p) {
    patches_host::run<T, false>(out, image, B, C, H, W, p);
}

template <class T>
void unpatchify(T* dimage, const T* dout, std::int64_t B, std::int64_t C, std::int64_t H, std::int64_t W,
                std::int64_t p) {
    patches_host::run<T, true>(dimage, dout, B, C, H, W, p);
}

template void patchify<float>(float*, const float*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                              std::int64_t);
template void patchify<bf16>(bf16*, const bf16*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t);
template void unpatchify<float>(float*, const float*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                                std::int64_t);
template void unpatchify<bf16>(bf16*, const bf16*, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                               std::int64_t);

}  // namespace pickscore::cuda
